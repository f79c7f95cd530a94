"""Property tests: any valid spec plans in every runtime, and the VM and container
realizations of each service agree on ports, environment, volumes, limits and health."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components import renderers
from components.spec import ServiceSpec, load_stack
from twinstack.plan import plan_stack

from .helpers import (
    by_name,
    formats,
    is_secret,
    labels,
    make_project,
    parse_env_file,
    reveal,
    user_data,
    write_stack,
    written_file,
)

STACK = "prop"
names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)
# plain values: everything a YAML string and a systemd env file can carry on one line
env_values = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="$%`"),
    max_size=12,
)


@st.composite
def services(draw: st.DrawFn, index: int, nets: list[str], pools: list[str]) -> dict[str, Any]:
    svc: dict[str, Any] = {"name": f"s{index}-{draw(names)}"}
    ports = []
    for j, number in enumerate(draw(st.lists(st.integers(1, 65535), max_size=3, unique=True))):
        port: dict[str, Any] = {"name": f"p{j}", "port": number}
        if draw(st.booleans()):
            port["protocol"] = draw(st.sampled_from(["tcp", "udp"]))
        if draw(st.booleans()):
            port["hostPort"] = 0  # filled in below so host ports never clash
            if draw(st.booleans()):
                port["hostIp"] = draw(st.sampled_from(["0.0.0.0", "127.0.0.1", "192.0.2.7"]))
        ports.append(port)
    if ports:
        svc["ports"] = ports
    svc["resources"] = {
        "vcpus": draw(st.sampled_from([0.25, 0.5, 1, 1.5, 2, 3, 4.75])),
        "memoryMib": draw(st.integers(256, 65536)),  # a VM's minimum (any runtime can be vm)
        "diskGib": draw(st.integers(2, 64)),
    }
    vols = []
    for j, path in enumerate(
        draw(
            st.lists(
                st.from_regex(r"/[a-z]{1,6}(/[a-z]{1,6})?", fullmatch=True), max_size=3, unique=True
            )
        )
    ):
        vol: dict[str, Any] = {
            "name": f"v{j}",
            "mountPath": path,
            "sizeGib": draw(st.integers(1, 8)),
        }
        if draw(st.booleans()):
            vol["storage"] = draw(st.sampled_from(pools))
        vols.append(vol)
    if vols:
        svc["volumes"] = vols
    kind = draw(st.sampled_from(["none", "http", "command"]))
    if kind != "none":
        interval = draw(st.integers(1, 60))
        hc: dict[str, Any] = {
            "intervalS": interval,
            "timeoutS": draw(st.integers(1, interval)),
            "retries": draw(st.integers(1, 10)),
            "startPeriodS": draw(st.integers(0, 120)),
        }
        if kind == "http" and ports:
            target = draw(st.sampled_from(ports))
            ref = target["name"] if draw(st.booleans()) else target["port"]
            hc["http"] = {"path": draw(st.sampled_from(["/", "/healthz", "/a/b?x=1"])), "port": ref}
        else:
            hc["command"] = draw(
                st.lists(
                    st.text(alphabet="abc -'\"/$", min_size=1, max_size=6), min_size=1, max_size=3
                )
            )
        svc["healthCheck"] = hc
    svc["replicas"] = draw(st.integers(1, 3))
    policy = draw(st.sampled_from(["no", "on-failure", "always", "unless-stopped"]))
    svc["restart"] = {"policy": policy, "maxRetries": draw(st.integers(1, 10))}
    choice = draw(st.sampled_from(["default", "subset", "none"]))
    if choice == "subset":
        svc["networks"] = draw(st.lists(st.sampled_from(nets), unique=True, min_size=1))
    elif choice == "none" and not svc.get("ports"):
        # a VM with ports needs a network to be reached (the spec rejects it otherwise)
        svc["networks"] = []
    env = draw(st.dictionaries(env_names, env_values, max_size=3))
    secrets = {
        f"SECRET_{k}": f"key{index}{k.lower().replace('_', '')}"
        for k in draw(st.lists(st.sampled_from(["A", "B"]), unique=True, max_size=2))
    }
    if draw(st.booleans()):
        build: dict[str, Any] = {
            "command": [
                draw(st.sampled_from(["/bin/true", "python3", "/usr/bin/run-app"])),
                *draw(st.lists(st.text(alphabet="abc-/ '%$\"\\\n", max_size=6), max_size=3)),
            ],
            "packages": draw(
                st.lists(
                    st.sampled_from(["curl", "python3", "jq=1.6-2.1"]), unique=True, max_size=2
                )
            ),
            "user": draw(st.sampled_from(["app", "root", "svc_1"])),
        }
        if env:
            build["environment"] = env
        if secrets:
            build["secrets"] = secrets
        if draw(st.booleans()):
            build["files"] = [
                {"path": "/etc/app/conf", "content": draw(env_values), "mode": "0640"}
            ]
        svc["build"] = build
    else:
        image: dict[str, Any] = {
            "container": f"registry.example:5000/{svc['name']}:1.{index}",
            "vm": {"source": f"/srv/images/{svc['name']}.qcow2"},
        }
        if env:
            image["environment"] = env
        if secrets:
            image["secrets"] = secrets
        # a prebuilt service that runs as a VM must say what its unit runs
        image["command"] = ["/usr/bin/run", "--flag"]
        svc["image"] = image
    return svc


@st.composite
def stacks(draw: st.DrawFn) -> dict[str, Any]:
    n_nets = draw(st.integers(1, 3))
    nets = [
        {
            "name": f"n{i}",
            "cidr": f"10.{70 + i}.0.0/24",
            "mode": draw(st.sampled_from(["nat", "isolated"])),
        }
        for i in range(n_nets)
    ]
    pools = [
        {"name": f"pool{i}", "path": f"/srv/pools/{i}", "capacityGib": 100_000}
        for i in range(draw(st.integers(1, 2)))
    ]
    net_names = [n["name"] for n in nets]
    pool_names = [p["name"] for p in pools]
    svcs = [draw(services(i, net_names, pool_names)) for i in range(draw(st.integers(1, 4)))]
    next_port = 20000
    for svc in svcs:
        for port in svc.get("ports", []):
            if "hostPort" in port:
                port["hostPort"] = next_port
                next_port += svc["replicas"]
    config: dict[str, Any] = {
        "twinstack:runtime": draw(st.sampled_from(["vm", "container", "both"])),
        "twinstack:networks": nets,
        "twinstack:storage": pools,
        "twinstack:vmImage": {"source": "/srv/images/debian.qcow2"},
        "twinstack:services": svcs,
    }
    for svc in svcs:
        src = svc.get("build") or svc.get("image") or {}
        for key in src.get("secrets", {}).values():
            config[f"twinstack:{key}"] = {"secure": "v1:AAAA"}
    return config


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("props"))


def _parity(svc: ServiceSpec, doc: dict[str, Any]) -> None:
    """The VM and container realizations of ``svc`` agree."""
    for i in range(svc.replicas):
        c = by_name(doc, "docker:index/container:Container", f"{svc.name}-container-{i}")["inputs"]
        d = by_name(doc, "libvirt:index/domain:Domain", f"{svc.name}-vm-{i}")["inputs"]
        seed = by_name(
            doc, "libvirt:index/cloudInitDisk:CloudInitDisk", f"{svc.name}-vm-{i}-cloudinit"
        )
        ud = user_data(seed)

        # ports: every published container port is a declared guest port
        spec_ports = sorted((p.port, p.protocol) for p in svc.ports)
        published = sorted((p["internal"], p["protocol"]) for p in c.get("ports", []))
        assert published == sorted(
            (p.port, p.protocol) for p in svc.ports if p.host_port is not None
        )
        assert set(published) <= set(spec_ports)

        # environment: container envs == the VM's EnvironmentFile, but that a secret is
        # <ENV>_FILE naming its file in the container (whose writer uploads the value)
        envs = c.get("envs", [])
        assert not is_secret(envs)
        c_env = dict(e.split("=", 1) for e in envs)
        env_file = written_file(ud, f"/etc/twinstack/{svc.name}.env")
        assert env_file is not None
        vm_env = parse_env_file(env_file)
        assert {k: v for k, v in vm_env.items() if k not in svc.secrets} == {
            k: v for k, v in c_env.items() if not k.endswith("_FILE") or k in svc.environment
        }
        for env in svc.secrets:
            assert c_env[f"{env}_FILE"] == f"/run/secrets/{env}"
        uploads = (
            by_name(doc, "docker:index/container:Container", f"{svc.name}-container-{i}-secrets")[
                "inputs"
            ]["uploads"]
            if svc.secrets
            else []
        )
        assert {u["file"]: reveal(u["content"]) for u in uploads} == {
            f"/run/secrets/{env}": vm_env[env] for env in svc.secrets
        }
        assert set(vm_env) == set(svc.environment) | set(svc.secrets)

        # volumes: same count and mount paths
        targets = [m["target"] for m in c.get("mounts", []) if m["target"] != "/run/secrets"]
        vm_mounts = [m[1] for m in ud.get("mounts", [])]
        assert targets == vm_mounts == [v.mount_path for v in svc.volumes]
        assert len(d["disks"]) == 1 + len(svc.volumes)
        assert len(ud.get("fs_setup", [])) == len(svc.volumes)

        # limits
        facts = json.loads(d["description"])["twinstack"]
        lab = labels(c)
        assert c["memory"] == d["memory"] == facts["memoryMib"] == svc.resources.memory_mib
        assert int(lab["twinstack.memory-mib"]) == d["memory"]
        assert float(c["cpus"]) == float(lab["twinstack.vcpus"]) == facts["vcpus"]
        assert d["vcpu"] == math.ceil(float(c["cpus"]))
        assert int(lab["twinstack.disk-gib"]) == facts["diskGib"]

        # health check: one probe script in both
        probe = renderers.health_probe(svc)
        health_file = written_file(ud, f"/usr/local/lib/twinstack/health-{svc.name}")
        if probe is None:
            assert "healthcheck" not in c and health_file is None
        else:
            tests = c["healthcheck"]["tests"]
            assert tests == probe
            if renderers.loads_secrets(svc):  # the probe sees the service's secrets too
                assert tests[1] == renderers.SECRETS_LOADER
                tests = tests[:1] + tests[2:]
            assert tests[:3] == ["CMD", "/bin/bash", "-c"]
            assert health_file == tests[3] + "\n"

        # the systemd unit runs the container's command
        unit = written_file(ud, f"/etc/systemd/system/{svc.name}.service")
        assert unit is not None
        parsed = formats.read_unit(unit)
        if svc.build is not None:
            (exec_start,) = formats.unit_values(parsed, "Service", "ExecStart")
            assert formats.split_exec(exec_start) == svc.build.command
            assert formats.unit_values(parsed, "Service", "User") == [svc.build.user]
            assert c["user"] == svc.build.user


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=stacks())
def test_any_valid_spec_plans_and_realizations_agree(root: Path, config: dict[str, Any]) -> None:
    path = write_stack(root, STACK, config)
    spec = load_stack(path)  # generated specs are valid by construction
    with contextlib.chdir(root):
        docs = {rt: plan_stack(STACK, rt, root=root) for rt in ("vm", "container", "both")}
    for rt, doc in docs.items():
        assert doc["runtime"] == rt
        urns = [r["urn"] for r in doc["resources"]]
        assert len(urns) == len(set(urns))
        services = doc["outputs"]["services"]
        for svc in spec.services:
            insts = services[svc.name]["instances"]
            want = renderers_runtimes(svc.runtime or rt)
            assert sorted({x["runtime"] for x in insts}) == want
            assert len(insts) == svc.replicas * len(want)
    both = docs["both"]
    for svc in spec.services:
        if svc.runtime is None:
            _parity(svc, both)
            vm = [
                x
                for x in both["outputs"]["services"][svc.name]["instances"]
                if x["runtime"] == "vm"
            ]
            ct = [
                x
                for x in both["outputs"]["services"][svc.name]["instances"]
                if x["runtime"] == "container"
            ]
            for a, b in zip(vm, ct, strict=True):
                assert set(a) == set(b)
                assert a["footprint"] == b["footprint"]
                if both_networks(spec, svc):
                    # without networks a VM has no NIC; see test_components'
                    # test_endpoints_without_networks for that case
                    assert set(a["endpoints"]) == set(b["endpoints"]), (svc.name, a, b)


def renderers_runtimes(runtime: str) -> list[str]:
    return ["container", "vm"] if runtime == "both" else [runtime]


def both_networks(spec: Any, svc: ServiceSpec) -> bool:
    return bool(spec.networks_of(svc))
