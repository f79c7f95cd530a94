"""Pure renderers: the single source of truth for what runs inside an instance.

From one :class:`~components.spec.ServiceSpec` they render the container build context
(Dockerfile + files), the VM's cloud-init user-data (files, systemd unit, volumes,
readiness signal) and the health probe both runtimes run. Components, tests, ``plan``,
``diff`` and ``measure`` call these functions; nobody re-derives their output.

Secrets never pass through here as values the renderers choose: callers hand in the
secret *values* (real ones under ``pulumi up``, ``[secret:<key>]`` placeholders offline),
so the rendered text is a function of the spec and those values only.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping

import yaml

from components.spec import FileSpec, ServiceSpec

READY_MARKER = "twinstack-ready"
"""Printed on the VM's serial console (and kept in /run/twinstack/) when the service is healthy."""
UNHEALTHY_MARKER = "twinstack-unhealthy"
"""Printed on the serial console when readiness fails, with the failing step."""

_LIB = "/usr/local/lib/twinstack"
SECRETS_DIR = "/run/secrets"
"""Where a container finds its secrets: one file per variable, ``/run/secrets/<ENV>``, on a
read-only volume (``components.service``); ``<ENV>_FILE`` names the file."""
SECRETS_LOADER = f"{_LIB}/secrets-env"
"""The entrypoint of a built image whose service has secrets (:data:`SECRETS_LOADER_SCRIPT`)."""
SECRETS_LOADER_SCRIPT = f"""#!/bin/bash
# Rendered by twinstack. For each NAME_FILE that names a file under {SECRETS_DIR}/, exports
# NAME with the file's whole content (the VM's env file gives the service the same
# variables), drops NAME_FILE, then runs the command. It reads no stack file text.
set -euo pipefail
for var in $(compgen -e); do
  [[ $var == *_FILE && ${{!var}} == {SECRETS_DIR}/* ]] || continue
  path=${{!var}}
  value=
  IFS= read -r -d '' value <"$path" || [[ -r $path ]]
  export "${{var%_FILE}}=$value"
  unset "$var"
done
exec "$@"
"""
SERVICE_UID = 10001
"""uid (and, through useradd's user group, gid) of the service user twinstack creates:
the same in the image and in the VM, so files on a volume keep their owner when
``twinstack migrate`` moves them between the twins (a free system id differs: 999 in the
image, 997 in the VM, measured)."""


def service_user(svc: ServiceSpec) -> str:
    """The user the service runs as, in both runtimes."""
    if svc.build is not None:
        return svc.build.user
    assert svc.image is not None
    return svc.image.user or "root"


def health_script(svc: ServiceSpec) -> str | None:
    """The health probe as a bash script (``None`` when the service has no check).

    HTTP checks use bash's ``/dev/tcp`` so that neither image needs curl or wget:
    a GET that must answer ``HTTP/1.x 2xx`` within ``timeoutS``.
    """
    hc = svc.health_check
    if hc is None:
        return None
    if hc.command is not None:
        return f"exec timeout {hc.timeout_s} {shlex.join(hc.command)}"
    assert hc.http is not None
    port = svc.port_number(hc.http.port)
    # the path is data for printf's %s, never part of its format or of the shell syntax
    return (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} || exit 1; "
        f"printf 'GET %s HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' {shlex.quote(hc.http.path)} >&3; "
        f"timeout {hc.timeout_s} head -n1 <&3 | grep -Eq '^HTTP/1\\.[01] 2[0-9][0-9]'"
    )


def health_probe(svc: ServiceSpec) -> list[str] | None:
    """Docker ``healthcheck.test`` for the service; the VM runs the same script.

    ``docker exec`` skips the image's entrypoint, so a built image with secrets runs the
    probe through the secrets loader: it sees the environment the service sees, as the
    VM's probe unit does (``EnvironmentFile``).
    """
    script = health_script(svc)
    if script is None:
        return None
    loader = [SECRETS_LOADER] if loads_secrets(svc) else []
    return ["CMD", *loader, "/bin/bash", "-c", script]


def loads_secrets(svc: ServiceSpec) -> bool:
    """Whether the service's image carries :data:`SECRETS_LOADER` as its entrypoint: a built
    image of a service with secrets. A prebuilt image gets ``<ENV>_FILE`` only (the
    convention of the official images) and reads the file itself."""
    return svc.build is not None and bool(svc.secrets)


def secret_file(env: str) -> str:
    """The file a container reads the secret ``env`` from."""
    return f"{SECRETS_DIR}/{env}"


def _service_files(svc: ServiceSpec) -> list[FileSpec]:
    return list(svc.build.files) if svc.build is not None else []


def render_dockerfile(svc: ServiceSpec) -> str:
    """The Dockerfile of a ``build`` service (files come from the build context's rootfs/)."""
    b = svc.build
    if b is None:
        raise ValueError(f"service {svc.name!r} uses a prebuilt image; nothing to build")
    lines = [
        f"# Rendered by twinstack for service {svc.name!r}; edit the stack file, not this.",
        f"FROM {b.base}",
    ]
    if b.packages:
        pkgs = " ".join(sorted(b.packages))
        lines.append(
            "RUN set -eux; apt-get update; "
            f"DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {pkgs}; "
            "rm -rf /var/lib/apt/lists/*"
        )
    if b.user != "root":
        lines.append(
            f"RUN id -u {b.user} >/dev/null 2>&1 || useradd --system --uid {SERVICE_UID} "
            "--user-group "
            f"--no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {b.user}"
        )
    if b.files:
        lines.append("COPY rootfs/ /")
        modes = [f"chmod {f.mode} {shlex.quote(f.path)}" for f in b.files if f.mode != "0644"]
        if modes:
            lines.append("RUN " + " && ".join(modes))
    dirs = [v.mount_path for v in svc.volumes]
    if dirs:
        quoted = " ".join(shlex.quote(d) for d in dirs)
        chown = f" && chown {b.user}:{b.user} {quoted}" if b.user != "root" else ""
        lines.append(f"RUN mkdir -p {quoted}{chown}")
    for v in svc.volumes:
        lines.append(f"VOLUME {json.dumps([v.mount_path])}")  # JSON form: an array
    for p in svc.ports:
        lines.append(f"EXPOSE {p.port}/{p.protocol}")
    if loads_secrets(svc):
        # the loader exports each secret from its file (SECRETS_DIR), then runs CMD
        lines.append(f"COPY twinstack/secrets-env {SECRETS_LOADER}")
        lines.append(f"RUN chmod 0755 {SECRETS_LOADER}")
        lines.append(f"ENTRYPOINT {json.dumps([SECRETS_LOADER])}")
    lines.append(f"USER {b.user}")
    lines.append(f"WORKDIR {b.working_dir}")
    lines.append(f"CMD {json.dumps(b.command)}")
    return "\n".join(lines) + "\n"


def render_build_context(svc: ServiceSpec) -> dict[str, str]:
    """Files of the Docker build context: ``Dockerfile`` and ``rootfs/<path>`` per file."""
    ctx = {"Dockerfile": render_dockerfile(svc)}
    if loads_secrets(svc):
        ctx["twinstack/secrets-env"] = SECRETS_LOADER_SCRIPT
    for f in _service_files(svc):
        ctx["rootfs" + f.path] = f.content
    return ctx


def context_digest(ctx: Mapping[str, str]) -> str:
    """Content hash of a build context: the image tag, so a change means a new image."""
    h = hashlib.sha256()
    for name in sorted(ctx):
        h.update(name.encode() + b"\0" + ctx[name].encode() + b"\0")
    return h.hexdigest()[:12]


def env_pairs(svc: ServiceSpec, secret_values: Mapping[str, str]) -> list[tuple[str, str]]:
    """Environment of the service, plain variables then secrets, sorted by name."""
    pairs = sorted(svc.environment.items())
    for env in sorted(svc.secrets):
        pairs.append((env, secret_values[env]))
    return pairs


def secret_placeholders(svc: ServiceSpec) -> dict[str, str]:
    """Offline stand-ins for secret values: ``[secret:<configKey>]``."""
    return {env: f"[secret:{key}]" for env, key in svc.secrets.items()}


_ENV_FILE_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "$": "\\$", "`": "\\`"})


def env_file_quote(value: str) -> str:
    """A value in systemd ``EnvironmentFile`` double quotes.

    Inside double quotes systemd's env-file parser (like a POSIX shell) removes a
    backslash before ``"``, ``\\``, `` ` `` and ``$`` and keeps every other character,
    newlines included, so escaping exactly those four reads back to ``value`` in both
    systemd and ``bash`` (``set -a; . FILE``). NUL cannot be carried and is refused.
    """
    if "\0" in value:
        raise ValueError("an environment value cannot contain NUL")
    return '"' + value.translate(_ENV_FILE_ESCAPES) + '"'


SECRET_KEYS_COMMENT = "# twinstack: from Pulumi secrets:"
"""First line of an env file naming the variables filled from Pulumi secrets (a comment to
systemd and bash), so policies know which values are secrets without seeing the spec."""


def render_env_file(svc: ServiceSpec, secret_values: Mapping[str, str]) -> str:
    """systemd ``EnvironmentFile`` content (the VM's twin of the container's ``envs``)."""
    head = f"{SECRET_KEYS_COMMENT} {' '.join(sorted(svc.secrets))}\n" if svc.secrets else ""
    return head + "".join(f"{k}={env_file_quote(v)}\n" for k, v in env_pairs(svc, secret_values))


def _restart_lines(svc: ServiceSpec) -> tuple[list[str], list[str]]:
    """(``[Unit]`` lines, ``[Service]`` lines) mirroring Docker's restart policy."""
    r = svc.restart
    if r.policy == "no":
        return [], ["Restart=no"]
    if r.policy == "on-failure":
        # Docker counts retries without a window; a one-day window is the closest systemd has.
        return (
            ["StartLimitIntervalSec=1d", f"StartLimitBurst={r.max_retries + 1}"],
            ["Restart=on-failure", "RestartSec=1"],
        )
    return ["StartLimitIntervalSec=0"], ["Restart=always", "RestartSec=1"]


_EXEC_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        '"': '\\"',
        "\n": "\\n",
        "\t": "\\t",
        "%": "%%",
        "$": "$$",
    }
)


def exec_quote(arg: str) -> str:
    """One argument of ``ExecStart=`` in systemd's own quoting.

    systemd splits the line into words, removes double quotes and decodes C escapes
    (``\\\\``, ``\\"``, ``\\n``, ``\\t``) in every word, then expands ``%`` specifiers
    and, at start, ``$VAR``; ``%%`` and ``$$`` are the literal forms. Docker's exec-form
    CMD passes arguments verbatim, so every argument is double-quoted and escaped to reach
    the process unchanged. Other control characters are excluded by the spec's grammar.
    """
    return '"' + arg.translate(_EXEC_ESCAPES) + '"'


def _exec_start(command: list[str]) -> str:
    """``ExecStart=`` value for an exec-form command (see :func:`exec_quote`)."""
    return " ".join(exec_quote(a) for a in command)


def working_dir(svc: ServiceSpec) -> str:
    """The directory the service (and its health probe) runs in."""
    return svc.build.working_dir if svc.build is not None else "/"


def _run_as_lines(svc: ServiceSpec) -> list[str]:
    """How the service runs: the same user, directory and environment for its unit and
    its health unit (the container's probe runs as the container's user with its env)."""
    return [
        f"User={service_user(svc)}",
        f"WorkingDirectory={working_dir(svc)}",
        f"EnvironmentFile=/etc/twinstack/{svc.name}.env",
    ]


def health_unit_name(svc: ServiceSpec) -> str:
    """The oneshot unit that runs the health probe in the VM."""
    return f"twinstack-health-{svc.name}.service"


def render_health_unit(svc: ServiceSpec) -> str | None:
    """A oneshot unit that runs the health probe like Docker's ``HEALTHCHECK`` does: as
    the service's user, in its working directory, with its environment."""
    if svc.health_check is None:
        return None
    lines = [
        "[Unit]",
        f"Description=twinstack health probe of {svc.name}",
        "",
        "[Service]",
        "Type=oneshot",
        *_run_as_lines(svc),
        f"ExecStart={_exec_start(['/bin/bash', f'{_LIB}/health-{svc.name}'])}",
        f"TimeoutStartSec={svc.health_check.timeout_s + 5}",
        "",
    ]
    return "\n".join(lines)


def render_systemd_unit(svc: ServiceSpec) -> str:
    """The systemd unit that runs the service in the VM."""
    unit_extra, svc_restart = _restart_lines(svc)
    if svc.build is not None:
        command = svc.build.command
    else:
        assert svc.image is not None
        command = svc.image.command or ["/sbin/init"]
    mounts = " ".join(v.mount_path for v in svc.volumes)
    lines = [
        "[Unit]",
        f"Description=twinstack service {svc.name}",
        "After=network-online.target local-fs.target",
        "Wants=network-online.target",
        *([f"RequiresMountsFor={mounts}"] if mounts else []),
        *unit_extra,
        "",
        "[Service]",
        "Type=simple",
        *_run_as_lines(svc),
        f"ExecStart={_exec_start(command)}",
        *svc_restart,
        "NoNewPrivileges=yes",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def render_ready_script(svc: ServiceSpec) -> str:
    """Bounded readiness check run by cloud-init; reports on the serial console.

    It polls the same health probe Docker runs (at the check's own interval, for
    ``startPeriodS + retries`` probes at most) and prints ``twinstack-ready <svc>`` or
    ``twinstack-unhealthy <svc> <step>: <detail>`` to /dev/ttyS0, so readiness needs no
    network: the serial console or the guest agent can read it.
    """
    hc = svc.health_check
    if hc is None:
        attempts, interval = 30, 1
        check = f"systemctl is-active --quiet {svc.name}.service"
    else:
        interval = hc.interval_s
        attempts = hc.retries + (hc.start_period_s + interval - 1) // interval
        unit = health_unit_name(svc)
        # the probe runs as the service does (see render_health_unit); its output is the
        # unit's journal, shown when readiness fails
        check = f"systemctl start {unit} || {{ journalctl -q -o cat -n 3 -u {unit}; false; }}"
    return "\n".join(
        [
            "#!/bin/bash",
            f"# readiness of {svc.name}: at most {attempts} probes, {interval}s apart",
            "mkdir -p /run/twinstack",
            'say() { echo "$*" | tee /run/twinstack/status >/dev/ttyS0 2>/dev/null || true; }',
            f"if ! systemctl is-enabled --quiet {svc.name}.service; then",
            f"  say '{UNHEALTHY_MARKER} {svc.name} unit: not enabled'; exit 1",
            "fi",
            f"for i in $(seq 1 {attempts}); do",
            f"  if out=$({{ {check}; }} 2>&1); then say '{READY_MARKER} {svc.name}'; exit 0; fi",
            f"  if systemctl is-failed --quiet {svc.name}.service; then",
            f'    say "{UNHEALTHY_MARKER} {svc.name} start: '
            f'$(systemctl show -p Result --value {svc.name}.service)"; exit 1',
            "  fi",
            f"  sleep {interval}",
            "done",
            f'say "{UNHEALTHY_MARKER} {svc.name} health: ${{out:-no answer}}"',
            "exit 1",
            "",
        ]
    )


MOUNT_OPTIONS = "defaults,nofail,x-systemd.device-timeout=10min"
"""fstab options of a VM data volume. ``nofail``: boot goes on without it; the service
waits for it (``RequiresMountsFor``). The device timeout is systemd's 90 s default raised:
a slow boot (TCG on a loaded host: 160 s to find the disk, measured) must not leave the
service without its volume."""


def vm_data_device(index: int) -> str:
    """Guest device of the index-th data volume: vdb, vdc, … (vda is the root clone)."""
    return "/dev/vd" + chr(ord("b") + index)


def volume_label(svc: ServiceSpec, index: int) -> str:
    """ext4 label of a data volume (≤ 16 chars), so mounts never depend on device order."""
    return f"ts-{hashlib.sha256(f'{svc.name}/{svc.volumes[index].name}'.encode()).hexdigest()[:12]}"


def render_cloud_init(
    svc: ServiceSpec,
    *,
    hostname: str,
    secret_values: Mapping[str, str],
) -> str:
    """The VM's cloud-init user-data (``#cloud-config``).

    Installs the packages, writes the service's files, an env file, the systemd unit, the
    health probe and the readiness script; formats (only if blank) and mounts each data
    volume by label; starts the service; and signals readiness on the serial console.
    """
    user = service_user(svc)
    files: list[dict[str, object]] = []
    # twinstack's own files come after the service's: cloud-init writes in order, and the
    # spec keeps service files out of the paths twinstack writes (spec.RESERVED_PATHS)
    for f in _service_files(svc):
        files.append({"path": f.path, "content": f.content, "permissions": f.mode})
    files.append(
        {
            "path": f"/etc/twinstack/{svc.name}.env",
            "content": render_env_file(svc, secret_values),
            "permissions": "0600",
        }
    )
    files.append(
        {
            "path": f"/etc/systemd/system/{svc.name}.service",
            "content": render_systemd_unit(svc),
            "permissions": "0644",
        }
    )
    script = health_script(svc)
    health_unit = render_health_unit(svc)
    if script is not None and health_unit is not None:
        files.append(
            {"path": f"{_LIB}/health-{svc.name}", "content": script + "\n", "permissions": "0755"}
        )
        files.append(
            {
                "path": f"/etc/systemd/system/{health_unit_name(svc)}",
                "content": health_unit,
                "permissions": "0644",
            }
        )
    files.append(
        {
            "path": f"{_LIB}/ready-{svc.name}",
            "content": render_ready_script(svc),
            "permissions": "0755",
        }
    )
    files.append(
        {
            # log rotation twin of the container's json-file max-size/max-file
            "path": "/etc/systemd/journald.conf.d/twinstack.conf",
            "content": "[Journal]\nSystemMaxUse=30M\nSystemMaxFileSize=10M\n",
            "permissions": "0644",
        }
    )
    doc: dict[str, object] = {
        "hostname": hostname,
        "ssh_pwauth": False,
        "disable_root": True,
    }
    if user != "root":
        doc["users"] = [
            "default",
            {
                "name": user,
                "uid": SERVICE_UID,
                "system": True,
                "shell": "/usr/sbin/nologin",
                "lock_passwd": True,
            },
        ]
    if svc.build is not None and svc.build.packages:
        doc["package_update"] = True
        doc["packages"] = sorted(svc.build.packages)
    if svc.volumes:
        doc["fs_setup"] = [
            {
                "label": volume_label(svc, i),
                "filesystem": "ext4",
                "device": vm_data_device(i),
                "overwrite": False,
            }
            for i in range(len(svc.volumes))
        ]
        doc["mounts"] = [
            [f"LABEL={volume_label(svc, i)}", v.mount_path, "ext4", MOUNT_OPTIONS, "0", "2"]
            for i, v in enumerate(svc.volumes)
        ]
    doc["write_files"] = files
    runcmd: list[list[str]] = []
    for v in svc.volumes:
        runcmd.append(["mkdir", "-p", v.mount_path])
        if user != "root":
            runcmd.append(["chown", f"{user}:{user}", v.mount_path])
    runcmd += [
        ["systemctl", "daemon-reload"],
        ["systemctl", "restart", "systemd-journald"],
        ["systemctl", "enable", "--now", f"{svc.name}.service"],
        [f"{_LIB}/ready-{svc.name}"],
    ]
    doc["runcmd"] = runcmd
    body = yaml.dump(
        doc, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False, width=4096
    )
    return f"#cloud-config\n# Rendered by twinstack for service {svc.name!r}.\n{body}"


_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _BlockDumper(_BaseDumper):  # type: ignore[valid-type,misc]
    """Multi-line strings as literal blocks, so the user-data stays readable."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # libyaml (CSafeDumper) and the pure dumper render the same document
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _str_presenter)


def render_meta_data(hostname: str) -> str:
    """NoCloud meta-data: a stable instance id (so cloud-init runs once per instance)."""
    return f"instance-id: {hostname}\nlocal-hostname: {hostname}\n"
