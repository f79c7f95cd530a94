"""Stack-file text cannot escape its field: for every string field of a service, arbitrary
Unicode is either rejected by the spec's grammar or rendered so that each artefact reads
back to exactly the spec's value.

Artefacts are read back by each format's own parser: the Dockerfile by Docker's (Go)
parser (the ``dockerfile`` package), the cloud-init user-data by a YAML parser, the systemd
unit and EnvironmentFile by the policies' readers (``twinstack_rules.formats``), which in
turn are checked against ``systemd-analyze verify`` and ``bash`` on the same files.
"""

from __future__ import annotations

import copy
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import dockerfile
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from components import renderers
from components.spec import ServiceSpec

from .helpers import formats

BUILD: dict[str, Any] = {
    "name": "svc",
    "build": {
        "base": "debian:bookworm-20251117-slim",
        "packages": ["python3"],
        "files": [{"path": "/srv/app/conf", "content": "a = 1\n", "mode": "0600"}],
        "command": ["/usr/bin/python3", "-m", "app"],
        "workingDir": "/srv/app",
        "user": "app",
        "environment": {"MODE": "prod"},
        "secrets": {"TOKEN": "apiToken"},
    },
    "ports": [{"name": "http", "port": 8080}],
    "volumes": [{"name": "data", "mountPath": "/var/lib/svc"}],
    "healthCheck": {"http": {"path": "/healthz", "port": "http"}},
}
PREBUILT: dict[str, Any] = {
    "name": "pre",
    "image": {
        "container": "registry.example:5000/team/pre:1.2",
        "vm": {
            "source": "/srv/images/pre.qcow2",
            "kernel": "/srv/images/vmlinuz",
            "initrd": "/srv/images/initrd.img",
            "cmdline": "root=/dev/vda rw console=ttyS0",
        },
        "command": ["/usr/local/bin/pre", "serve"],
        "user": "pre",
        "environment": {"LEVEL": "info"},
    },
    "healthCheck": {"command": ["/usr/local/bin/pre", "check"]},
    "volumes": [{"name": "state", "mountPath": "/var/lib/pre"}],
}
Path_ = tuple[str | int, ...]
FIELDS: list[tuple[dict[str, Any], Path_]] = [
    (BUILD, ("name",)),
    (BUILD, ("build", "base")),
    (BUILD, ("build", "packages", 0)),
    (BUILD, ("build", "files", 0, "path")),
    (BUILD, ("build", "files", 0, "content")),
    (BUILD, ("build", "files", 0, "mode")),
    (BUILD, ("build", "command", 0)),
    (BUILD, ("build", "command", 1)),
    (BUILD, ("build", "workingDir")),
    (BUILD, ("build", "user")),
    (BUILD, ("build", "environment", "MODE")),
    (BUILD, ("build", "secrets", "TOKEN")),
    (BUILD, ("ports", 0, "name")),
    (BUILD, ("volumes", 0, "name")),
    (BUILD, ("volumes", 0, "mountPath")),
    (BUILD, ("healthCheck", "http", "path")),
    (PREBUILT, ("image", "container")),
    (PREBUILT, ("image", "command", 0)),
    (PREBUILT, ("image", "command", 1)),
    (PREBUILT, ("image", "user")),
    (PREBUILT, ("image", "environment", "LEVEL")),
    (PREBUILT, ("image", "vm", "source")),
    (PREBUILT, ("image", "vm", "kernel")),
    (PREBUILT, ("image", "vm", "cmdline")),
    (PREBUILT, ("healthCheck", "command", 0)),
    (PREBUILT, ("healthCheck", "command", 1)),
]
"""Every string field of a service, by key path (mapping keys are fields too: see below)."""

NASTY = list("\n\r\t\x00\x0b\x1b\x7f\x85\u2028\u2029\ufeff\\\"'`$%;&|<>#=:@,~+ ./é€😀-")
texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(NASTY + list("abc/019")), max_size=40),
)


def _set(doc: dict[str, Any], path: Path_, value: Any) -> None:
    cur: Any = doc
    for part in path[:-1]:
        cur = cur[part]
    cur[path[-1]] = value


def _get(doc: dict[str, Any], path: Path_) -> Any:
    cur: Any = doc
    for part in path:
        cur = cur[part]
    return cur


def mutated(base: dict[str, Any], path: Path_, value: str, mode: str) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    old = _get(doc, path)
    new = {"replace": value, "append": f"{old}{value}", "prepend": f"{value}{old}"}[mode]
    _set(doc, path, new)
    return doc


def validated(doc: dict[str, Any]) -> ServiceSpec | None:
    try:
        return ServiceSpec.model_validate(doc)
    except ValidationError:
        return None


# --------------------------------------------------------------------------- read-back


def _one(cmds: tuple[Any, ...], name: str) -> Any:
    found = [c for c in cmds if c.cmd == name]
    assert len(found) == 1, (name, [c.original for c in cmds])
    return found[0]


def check_dockerfile(svc: ServiceSpec) -> None:
    assert svc.build is not None
    ctx = renderers.render_build_context(svc)
    cmds = dockerfile.parse_string(ctx["Dockerfile"])
    allowed = {"FROM", "RUN", "COPY", "VOLUME", "EXPOSE", "USER", "WORKDIR", "CMD"}
    if svc.secrets:  # the secrets loader, twinstack's own fixed text
        allowed.add("ENTRYPOINT")
        assert list(_one(cmds, "ENTRYPOINT").value) == [renderers.SECRETS_LOADER]
        assert ctx["twinstack/secrets-env"] == renderers.SECRETS_LOADER_SCRIPT
    assert {c.cmd for c in cmds} <= allowed, [c.original for c in cmds]
    assert _one(cmds, "FROM").value == (svc.build.base,)
    assert _one(cmds, "USER").value == (svc.build.user,)
    assert _one(cmds, "WORKDIR").value == (svc.build.working_dir,)
    cmd = _one(cmds, "CMD")
    assert cmd.json and list(cmd.value) == svc.build.command
    volumes = [v for c in cmds if c.cmd == "VOLUME" for v in c.value]
    assert volumes == [v.mount_path for v in svc.volumes]
    for f in svc.build.files:
        rel = PurePosixPath("rootfs" + f.path)
        assert ".." not in rel.parts and rel.parts[0] == "rootfs"
        assert ctx[str(rel)] == f.content
    for c in cmds:
        if c.cmd == "RUN":  # every RUN is one shell line whose words are the spec's
            words = shlex.split(c.value[0])
            assert words, c.original
    assert len(ctx) == 1 + len(svc.build.files) + bool(svc.secrets)


def check_unit(svc: ServiceSpec) -> None:
    unit = formats.read_unit(renderers.render_systemd_unit(svc))
    command = svc.build.command if svc.build else (svc.image.command if svc.image else None)
    assert command is not None
    assert formats.unit_values(unit, "Service", "User") == [renderers.service_user(svc)]
    assert formats.unit_values(unit, "Service", "WorkingDirectory") == [renderers.working_dir(svc)]
    (exec_start,) = formats.unit_values(unit, "Service", "ExecStart")
    assert formats.split_exec(exec_start) == command
    mounts = formats.unit_values(unit, "Unit", "RequiresMountsFor")
    assert [m for line in mounts for m in line.split()] == [v.mount_path for v in svc.volumes]
    health = renderers.render_health_unit(svc)
    if health is not None:
        hunit = formats.read_unit(health)
        for key in ("User", "WorkingDirectory", "EnvironmentFile"):
            assert formats.unit_values(hunit, "Service", key) == formats.unit_values(
                unit, "Service", key
            )


def check_env_file(svc: ServiceSpec) -> None:
    values = renderers.secret_placeholders(svc)
    text = renderers.render_env_file(svc, values)
    assert formats.read_env_file(text) == dict(renderers.env_pairs(svc, values))
    assert formats.declared_secret_keys(text) == set(svc.secrets)
    assert renderers.SECRET_KEYS_COMMENT == formats.SECRET_KEYS_COMMENT


def check_cloud_init(svc: ServiceSpec) -> None:
    values = renderers.secret_placeholders(svc)
    doc = yaml.safe_load(renderers.render_cloud_init(svc, hostname="h-0", secret_values=values))
    files = doc["write_files"]
    paths = [f["path"] for f in files]
    assert len(paths) == len(set(paths)), paths
    by_path = {f["path"]: f for f in files}
    for f in svc.build.files if svc.build else []:
        assert by_path[f.path]["content"] == f.content
        assert by_path[f.path]["permissions"] == f.mode
    env = by_path[f"/etc/twinstack/{svc.name}.env"]["content"]
    assert formats.read_env_file(env) == dict(renderers.env_pairs(svc, values))
    unit = by_path[f"/etc/systemd/system/{svc.name}.service"]["content"]
    assert unit == renderers.render_systemd_unit(svc)
    assert [m[1] for m in doc.get("mounts", [])] == [v.mount_path for v in svc.volumes]
    if svc.build is not None and svc.build.packages:
        assert doc["packages"] == sorted(svc.build.packages)


def check_health(svc: ServiceSpec) -> None:
    hc = svc.health_check
    script = renderers.health_script(svc)
    if hc is None:
        assert script is None
        return
    assert script is not None
    words = shlex.split(script)
    if hc.command is not None:
        assert words[:3] == ["exec", "timeout", str(hc.timeout_s)]
        assert words[3:] == hc.command
    else:
        assert hc.http is not None
        assert words[words.index("printf") + 2] == hc.http.path


def check_all(svc: ServiceSpec) -> None:
    if svc.build is not None:
        check_dockerfile(svc)
    check_unit(svc)
    check_env_file(svc)
    check_cloud_init(svc)
    check_health(svc)


def test_the_example_services_read_back() -> None:
    for base in (BUILD, PREBUILT):
        svc = validated(copy.deepcopy(base))
        assert svc is not None
        check_all(svc)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(FIELDS),
    value=texts,
    mode=st.sampled_from(["replace", "append", "prepend"]),
)
def test_every_string_field_is_rejected_or_reads_back(
    field: tuple[dict[str, Any], Path_], value: str, mode: str
) -> None:
    base, path = field
    svc = validated(mutated(base, path, value, mode))
    if svc is not None:
        check_all(svc)


@settings(max_examples=200, deadline=None)
@given(key=texts, value=texts, where=st.sampled_from(["environment", "secrets"]))
def test_environment_keys_are_rejected_or_read_back(key: str, value: str, where: str) -> None:
    doc = copy.deepcopy(BUILD)
    doc["build"][where] = {key: value if where == "environment" else "someKey"}
    svc = validated(doc)
    if svc is not None:
        check_all(svc)


# --------------------------------------------------------------------------- real parsers

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _verify_unit(tmp: Path, name: str, text: str) -> None:
    unit = tmp / name
    unit.write_text(text, encoding="utf-8")
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    problems = [
        line
        for line in (out.stdout + out.stderr).splitlines()
        if name in line or "ExecStart" in line or "quoting" in line
    ]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


@needs_systemd
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(texts, max_size=4), workdir=st.sampled_from(["/", "/srv/app", "/a/.b"]))
def test_systemd_accepts_every_unit_twinstack_renders(
    tmp_path_factory: pytest.TempPathFactory, args: list[str], workdir: str
) -> None:
    doc = copy.deepcopy(BUILD)
    doc["build"]["command"] = ["/bin/true", *args]
    doc["build"]["workingDir"] = workdir
    svc = validated(doc)
    if svc is None:
        return
    tmp = tmp_path_factory.mktemp("units")
    _verify_unit(tmp, "svc.service", renderers.render_systemd_unit(svc))
    health = renderers.render_health_unit(svc)
    assert health is not None
    _verify_unit(tmp, "twinstack-health-svc.service", health)


_BASH_DUMP = 'set -a; . "$1"; set +a; shift; for k; do printf "%s\\0" "${!k}"; done'


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# (bash gives `$_` its own meaning, so the names start with a letter here)
@given(env=st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True), texts))
def test_bash_reads_the_env_file_like_the_reader(
    tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]
) -> None:
    doc = copy.deepcopy(BUILD)
    doc["build"]["environment"] = env
    doc["build"]["secrets"] = {}
    svc = validated(doc)
    if svc is None:
        return
    text = renderers.render_env_file(svc, {})
    path = tmp_path_factory.mktemp("env") / "svc.env"
    path.write_text(text, encoding="utf-8")
    keys = sorted(svc.environment)
    out = subprocess.run(
        ["bash", "-c", _BASH_DUMP, "bash", str(path), *keys],
        capture_output=True,
        timeout=30,
        check=True,
    )
    values = out.stdout.decode("utf-8").split("\0")[:-1] if keys else []
    assert dict(zip(keys, values, strict=True)) == svc.environment
    assert formats.read_env_file(text) == svc.environment


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(texts, min_size=1, max_size=4))
def test_bash_runs_the_health_command_with_the_spec_argv(
    tmp_path_factory: pytest.TempPathFactory, args: list[str]
) -> None:
    doc = copy.deepcopy(PREBUILT)
    doc["healthCheck"] = {"command": ["/usr/local/bin/pre", *args]}
    svc = validated(doc)
    if svc is None:
        return
    script = renderers.health_script(svc)
    assert script is not None
    fake = tmp_path_factory.mktemp("bin")
    (fake / "timeout").write_text('#!/bin/bash\nshift\nprintf "%s\\0" "$@"\n')
    (fake / "timeout").chmod(0o755)
    out = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        timeout=30,
        env={"PATH": f"{fake}:/usr/bin:/bin"},
        check=True,
    )
    assert out.stdout.decode("utf-8").split("\0")[:-1] == ["/usr/local/bin/pre", *args]
