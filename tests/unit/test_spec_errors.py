"""Every bad stack file gets one message naming the file, the key path, the bad value and
what is allowed — from `load_stack`, from the program (what `pulumi up` shows as a
RunError, i.e. `plan_stack` raising TwinstackError) and from the CLI (exit 2, no traceback).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.spec import load_stack, spec_from_config
from twinstack.errors import SpecError, TwinstackError
from twinstack.plan import plan_stack

from .helpers import VENV_BIN, base_config, write_stack

Config = dict[str, Any]


def svc(cfg: Config, i: int) -> dict[str, Any]:
    return cfg["twinstack:services"][i]


def prebuilt(container: str) -> Callable[[Config], None]:
    def mutate(cfg: Config) -> None:
        s = svc(cfg, 1)
        del s["build"]
        s["image"] = {
            "container": container,
            "vm": {"source": "/var/lib/ts/images/api.qcow2"},
            "command": ["/usr/bin/api"],
        }

    return mutate


@dataclass(frozen=True)
class Case:
    id: str
    mutate: Callable[[Config], None]
    path: str  # key path after the `twinstack:` namespace
    value: str  # how the bad value is shown
    allowed: tuple[str, ...]  # fragments saying what is allowed / what is wrong


def _fill_network(
    cfg: Config,
    replicas: int,
    runtime: str = "container",
    host: str | None = None,
    prefix: str = "",
) -> None:
    """Services on network `apps` (made a /20: addresses for all of them) until the base's
    3 instances and the new ones add up to 3 + ``replicas``."""
    cfg["twinstack:runtime"] = runtime
    cfg["twinstack:networks"][0]["cidr"] = "10.10.0.0/20"
    cfg["twinstack:storage"][0]["capacityGib"] = 1_000_000
    k = 0
    while replicas > 0:
        fill: dict[str, Any] = {
            "name": f"{prefix}fill{k}",
            "build": {"command": ["/usr/local/bin/idle"]},
            "networks": ["apps"],
            "replicas": min(replicas, 100),
        }
        if host is not None:
            fill["host"] = host
        cfg["twinstack:services"].append(fill)
        replicas -= 100
        k += 1


def _secret_file_clash(cfg: Config) -> None:
    build = svc(cfg, 1)["build"]
    build["secrets"] = {"DB_PASSWORD": "dbPassword"}
    build.setdefault("environment", {})["DB_PASSWORD_FILE"] = "/etc/db-password"


CASES = [
    Case(
        "env-names-a-secret-file",
        _secret_file_clash,
        "services[1].build",
        "['DB_PASSWORD_FILE']",
        ("name secret files", "<ENV>_FILE=/run/secrets/<ENV>", "rename the variable"),
    ),
    Case(
        "unknown-top-level-key",
        lambda c: c.update({"twinstack:sevices": []}),
        "sevices",
        "'sevices'",
        ("unknown key", "services", "runtime", "networks", "storage", "hosts", "vmImage"),
    ),
    Case(
        "unknown-nested-key",
        lambda c: svc(c, 1)["resources"].update({"memMib": 64}),
        "services[1].resources.memMib",
        "'memMib'",
        ("unknown key", "memoryMib", "vcpus", "diskGib"),
    ),
    Case(
        "unknown-port-key",
        lambda c: svc(c, 0)["ports"][0].update({"hostport": 1}),
        "services[0].ports[0].hostport",
        "'hostport'",
        ("unknown key", "hostPort", "hostIp"),
    ),
    Case(
        "unknown-runtime",
        lambda c: c.update({"twinstack:runtime": "lxc"}),
        "runtime",
        "'lxc'",
        ("not allowed", "'vm'", "'container'", "'both'"),
    ),
    Case(
        "unknown-service-runtime",
        lambda c: svc(c, 1).update({"runtime": "kubernetes"}),
        "services[1].runtime",
        "'kubernetes'",
        ("not allowed", "'vm'", "'container'", "'both'"),
    ),
    Case(
        "memory-zero",
        lambda c: svc(c, 1)["resources"].update({"memoryMib": 0}),
        "services[1].resources.memoryMib",
        "0",
        ("greater than or equal to",),
    ),
    Case(
        "memory-negative",
        lambda c: svc(c, 1)["resources"].update({"memoryMib": -512}),
        "services[1].resources.memoryMib",
        "-512",
        ("greater than or equal to",),
    ),
    Case(
        "vcpus-zero",
        lambda c: svc(c, 1)["resources"].update({"vcpus": 0}),
        "services[1].resources.vcpus",
        "0",
        ("greater than or equal to",),
    ),
    Case(
        "vcpus-negative",
        lambda c: svc(c, 0).update({"resources": {"vcpus": -0.5}}),
        "services[0].resources.vcpus",
        "-0.5",
        ("greater than or equal to",),
    ),
    Case(
        "port-too-high",
        lambda c: svc(c, 0)["ports"][0].update({"port": 70000}),
        "services[0].ports[0].port",
        "70000",
        ("65535",),
    ),
    Case(
        "port-zero",
        lambda c: svc(c, 0)["ports"][0].update({"port": 0}),
        "services[0].ports[0].port",
        "0",
        ("greater than or equal to 1",),
    ),
    Case(
        "host-port-too-high",
        lambda c: svc(c, 0)["ports"][0].update({"hostPort": 65536}),
        "services[0].ports[0].hostPort",
        "65536",
        ("65535",),
    ),
    Case(
        "host-port-plus-replicas-too-high",
        lambda c: svc(c, 0)["ports"][0].update({"hostPort": 65535}),
        "services[0].ports[0].hostPort",
        "65535",
        ("2 replicas", "65536", "≤ 65535"),
    ),
    Case(
        "duplicate-host-port",
        lambda c: svc(c, 1).update({"ports": [{"name": "http", "port": 80, "hostPort": 18080}]}),
        "services[1].ports[0].hostPort",
        "18080",
        ("already published by services[0].ports[0]", "web/http", "unique per host"),
    ),
    Case(
        "duplicate-host-port-of-replica",
        # web has 2 replicas publishing 18080 and 18081
        lambda c: svc(c, 1).update({"ports": [{"name": "http", "port": 80, "hostPort": 18081}]}),
        "services[1].ports[0].hostPort",
        "18081",
        ("18081/tcp", "web/http, replica 1", "unique per host"),
    ),
    Case(
        "duplicate-host-port-within-service-replicas",
        lambda c: svc(c, 0)["ports"].append({"name": "admin", "port": 9090, "hostPort": 18081}),
        "services[0].ports[1].hostPort",
        "18081",
        ("18081/tcp", "web/http, replica 1", "unique per host"),
    ),
    Case(
        "cidr-host-bits",
        lambda c: c["twinstack:networks"][0].update({"cidr": "10.10.0.1/24"}),
        "networks[0].cidr",
        "'10.10.0.1/24'",
        ("host bits set", "network address"),
    ),
    Case(
        "overlapping-networks",
        lambda c: c["twinstack:networks"].append({"name": "back", "cidr": "10.10.0.128/25"}),
        "networks[1].cidr",
        "'10.10.0.128/25'",
        ("overlaps networks[0]", "apps", "10.10.0.0/24", "must not overlap"),
    ),
    Case(
        "bridge-port-limit",
        # web (2) + api (1) + 10 x 100 + 21: the 1,024th container on the bridge is fill10's
        lambda c: _fill_network(c, 1021),
        "services[12].networks[0]",
        "'apps'",
        ("past 1,023 containers", "attaches 1,024 containers", "exchange full", "more networks"),
    ),
    Case(
        "bridge-port-limit-vms",
        lambda c: _fill_network(c, 1021, runtime="vm"),
        "services[12].networks[0]",
        "'apps'",
        ("past 1,023 VMs", "attaches 1,024 VMs", "at most 1,023"),
    ),
    Case(
        "duplicate-service-name",
        lambda c: svc(c, 1).update({"name": "web"}),
        "services[1].name",
        "'web'",
        ("duplicate service name", "services[0]"),
    ),
    Case(
        "relative-mount-path",
        lambda c: svc(c, 1)["volumes"][0].update({"mountPath": "var/lib/api"}),
        "services[1].volumes[0].mountPath",
        "'var/lib/api'",
        ("absolute",),
    ),
    Case(
        "undeclared-storage-pool",
        lambda c: svc(c, 1)["volumes"][0].update({"storage": "fast"}),
        "services[1].volumes[0].storage",
        "'fast'",
        ("not a declared storage pool", "declared: ['data']"),
    ),
    Case(
        "undeclared-network",
        lambda c: svc(c, 1).update({"networks": ["apps", "backend"]}),
        "services[1].networks[1]",
        "'backend'",
        ("not a declared network", "declared: ['apps']"),
    ),
    Case(
        "prebuilt-latest",
        prebuilt("nginx:latest"),
        "services[1].image.container",
        "'nginx:latest'",
        ("':latest'", "pin a version tag or a digest"),
    ),
    Case(
        "prebuilt-untagged",
        prebuilt("docker.io/library/nginx"),
        "services[1].image.container",
        "'docker.io/library/nginx'",
        ("no tag", "pin a version tag or a digest"),
    ),
    Case(
        "prebuilt-untagged-registry-port",
        prebuilt("registry.local:5000/team/nginx"),
        "services[1].image.container",
        "'registry.local:5000/team/nginx'",
        ("no tag", "pin a version tag or a digest"),
    ),
    Case(
        "build-base-latest",
        lambda c: svc(c, 1)["build"].update({"base": "debian:latest"}),
        "services[1].build.base",
        "'debian:latest'",
        ("':latest'", "pin a version tag or a digest"),
    ),
    Case(
        "build-base-untagged",
        lambda c: svc(c, 1)["build"].update({"base": "debian"}),
        "services[1].build.base",
        "'debian'",
        ("no tag", "pin a version tag or a digest"),
    ),
]


def bad_config(case: Case) -> Config:
    cfg = base_config()
    case.mutate(cfg)
    return cfg


def assert_message(msg: str, file_label: str, case: Case) -> None:
    assert file_label in msg, msg
    assert f"twinstack:{case.path}" in msg, msg
    assert case.value in msg, msg
    for fragment in case.allowed:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    assert "Traceback" not in msg
    assert "\n" not in msg.strip(), "one message, one line"


def test_base_config_is_valid(project: Path) -> None:
    path = write_stack(project, "good", base_config())
    spec = load_stack(path)
    assert [s.name for s in spec.services] == ["web", "api"]
    plan_stack("good", root=project)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_load_stack_message(project: Path, case: Case) -> None:
    path = write_stack(project, "bad", bad_config(case))
    with pytest.raises(SpecError) as err:
        load_stack(path)
    assert isinstance(err.value, ValueError)
    assert_message(str(err.value), str(path), case)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_program_message(project: Path, case: Case) -> None:
    """The program path (what `pulumi up` reports as a RunError)."""
    write_stack(project, "bad", bad_config(case))
    with pytest.raises(TwinstackError) as err:
        plan_stack("bad", root=project)
    assert_message(str(err.value), "stacks/Pulumi.bad.yaml", case)


@pytest.mark.parametrize("host_ip", ["0.0.0.0", "127.0.0.2"])
def test_same_host_port_on_another_address_is_fine(project: Path, host_ip: str) -> None:
    cfg = base_config()
    svc(cfg, 1)["ports"] = [{"name": "http", "port": 80, "hostPort": 18080, "hostIp": host_ip}]
    load_stack(write_stack(project, "ok", cfg))


def test_same_host_port_other_protocol_or_host_is_fine(project: Path) -> None:
    cfg = base_config()
    cfg["twinstack:hosts"] = {"a": {}, "b": {"dockerHost": "ssh://b"}}
    svc(cfg, 1)["ports"] = [
        {"name": "dns", "port": 53, "protocol": "udp", "hostPort": 18080},
        {"name": "http", "port": 80, "hostPort": 18081},
    ]
    svc(cfg, 1)["host"] = "b"
    load_stack(write_stack(project, "ok", cfg))


@pytest.mark.parametrize("runtime", ["container", "vm", "both"])
def test_a_full_bridge_is_fine(project: Path, runtime: str) -> None:
    """1,023 instances on one network of one host: every port of the bridge, and no error."""
    cfg = base_config()
    _fill_network(cfg, 1020, runtime)
    spec = load_stack(write_stack(project, "ok", cfg))
    assert sum(svc.replicas for svc in spec.services) == 1023


def test_the_bridge_limit_is_per_host(project: Path) -> None:
    """Each host has its own bridge per network: 1,023 instances on each of two hosts fit
    (both runtimes), one more on the second does not."""
    cfg = base_config()
    cfg["twinstack:hosts"] = {"a": {}, "b": {"libvirtUri": "qemu+ssh://b/system"}}
    _fill_network(cfg, 1020, "both")
    _fill_network(cfg, 1023, "both", host="b", prefix="b-")
    cfg["twinstack:networks"][0]["cidr"] = "10.10.0.0/19"  # addresses for both hosts' 2,046
    spec = load_stack(write_stack(project, "ok", cfg))
    assert sum(svc.replicas for svc in spec.services) == 2 * 1023
    cfg["twinstack:services"][-1]["replicas"] += 1  # one more on b: past the limit there
    with pytest.raises(SpecError) as err:
        load_stack(write_stack(project, "bad", cfg))
    msg = str(err.value)
    assert f"twinstack:services[{len(cfg['twinstack:services']) - 1}].networks[0]" in msg, msg
    assert "host 'b'" in msg and "attaches 1,024" in msg, msg


def test_digest_pinned_images_are_fine(project: Path) -> None:
    cfg = base_config()
    prebuilt("nginx@sha256:" + "a" * 64)(cfg)
    svc(cfg, 0)["build"]["base"] = "debian:bookworm@sha256:" + "b" * 64
    load_stack(write_stack(project, "ok", cfg))


def test_missing_secret_config_key(project: Path) -> None:
    cfg = base_config()
    svc(cfg, 1)["build"]["secrets"] = {"DB_PASSWORD": "dbPassword"}
    write_stack(project, "bad", cfg)
    with pytest.raises(TwinstackError) as err:
        plan_stack("bad", root=project)
    msg = str(err.value)
    assert "stacks/Pulumi.bad.yaml" in msg
    assert "twinstack:services[1].build.secrets.DB_PASSWORD" in msg
    assert "'dbPassword'" in msg
    assert "pulumi config set --secret dbPassword" in msg


def test_bad_yaml(project: Path) -> None:
    path = project / "stacks" / "Pulumi.bad.yaml"
    path.write_text("config:\n  twinstack:runtime: [vm\n  twinstack:services: []\n")
    for call in (lambda: load_stack(path), lambda: plan_stack("bad", root=project)):
        with pytest.raises(SpecError) as err:
            call()
        msg = str(err.value)
        assert str(path) in msg and "not valid YAML" in msg and "line " in msg, msg


def test_bad_top_level_of_stack_file(project: Path) -> None:
    path = project / "stacks" / "Pulumi.bad.yaml"
    path.write_text("confg:\n  twinstack:runtime: vm\n")
    with pytest.raises(SpecError) as err:
        load_stack(path)
    assert str(path) in str(err.value) and "'confg'" in str(err.value)
    assert "allowed: config" in str(err.value)


def test_missing_stack_file(project: Path) -> None:
    path = project / "stacks" / "Pulumi.nope.yaml"
    for call in (lambda: load_stack(path), lambda: plan_stack("nope", root=project)):
        with pytest.raises(SpecError) as err:
            call()
        assert str(path) in str(err.value)
        assert "no such stack file" in str(err.value)


def test_runtime_override_is_checked(project: Path) -> None:
    write_stack(project, "good", base_config())
    with pytest.raises(SpecError) as err:
        plan_stack("good", "bogus", root=project)
    assert "'bogus'" in str(err.value) and "vm, container, both" in str(err.value)
    with pytest.raises(SpecError) as err:
        spec_from_config(base_config(), source="x.yaml", runtime="bogus")
    assert "x.yaml" in str(err.value) and "vm, container, both" in str(err.value)


# ------------------------------------------------------------------ CLI, end to end

CLI_CASES = [
    c
    for c in CASES
    if c.id
    in {
        "unknown-nested-key",
        "unknown-runtime",
        "memory-zero",
        "duplicate-host-port-of-replica",
        "cidr-host-bits",
        "undeclared-storage-pool",
        "prebuilt-latest",
        "bridge-port-limit",
    }
]


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "twinstack"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "80", "HOME": str(cwd)},
    )


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_plan_bad_stack(project: Path, case: Case) -> None:
    write_stack(project, "bad", bad_config(case))
    res = run_cli(project, "plan", "--stack", "bad")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    assert res.stdout == ""
    assert res.stderr.startswith("error: ")
    # COLUMNS=80: the message must not be wrapped into several lines
    assert_message(res.stderr.strip(), "stacks/Pulumi.bad.yaml", case)


def test_cli_validate_bad_stack(project: Path) -> None:
    case = next(c for c in CASES if c.id == "overlapping-networks")
    path = write_stack(project, "bad", bad_config(case))
    res = run_cli(project, "validate", str(path))
    assert res.returncode == 2
    assert "Traceback" not in res.stdout + res.stderr
    assert_message(res.stderr.strip(), str(path), case)


def test_cli_shows_the_allowed_pattern_verbatim(project: Path) -> None:
    """Messages are plain text: brackets in them (regex classes, lists) must survive."""
    cfg = base_config()
    svc(cfg, 1)["name"] = "Api_1"
    write_stack(project, "bad", cfg)
    with pytest.raises(TwinstackError) as err:
        plan_stack("bad", root=project)
    expected = str(err.value)
    assert "[a-z]" in expected  # the allowed pattern
    res = run_cli(project, "plan", "--stack", "bad")
    assert res.returncode == 2
    assert "Traceback" not in res.stdout + res.stderr
    assert res.stderr.strip() == f"error: {expected}"


@pytest.mark.parametrize("kind", ["bad-yaml", "missing"])
def test_cli_plan_unreadable_stack(project: Path, kind: str) -> None:
    if kind == "bad-yaml":
        (project / "stacks" / "Pulumi.bad.yaml").write_text("config: {twinstack:runtime: vm\n")
    res = run_cli(project, "plan", "--stack", "bad")
    assert res.returncode == 2
    assert "Traceback" not in res.stdout + res.stderr
    assert "Pulumi.bad.yaml" in res.stderr
    assert ("not valid YAML" if kind == "bad-yaml" else "no such stack file") in res.stderr
