"""Container security rules for pulumi-docker resources.

Sources: CIS Docker Benchmark v1.6.0 (section numbers in each docstring) and the checks
Checkov (CKV_DOCKER_*), KICS and Trivy (AVD-DS-*) encode for it. Property names are the
provider's wire names (camelCase): see pulumi_docker/container.py and _inputs.py.
"""

from __future__ import annotations

import re
from typing import Any

from pulumi_policy import PolicyConfigSchema, ResourceValidationPolicy

from twinstack_rules.common import (
    DOCKER_CONTAINER,
    DOCKER_IMAGE,
    DOCKER_REMOTE_IMAGE,
    SENSITIVE_HOST_PATHS,
    Report,
    config,
    docker_labels,
    for_types,
    is_loopback,
    never_started,
    normpath,
    num,
    resource_policy,
    truthy,
    under,
)

DOCKER_SOCKETS = ["/var/run/docker.sock", "/run/docker.sock", "/var/run/docker", "/run/docker"]
HIGH_RISK_CAPS = {"ALL", "SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_MODULE", "SYS_RAWIO", "BPF"}
PUBLIC_PORTS_LABEL = "twinstack.allow-public-ports"
SECRET_KEY_RE = re.compile(
    r"(PASSWORD|PASSWD|PWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIALS?|AUTH)",
    re.IGNORECASE,
)
SECRET_VALUE_RES = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),  # GitHub token
    re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}\b"),  # Slack token
]


def _cap(name: Any) -> str:
    cap = str(name).strip().upper()
    return cap[4:] if cap.startswith("CAP_") else cap


def _bind_sources(props: Any) -> list[tuple[str, bool, str]]:
    """Host paths a container mounts: (host path, read_only, container path)."""
    out: list[tuple[str, bool, str]] = []
    for mount in props.get("mounts") or []:
        if mount.get("type") == "bind" and mount.get("source"):
            out.append(
                (str(mount.get("source")), truthy(mount.get("readOnly")), str(mount.get("target")))
            )
    for volume in props.get("volumes") or []:
        if volume.get("hostPath"):
            out.append(
                (
                    str(volume.get("hostPath")),
                    truthy(volume.get("readOnly")),
                    str(volume.get("containerPath")),
                )
            )
    return out


def _security_opts(props: Any) -> list[str]:
    return [str(o).strip().lower().replace("=", ":") for o in props.get("securityOpts") or []]


# --------------------------------------------------------------------------- rules


@for_types(DOCKER_CONTAINER)
def no_privileged(args: Any, report: Report) -> None:
    """CIS 5.4: privileged containers get every capability and all host devices."""
    if truthy(args.props.get("privileged")):
        report(
            f"Container '{args.name}' sets privileged=true. Remove `privileged` and add only "
            "the capabilities the service needs (capabilities.adds)."
        )


@for_types(DOCKER_CONTAINER)
def no_docker_socket(args: Any, report: Report) -> None:
    """CIS 5.31: the Docker socket is root on the host, read-only or not."""
    for host_path, _ro, target in _bind_sources(args.props):
        if under(host_path, DOCKER_SOCKETS):
            report(
                f"Container '{args.name}' mounts the Docker socket {normpath(host_path)} at "
                f"{target}. Remove the mount; talk to Docker through an authenticated TCP "
                "endpoint or a socket proxy with an allowlist instead."
            )


@for_types(DOCKER_CONTAINER)
def no_sensitive_host_mounts(args: Any, report: Report) -> None:
    """CIS 5.5: sensitive host system directories must not be mounted read-write."""
    sensitive = config(args, "sensitivePaths", SENSITIVE_HOST_PATHS)
    for host_path, read_only, target in _bind_sources(args.props):
        hit = under(host_path, sensitive)
        if hit and not read_only:
            report(
                f"Container '{args.name}' mounts host path {normpath(host_path)} (under "
                f"{hit}) read-write at {target}. Mount it with readOnly=true, or use a named "
                "volume instead of a host path."
            )


@for_types(DOCKER_CONTAINER)
def no_host_namespaces(args: Any, report: Report) -> None:
    """CIS 5.9 (network), 5.15 (PID), 5.16 (IPC), 5.30 (user namespace)."""
    checks = (
        ("networkMode", "network", "5.9"),
        ("pidMode", "PID", "5.15"),
        ("ipcMode", "IPC", "5.16"),
        ("usernsMode", "user", "5.30"),
    )
    for prop, label, item in checks:
        value = args.props.get(prop)
        if isinstance(value, str) and value.strip().lower() == "host":
            report(
                f"Container '{args.name}' shares the host's {label} namespace "
                f"({prop}=host, CIS {item}). Remove `{prop}`; use a user-defined network "
                "and published ports instead."
                if prop == "networkMode"
                else f"Container '{args.name}' shares the host's {label} namespace "
                f"({prop}=host, CIS {item}). Remove `{prop}`."
            )


@for_types(DOCKER_CONTAINER)
def capabilities_allowlist(args: Any, report: Report) -> None:
    """CIS 5.3: only add capabilities from an allowlist; SYS_ADMIN/NET_ADMIN/ALL are high."""
    allowed = {_cap(c) for c in config(args, "allowedCapabilities", ["NET_BIND_SERVICE"])}
    caps = args.props.get("capabilities") or {}
    for cap in caps.get("adds") or []:
        name = _cap(cap)
        if name in allowed and name not in HIGH_RISK_CAPS:
            continue
        risk = "high-risk " if name in HIGH_RISK_CAPS else ""
        report(
            f"Container '{args.name}' adds {risk}capability {name}, which is not in the "
            f"allowlist ({', '.join(sorted(allowed)) or 'empty'}). Remove it from "
            "capabilities.adds, or allow it in this policy's `allowedCapabilities` config."
        )


@for_types(DOCKER_CONTAINER)
def drop_all_capabilities(args: Any, report: Report) -> None:
    """CIS 5.3: start from no capabilities (drop ALL) and add back what is needed."""
    caps = args.props.get("capabilities") or {}
    drops = {_cap(c) for c in caps.get("drops") or []}
    if "ALL" not in drops:
        report(
            f"Container '{args.name}' does not drop all capabilities. Set "
            'capabilities.drops=["ALL"] and add back only what the service needs.'
        )


@for_types(DOCKER_CONTAINER)
def no_new_privileges(args: Any, report: Report) -> None:
    """CIS 5.25: block privilege escalation through setuid/setgid binaries."""
    opts = _security_opts(args.props)
    if not any(o in ("no-new-privileges", "no-new-privileges:true") for o in opts):
        report(
            f"Container '{args.name}' does not set no-new-privileges. Add "
            '"no-new-privileges:true" to securityOpts.'
        )


@for_types(DOCKER_CONTAINER)
def security_profiles(args: Any, report: Report) -> None:
    """CIS 5.1 (AppArmor), 5.2 (SELinux), 5.21 (seccomp): keep the default profiles on."""
    disabled = {
        "seccomp:unconfined": "seccomp (CIS 5.21)",
        "apparmor:unconfined": "AppArmor (CIS 5.1)",
        "label:disable": "SELinux labels (CIS 5.2)",
        "label:type:unconfined_t": "SELinux labels (CIS 5.2)",
    }
    for opt in _security_opts(args.props):
        if opt in disabled:
            report(
                f"Container '{args.name}' disables {disabled[opt]} with securityOpts "
                f"'{opt}'. Remove it; if the default profile blocks a syscall, ship a custom "
                "profile that allows only that syscall."
            )


@for_types(DOCKER_CONTAINER)
def non_root_user(args: Any, report: Report) -> None:
    """CIS 4.1: run as a non-root user (images default to root)."""
    user = args.props.get("user")
    text = str(user).strip() if user is not None else ""
    name = text.split(":")[0]
    if not text:
        report(
            f"Container '{args.name}' does not set `user`, so it runs as the image's default "
            "user (root unless the image says otherwise). Set user to a non-root UID:GID, "
            'e.g. "10001:10001".'
        )
    elif name in ("root", "0"):
        report(
            f"Container '{args.name}' runs as root (user={text!r}). Set user to a non-root "
            'UID:GID, e.g. "10001:10001".'
        )


@for_types(DOCKER_CONTAINER)
def read_only_rootfs(args: Any, report: Report) -> None:
    """CIS 5.12: mount the root filesystem read-only; write to tmpfs/volumes only."""
    if never_started(args.props):
        return  # Docker writes uploads through the root before a start: none comes
    if not truthy(args.props.get("readOnly")):
        report(
            f"Container '{args.name}' has a writable root filesystem. Set readOnly=true and "
            "give writable paths a tmpfs (e.g. /tmp) or a volume."
        )


@for_types(DOCKER_CONTAINER)
def resource_limits(args: Any, report: Report) -> None:
    """CIS 5.10 (memory) and 5.11 (CPU): bound what one container can take from the host."""
    memory = num(args.props.get("memory"))
    if memory is None or memory <= 0:
        report(
            f"Container '{args.name}' has no memory limit. Set `memory` (MiB), e.g. the "
            "service's resources.memoryMib."
        )
    cpus = num(args.props.get("cpus"))
    quota = num(args.props.get("cpuQuota"))
    if (cpus is None or cpus <= 0) and (quota is None or quota <= 0):
        report(
            f"Container '{args.name}' has no CPU limit. Set `cpus` (e.g. \"0.5\") or "
            "cpuQuota/cpuPeriod."
        )


@for_types(DOCKER_CONTAINER)
def ports_loopback(args: Any, report: Report) -> None:
    """CIS 5.13: bind published ports to a specific interface, not 0.0.0.0/:: (default)."""
    if truthy(docker_labels(args.props).get(PUBLIC_PORTS_LABEL, "false")):
        return  # explicit, reviewable opt-in on the resource itself
    allowed = {str(a).strip() for a in config(args, "allowedAddresses", [])}
    for port in args.props.get("ports") or []:
        ip = port.get("ip")
        address = str(ip).strip() if ip is not None else ""
        if is_loopback(address) or (address and address in allowed):
            continue
        shown = address or "0.0.0.0 (the provider default)"
        internal = num(port.get("internal"))
        external = num(port.get("external"))
        where = f"{shown}:{int(external)}" if external is not None else shown
        report(
            f"Container '{args.name}' publishes port {int(internal or 0)} on {where}, "
            'reachable from every network the host is on. Set ports[].ip to "127.0.0.1" '
            "(or an address in `allowedAddresses`), or opt in explicitly with the label "
            f'{PUBLIC_PORTS_LABEL}="true".'
        )


@for_types(DOCKER_CONTAINER)
def no_publish_all_ports(args: Any, report: Report) -> None:
    """CIS 5.13: publishAllPorts publishes every EXPOSEd port on all interfaces."""
    if truthy(args.props.get("publishAllPorts")):
        report(
            f"Container '{args.name}' sets publishAllPorts=true, publishing every exposed "
            "port on 0.0.0.0. Remove it and list ports explicitly with ip 127.0.0.1."
        )


@for_types(DOCKER_CONTAINER)
def no_devices(args: Any, report: Report) -> None:
    """CIS 5.17: do not pass host devices through to containers."""
    allowed = {normpath(str(d)) for d in config(args, "allowedDevices", [])}
    for device in args.props.get("devices") or []:
        host_path = normpath(str(device.get("hostPath")))
        if host_path in allowed:
            continue
        report(
            f"Container '{args.name}' passes host device {host_path} through. Remove it from "
            "`devices`, or allow it in this policy's `allowedDevices` config."
        )
    if args.props.get("deviceRequests"):
        report(
            f"Container '{args.name}' requests host devices (deviceRequests, e.g. GPUs). "
            "Remove `deviceRequests` unless the service needs the device."
        )


@for_types(DOCKER_CONTAINER)
def healthcheck(args: Any, report: Report) -> None:
    """CIS 4.6 / 5.26: a health check lets Docker and operators see a hung service."""
    if never_started(args.props):
        return  # no process to check
    check = args.props.get("healthcheck")
    tests = [str(t) for t in (check.get("tests") or [])] if check else []
    if not tests or tests[0].upper() == "NONE":
        report(
            f"Container '{args.name}' has no health check. Set healthcheck.tests, e.g. "
            '["CMD", "/usr/local/bin/healthcheck"] (the service\'s health_probe).'
        )


@for_types(DOCKER_CONTAINER)
def restart_bounded(args: Any, report: Report) -> None:
    """CIS 5.14: restart on failure a bounded number of times, not forever."""
    limit = int(config(args, "maxRetryCount", 5))
    policy = str(args.props.get("restart") or "no").strip().lower()
    if policy in ("always", "unless-stopped"):
        report(
            f"Container '{args.name}' restarts without a bound (restart={policy!r}). Use "
            f'restart="on-failure" with maxRetryCount between 1 and {limit}.'
        )
    elif policy == "on-failure":
        retries = int(num(args.props.get("maxRetryCount")) or 0)
        if retries <= 0 or retries > limit:
            report(
                f"Container '{args.name}' uses restart=\"on-failure\" with maxRetryCount="
                f"{retries} ({'unbounded' if retries <= 0 else 'above the limit'}). Set "
                f"maxRetryCount between 1 and {limit}."
            )


FILE_LOG_DRIVERS = {"json-file", "local", ""}


@for_types(DOCKER_CONTAINER)
def log_limits(args: Any, report: Report) -> None:
    """Bound json-file/local logs so they cannot fill the host disk (Docker logging docs)."""
    driver = str(args.props.get("logDriver") or "").strip()
    if driver not in FILE_LOG_DRIVERS:
        return  # logs leave the host (syslog, journald, fluentd, ...)
    opts = args.props.get("logOpts") or {}
    missing = [key for key in ("max-size", "max-file") if not opts.get(key)]
    if missing:
        report(
            f"Container '{args.name}' logs to {driver or 'json-file'} without "
            f'{" and ".join(missing)}. Set logOpts {{"max-size": "10m", "max-file": '
            '"3"}.'
        )


def remediate_log_limits(args: Any) -> dict[str, Any] | None:
    """Add the default log rotation when it is missing (enforcement level ``remediate``)."""
    if args.resource_type != DOCKER_CONTAINER:
        return None
    driver = str(args.props.get("logDriver") or "").strip()
    if driver not in FILE_LOG_DRIVERS:
        return None
    opts = dict(args.props.get("logOpts") or {})
    if opts.get("max-size") and opts.get("max-file"):
        return None
    opts.setdefault("max-size", str(config(args, "maxSize", "10m")))
    opts.setdefault("max-file", str(config(args, "maxFile", "3")))
    props = dict(args.props)
    props["logOpts"] = opts
    return props


_DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")


def _image_problem(ref: str, require_digest: bool) -> str | None:
    ref = ref.strip()
    if ref.startswith("sha256:"):
        return None  # an image ID (output of an Image/RemoteImage): already immutable
    if _DIGEST_RE.search(ref):
        return None
    if require_digest:
        return "is not pinned by digest (@sha256:...)"
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (Docker uses :latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return "uses the mutable :latest tag"
    return None


@for_types(DOCKER_CONTAINER, DOCKER_REMOTE_IMAGE, DOCKER_IMAGE)
def image_pinned(args: Any, report: Report) -> None:
    """CIS 4.x / Trivy DS001: pin images to a version tag (or digest, if configured)."""
    require_digest = truthy(config(args, "requireDigest", False))
    if args.resource_type == DOCKER_REMOTE_IMAGE:
        # a locally built image (`build`) has no digest before it is built
        prop, digest = "name", require_digest and not args.props.get("build")
    elif args.resource_type == DOCKER_IMAGE:
        prop, digest = "imageName", False  # a locally built image has no digest before build
    else:
        prop, digest = "image", require_digest
    ref = args.props.get(prop)
    if not isinstance(ref, str) or not ref.strip():
        if args.resource_type != DOCKER_CONTAINER:
            report(f"Image '{args.name}' has no `{prop}`. Set it to a pinned name:tag.")
        return
    problem = _image_problem(ref, digest)
    if problem:
        fix = (
            "Pin it by digest (name@sha256:...)."
            if digest
            else "Pin it to a version tag (e.g. debian:12.7-slim) or a digest."
        )
        report(f"Image reference {ref!r} on '{args.name}' ({prop}) {problem}. {fix}")


@for_types(DOCKER_CONTAINER)
def no_env_secrets(args: Any, report: Report) -> None:
    """CIS 4.10 / Checkov CKV_SECRET: env vars are visible to `docker inspect` and children."""
    allowed = {str(k) for k in config(args, "allowedKeys", [])}
    for entry in args.props.get("envs") or []:
        key, sep, value = str(entry).partition("=")
        if not sep or not value or key in allowed:
            continue
        if key.endswith("_FILE") or value.startswith("/run/secrets/"):
            continue  # points at a mounted secret file
        if SECRET_KEY_RE.search(key):
            report(
                f"Container '{args.name}' sets {key} to a literal value in its environment. "
                f"Mount the secret as a file (e.g. /run/secrets/{key.lower()}) and pass "
                f"{key}_FILE, or add {key} to `allowedKeys` if it is not a secret."
            )
        elif any(rx.search(value) for rx in SECRET_VALUE_RES):
            report(
                f"Container '{args.name}' has what looks like a credential in environment "
                f"variable {key}. Mount it as a file instead of passing it in the environment."
            )


# --------------------------------------------------------------------------- policies

_STR_LIST = {"type": "array", "items": {"type": "string"}}

POLICIES: list[ResourceValidationPolicy] = [
    resource_policy(
        name="docker-no-privileged",
        description="Containers must not run privileged (CIS Docker 5.4).",
        validate=no_privileged,
    ),
    resource_policy(
        name="docker-no-socket-mount",
        description="Containers must not mount the Docker socket (CIS Docker 5.31).",
        validate=no_docker_socket,
    ),
    resource_policy(
        name="docker-no-sensitive-host-mounts",
        description=(
            "Containers must not mount sensitive host directories read-write (CIS Docker 5.5)."
        ),
        validate=no_sensitive_host_mounts,
        config_schema=PolicyConfigSchema(
            properties={"sensitivePaths": {**_STR_LIST, "default": SENSITIVE_HOST_PATHS}}
        ),
    ),
    resource_policy(
        name="docker-no-host-namespaces",
        description=(
            "Containers must not share the host's network, PID, IPC or user namespace "
            "(CIS Docker 5.9, 5.15, 5.16, 5.30)."
        ),
        validate=no_host_namespaces,
    ),
    resource_policy(
        name="docker-capabilities-allowlist",
        description="Containers may add only allowlisted Linux capabilities (CIS Docker 5.3).",
        validate=capabilities_allowlist,
        config_schema=PolicyConfigSchema(
            properties={"allowedCapabilities": {**_STR_LIST, "default": ["NET_BIND_SERVICE"]}}
        ),
    ),
    resource_policy(
        name="docker-drop-all-capabilities",
        description="Containers must drop ALL capabilities by default (CIS Docker 5.3).",
        validate=drop_all_capabilities,
    ),
    resource_policy(
        name="docker-no-new-privileges",
        description="Containers must set no-new-privileges (CIS Docker 5.25).",
        validate=no_new_privileges,
    ),
    resource_policy(
        name="docker-security-profiles",
        description=(
            "Containers must keep seccomp, AppArmor and SELinux confinement on "
            "(CIS Docker 5.1, 5.2, 5.21)."
        ),
        validate=security_profiles,
    ),
    resource_policy(
        name="docker-non-root-user",
        description="Containers must run as a non-root user (CIS Docker 4.1).",
        validate=non_root_user,
    ),
    resource_policy(
        name="docker-read-only-rootfs",
        description="Containers must have a read-only root filesystem (CIS Docker 5.12).",
        validate=read_only_rootfs,
    ),
    resource_policy(
        name="docker-resource-limits",
        description="Containers must have memory and CPU limits (CIS Docker 5.10, 5.11).",
        validate=resource_limits,
    ),
    resource_policy(
        name="docker-ports-loopback",
        description=(
            "Published ports must bind to loopback unless explicitly opted in (CIS Docker 5.13)."
        ),
        validate=ports_loopback,
        config_schema=PolicyConfigSchema(
            properties={
                "allowedAddresses": {**_STR_LIST, "default": []},
            }
        ),
    ),
    resource_policy(
        name="docker-no-publish-all-ports",
        description="Containers must not set publishAllPorts (CIS Docker 5.13).",
        validate=no_publish_all_ports,
    ),
    resource_policy(
        name="docker-no-devices",
        description="Containers must not pass host devices through (CIS Docker 5.17).",
        validate=no_devices,
        config_schema=PolicyConfigSchema(
            properties={"allowedDevices": {**_STR_LIST, "default": []}}
        ),
    ),
    resource_policy(
        name="docker-healthcheck",
        description="Containers must define a health check (CIS Docker 4.6).",
        validate=healthcheck,
    ),
    resource_policy(
        name="docker-restart-bounded",
        description=(
            "Restart policies must be on-failure with a bounded retry count (CIS Docker 5.14)."
        ),
        validate=restart_bounded,
        config_schema=PolicyConfigSchema(
            properties={"maxRetryCount": {"type": "integer", "minimum": 1, "default": 5}}
        ),
    ),
    resource_policy(
        name="docker-log-limits",
        description="Container logs kept on the host must be size-limited and rotated.",
        validate=log_limits,
        remediate=remediate_log_limits,
        config_schema=PolicyConfigSchema(
            properties={
                "maxSize": {"type": "string", "default": "10m"},
                "maxFile": {"type": "string", "default": "3"},
            }
        ),
    ),
    resource_policy(
        name="docker-image-pinned",
        description="Images must be pinned to a version tag or digest, never :latest.",
        validate=image_pinned,
        config_schema=PolicyConfigSchema(
            properties={"requireDigest": {"type": "boolean", "default": False}}
        ),
    ),
    resource_policy(
        name="docker-no-env-secrets",
        description="Secrets must not be literal environment variables (CIS Docker 4.10).",
        validate=no_env_secrets,
        config_schema=PolicyConfigSchema(properties={"allowedKeys": {**_STR_LIST, "default": []}}),
    ),
]
