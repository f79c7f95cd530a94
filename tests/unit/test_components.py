"""Mock-based tests of every component in both runtimes, read from the recorded plan."""

from __future__ import annotations

import json
import math
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from components import renderers
from components.provider_forms import docker_cpus
from components.spec import StackSpec, load_stack
from twinstack.errors import TwinstackError
from twinstack.plan import SIG_KEY, plan_stack

from .helpers import (
    by_name,
    by_urn,
    is_secret,
    labels,
    of_type,
    parse_env_file,
    provider_urn,
    reveal,
    user_data,
    write_stack,
    written_file,
)

GIB = 1024**3
STACK = "comp"
CHECKSUM = "sha256:" + "0123456789abcdef" * 4

CONFIG: dict[str, Any] = {
    "twinstack:runtime": "both",
    "twinstack:hosts": {
        "alpha": {"libvirtUri": "qemu+ssh://alpha/system", "dockerHost": "ssh://ops@alpha"},
        "beta": {
            "libvirtUri": "qemu+ssh://beta/system",
            "dockerHost": "tcp://beta:2376",
            "domainType": "qemu",
        },
    },
    "twinstack:networks": [
        {"name": "front", "cidr": "10.20.0.0/24"},
        {"name": "back", "cidr": "10.21.0.0/24", "mode": "isolated"},
    ],
    "twinstack:storage": [
        {"name": "data", "path": "/srv/pools/data", "capacityGib": 1000},
        {"name": "fast", "path": "/srv/pools/fast", "capacityGib": 100, "protect": False},
    ],
    "twinstack:vmImage": {"source": "/srv/images/debian.qcow2"},
    "twinstack:services": [
        {
            "name": "web",
            "build": {
                "packages": ["python3"],
                "files": [{"path": "/srv/www/index.html", "content": "<h1>hi</h1>\n"}],
                "command": ["python3", "-m", "http.server", "8080"],
                "workingDir": "/srv/www",
            },
            "resources": {"vcpus": 1.5, "memoryMib": 768, "diskGib": 6},
            "ports": [
                {"name": "http", "port": 8080, "hostPort": 18080},
                {"name": "admin", "port": 9000, "hostIp": "0.0.0.0", "hostPort": 19000},
                {"name": "metrics", "port": 9100},
            ],
            "healthCheck": {
                "http": {"path": "/healthz", "port": "http"},
                "intervalS": 7,
                "timeoutS": 2,
                "retries": 4,
                "startPeriodS": 3,
            },
            "replicas": 3,
            "networks": ["front", "back"],
        },
        {
            "name": "api",
            "build": {"command": ["/usr/bin/api"], "environment": {"PORT": "8081"}},
            "resources": {"vcpus": 0.5, "memoryMib": 256, "diskGib": 3},
            "ports": [{"name": "http", "port": 8081}],
            "volumes": [
                {"name": "db", "mountPath": "/var/lib/api", "sizeGib": 2},
                {"name": "cache", "mountPath": "/var/cache/api", "sizeGib": 1, "storage": "fast"},
            ],
            "healthCheck": {"command": ["/usr/bin/api", "--check"]},
            "restart": {"policy": "always"},
            "networks": ["back"],
            "host": "beta",
        },
        {
            "name": "proxy",
            "image": {
                "container": "nginx:1.27.3",
                "vm": {"source": "https://images.example/nginx.qcow2", "checksum": CHECKSUM},
                "command": ["/usr/sbin/nginx", "-g", "daemon off;"],
            },
            "resources": {"vcpus": 2, "memoryMib": 256},
            "ports": [{"name": "https", "port": 443, "hostPort": 8443}],
            "restart": {"policy": "unless-stopped"},
        },
    ],
}

COMPONENT_TYPES = {
    "twinstack:network:Network",
    "twinstack:storage:Storage",
    "twinstack:service:Service",
    "twinstack:service:VmRealization",
    "twinstack:service:ContainerRealization",
}
# docs/plan-format.md, "Type tokens the components emit"
CHILDREN = {
    "twinstack:network:Network": {"libvirt:index/network:Network", "docker:index/network:Network"},
    "twinstack:storage:Storage": {"libvirt:index/pool:Pool", "libvirt:index/volume:Volume"},
    "twinstack:service:Service": {
        "twinstack:service:VmRealization",
        "twinstack:service:ContainerRealization",
    },
    "twinstack:service:VmRealization": {
        "libvirt:index/volume:Volume",
        "libvirt:index/cloudInitDisk:CloudInitDisk",
        "libvirt:index/domain:Domain",
    },
    "twinstack:service:ContainerRealization": {
        "docker:index/remoteImage:RemoteImage",
        "docker:index/volume:Volume",
        "docker:index/container:Container",
    },
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Plans of the same stack under every runtime, and its spec."""
    from .helpers import make_project

    root = make_project(tmp_path_factory.mktemp("components"))
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        path = write_stack(root, STACK, CONFIG)
        spec = load_stack(path)
        plans = {rt: plan_stack(STACK, rt, root=root) for rt in ("vm", "container", "both")}
    finally:
        mp.undo()
    return {"spec": spec, "plans": plans, "root": root}


def spec_of(world: dict[str, Any]) -> StackSpec:
    spec = world["spec"]
    assert isinstance(spec, StackSpec)
    return spec


RUNTIMES = ["vm", "container", "both"]


def test_component_type_tokens(world: dict[str, Any]) -> None:
    doc = world["plans"]["both"]
    types = {r["type"] for r in doc["resources"]}
    assert types >= COMPONENT_TYPES
    counts = {t: len(of_type(doc, t)) for t in COMPONENT_TYPES}
    assert counts == {
        "twinstack:network:Network": 2,
        "twinstack:storage:Storage": 2,
        "twinstack:service:Service": 3,
        "twinstack:service:VmRealization": 3,
        "twinstack:service:ContainerRealization": 3,
    }
    for r in doc["resources"]:
        if r["type"].startswith("twinstack:"):
            assert r["custom"] is False
            assert len(r["type"].split(":")) == 3
        else:
            assert r["custom"] is True


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_parents_and_child_names(world: dict[str, Any], runtime: str) -> None:
    doc = world["plans"][runtime]
    urns = by_urn(doc)
    names = {r["name"] for r in doc["resources"]}
    for r in doc["resources"]:
        assert not any(n in r["type"] for n in names if len(n) > 2), r["type"]
        if r["type"].startswith("pulumi:providers:") or r["type"] in {
            "twinstack:network:Network",
            "twinstack:storage:Storage",
            "twinstack:service:Service",
        }:
            assert r["parent"] is None, r["urn"]
            continue
        assert r["parent"] in urns, f"{r['urn']} has no recorded parent"
        parent = urns[r["parent"]]
        assert r["type"] in CHILDREN[parent["type"]], (parent["type"], r["type"])
        assert r["name"].startswith(parent["name"] + "-"), (parent["name"], r["name"])
        # the URN encodes the parent chain's type
        assert f"{parent['type']}$" in r["urn"]


def _host_of(doc: dict[str, Any], spec: StackSpec, r: dict[str, Any]) -> str:
    urns = by_urn(doc)
    top = r
    while top["parent"] is not None:
        top = urns[top["parent"]]
    if top["type"] == "twinstack:service:Service":
        svc = next(s for s in spec.services if s.name == top["name"])
        return spec.host_of(svc)
    rest = r["name"][len(top["name"]) + 1 :]
    host = next(h for h in spec.hosts if rest.startswith(h + "-"))
    return host


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_explicit_providers_per_host(world: dict[str, Any], runtime: str) -> None:
    doc, spec = world["plans"][runtime], spec_of(world)
    providers = {r["urn"]: r for r in doc["resources"] if r["type"].startswith("pulumi:providers:")}
    by_provider_name = {(r["type"], r["name"]): r for r in providers.values()}
    expected: set[tuple[str, str]] = set()
    if runtime != "container":
        expected |= {("pulumi:providers:libvirt", f"{h}-libvirt") for h in ("alpha", "beta")}
    if runtime != "vm":
        expected |= {("pulumi:providers:docker", f"{h}-docker") for h in ("alpha", "beta")}
    assert set(by_provider_name) == expected
    for (typ, name), rec in by_provider_name.items():
        host = spec.hosts[name.rsplit("-", 1)[0]]
        if typ.endswith("libvirt"):
            assert rec["inputs"]["uri"] == host.libvirt_uri
        else:
            assert rec["inputs"]["host"] == host.docker_host
    for r in doc["resources"]:
        if not r["custom"] or r["type"].startswith("pulumi:providers:"):
            continue
        pkg = r["type"].split(":")[0]
        ref = provider_urn(r["provider"])
        assert ref in providers, f"{r['urn']} has no explicit provider"
        prov = providers[ref]
        assert prov["type"] == f"pulumi:providers:{pkg}"
        assert prov["name"] == f"{_host_of(doc, spec, r)}-{pkg}", r["name"]


@pytest.mark.parametrize("runtime", ["vm", "both"])
def test_libvirt_domains(world: dict[str, Any], runtime: str) -> None:
    doc, spec = world["plans"][runtime], spec_of(world)
    domains = of_type(doc, "libvirt:index/domain:Domain")
    assert len(domains) == sum(s.replicas for s in spec.services)
    for svc in spec.services:
        host = spec.hosts[spec.host_of(svc)]
        for i in range(svc.replicas):
            d = by_name(doc, "libvirt:index/domain:Domain", f"{svc.name}-vm-{i}")
            inp = d["inputs"]
            assert inp["name"] == f"{STACK}-{svc.name}-{i}"
            assert inp["memory"] == svc.resources.memory_mib  # MiB
            assert inp["vcpu"] == math.ceil(svc.resources.vcpus)
            assert inp["type"] == host.domain_type
            assert ("cpu" in inp) == (host.domain_type == "kvm")
            assert inp["autostart"] is True and inp["qemuAgent"] is False  # see test_provider_forms
            assert inp["consoles"] == [{"type": "pty", "targetPort": "0", "targetType": "serial"}]
            assert d["deleteBeforeReplace"] is True
            seed = by_name(
                doc, "libvirt:index/cloudInitDisk:CloudInitDisk", f"{svc.name}-vm-{i}-cloudinit"
            )
            assert inp["cloudinit"] == f"{seed['name']}-id"
            assert seed["urn"] in d["dependencies"]
            assert len(inp["disks"]) == 1 + len(svc.volumes)
            root = by_name(doc, "libvirt:index/volume:Volume", f"{svc.name}-vm-{i}-root")
            assert (
                inp["disks"][0]["volumeId"] == f"{root['inputs']['pool']}/{root['inputs']['name']}"
            )
            facts = json.loads(inp["description"])["twinstack"]
            assert facts["stack"] == STACK and facts["service"] == svc.name
            assert facts["replica"] == i and facts["host"] == spec.host_of(svc)
            assert facts["diskGib"] == svc.resources.disk_gib + sum(v.size_gib for v in svc.volumes)
            nets = spec.networks_of(svc)
            assert len(inp["networkInterfaces"]) == len(nets)
            for nic, net_name in zip(inp["networkInterfaces"], nets, strict=True):
                net = next(n for n in spec.networks if n.name == net_name)
                lv = by_name(
                    doc, "libvirt:index/network:Network", f"{net_name}-{spec.host_of(svc)}-libvirt"
                )
                assert nic["networkId"] == f"{lv['name']}-id"
                assert IPv4Address(nic["addresses"][0]) in net.vm_subnet
                assert nic["hostname"] == inp["name"]


@pytest.mark.parametrize("runtime", ["vm", "both"])
def test_libvirt_volumes(world: dict[str, Any], runtime: str) -> None:
    doc, spec = world["plans"][runtime], spec_of(world)
    # (host, pool, volume name) -> base image volume; hosts have the same physical names
    bases = {
        (r["name"].split("-")[1], r["inputs"]["pool"], r["inputs"]["name"]): r
        for r in of_type(doc, "libvirt:index/volume:Volume")
        if r["name"].split("-")[2] == "base"
    }
    # one base volume per image and pool per host: debian + nginx on alpha, debian on beta
    assert sorted(h for h, _, _ in bases) == ["alpha", "alpha", "beta"]
    for svc in spec.services:
        image = spec.vm_image_of(svc)
        assert image is not None
        for i in range(svc.replicas):
            root = by_name(doc, "libvirt:index/volume:Volume", f"{svc.name}-vm-{i}-root")
            inp = root["inputs"]
            assert inp["size"] == svc.resources.disk_gib * GIB  # bytes
            assert inp["pool"] == f"{STACK}-data"
            pool_name, vol_name = inp["baseVolumeId"].split("/", 1)
            base_ref = (spec.host_of(svc), pool_name, vol_name)
            assert base_ref in bases, inp["baseVolumeId"]
            base = bases[base_ref]
            assert base["inputs"]["source"] == image.source
            assert base["name"].startswith(f"data-{spec.host_of(svc)}-base-")
            assert base["urn"] in root["dependencies"]
            for vol in svc.volumes:
                data = by_name(doc, "libvirt:index/volume:Volume", f"{svc.name}-vm-{i}-{vol.name}")
                assert data["inputs"]["size"] == vol.size_gib * GIB
                assert "baseVolumeId" not in data["inputs"]
                pool = vol.storage or "data"
                assert data["inputs"]["pool"] == f"{STACK}-{pool}"
                assert data["protect"] is (pool == "data")


@pytest.mark.parametrize("runtime", ["vm", "both"])
def test_storage_and_libvirt_networks(world: dict[str, Any], runtime: str) -> None:
    doc, spec = world["plans"][runtime], spec_of(world)
    pools = of_type(doc, "libvirt:index/pool:Pool")
    # data holds root disks on both hosts; fast only api's cache on beta
    assert sorted(p["name"] for p in pools) == [
        "data-alpha-pool",
        "data-beta-pool",
        "fast-beta-pool",
    ]
    for p in pools:
        spec_pool = next(s for s in spec.storage if p["name"].startswith(s.name + "-"))
        assert p["inputs"]["type"] == "dir"
        assert p["inputs"]["target"]["path"] == spec_pool.path
        assert p["protect"] is spec_pool.protect
    nets = of_type(doc, "libvirt:index/network:Network")
    # front: web and proxy on alpha; back: web on alpha, api on beta
    assert sorted(n["name"] for n in nets) == [
        "back-alpha-libvirt",
        "back-beta-libvirt",
        "front-alpha-libvirt",
    ]
    for n in nets:
        net = next(s for s in spec.networks if n["name"].startswith(s.name + "-"))
        assert n["inputs"]["addresses"] == [str(net.vm_subnet)]
        assert n["inputs"]["mode"] == ("nat" if net.mode == "nat" else "none")
        assert n["inputs"]["name"] == f"{STACK}-{net.name}"


@pytest.mark.parametrize("runtime", ["container", "both"])
def test_docker_containers(world: dict[str, Any], runtime: str) -> None:
    doc, spec = world["plans"][runtime], spec_of(world)
    containers = of_type(doc, "docker:index/container:Container")
    assert len(containers) == sum(s.replicas for s in spec.services)
    for svc in spec.services:
        for i in range(svc.replicas):
            c = by_name(doc, "docker:index/container:Container", f"{svc.name}-container-{i}")
            inp = c["inputs"]
            name = f"{STACK}-{svc.name}-{i}"
            assert inp["name"] == name and inp["hostname"] == name
            # the provider multiplies `memory` by 1024*1024: the input is MiB
            assert inp["memory"] == svc.resources.memory_mib
            assert inp["memorySwap"] == svc.resources.memory_mib
            assert inp["cpus"] == docker_cpus(svc.resources.vcpus)  # the provider's form
            assert isinstance(inp["cpus"], str)
            published = [p for p in svc.ports if p.host_port is not None]
            assert inp.get("ports", []) == [
                {
                    "internal": p.port,
                    "external": p.host_port + i,
                    "ip": str(p.host_ip),
                    "protocol": p.protocol,
                }
                for p in published
            ]
            probe = renderers.health_probe(svc)
            if probe is None:
                assert "healthcheck" not in inp
            else:
                hc = svc.health_check
                assert hc is not None
                assert inp["healthcheck"] == {
                    "tests": probe,
                    "interval": f"{hc.interval_s}s",
                    "timeout": f"{hc.timeout_s}s",
                    "retries": hc.retries,
                    "startPeriod": f"{hc.start_period_s}s",
                }
            assert inp["restart"] == svc.restart.policy
            if svc.restart.policy == "on-failure":
                assert inp["maxRetryCount"] == svc.restart.max_retries
            else:
                assert "maxRetryCount" not in inp
            assert inp["logDriver"] == "json-file"
            assert inp["logOpts"] == {"max-size": "10m", "max-file": "3"}
            assert labels(inp) == {
                "twinstack.stack": STACK,
                "twinstack.service": svc.name,
                "twinstack.runtime": "container",
                "twinstack.replica": str(i),
                "twinstack.host": spec.host_of(svc),
                "twinstack.vcpus": f"{svc.resources.vcpus:g}",
                "twinstack.memory-mib": str(svc.resources.memory_mib),
                "twinstack.disk-gib": str(
                    svc.resources.disk_gib + sum(v.size_gib for v in svc.volumes)
                ),
                "twinstack.ports": ",".join(f"{p.port}/{p.protocol}" for p in svc.ports),
            }
            # a prebuilt image without `user` keeps its own USER
            expected_user = renderers.service_user(svc) if svc.build or svc.image_user else None
            assert inp.get("user") == expected_user
            assert c["deleteBeforeReplace"] is True
            mounts = inp.get("mounts", [])
            assert [m["target"] for m in mounts] == [v.mount_path for v in svc.volumes]
            for m, vol in zip(mounts, svc.volumes, strict=True):
                dv = by_name(
                    doc, "docker:index/volume:Volume", f"{svc.name}-container-{i}-{vol.name}"
                )
                assert m["source"] == dv["inputs"]["name"] == f"{name}-{vol.name}"
                assert m["type"] == "volume"
                assert labels(dv["inputs"])["twinstack.service"] == svc.name
                assert labels(dv["inputs"])["twinstack.runtime"] == "container"
                assert labels(dv["inputs"])["twinstack.stack"] == STACK
            nets = spec.networks_of(svc)
            adv = inp["networksAdvanced"]
            assert [a["name"] for a in adv] == [f"{STACK}-{n}" for n in nets]
            for a, net_name in zip(adv, nets, strict=True):
                net = next(n for n in spec.networks if n.name == net_name)
                assert IPv4Address(a["ipv4Address"]) in net.container_subnet
                assert a["aliases"] == [svc.name]


@pytest.mark.parametrize("runtime", ["container", "both"])
def test_docker_images_and_networks(world: dict[str, Any], runtime: str) -> None:
    doc, spec = world["plans"][runtime], spec_of(world)
    for svc in spec.services:
        c0 = by_name(doc, "docker:index/container:Container", f"{svc.name}-container-0")
        if svc.image is not None:
            img = by_name(
                doc, "docker:index/remoteImage:RemoteImage", f"{svc.name}-container-image"
            )
            assert img["inputs"]["name"] == svc.image.container
            assert c0["inputs"]["image"] == svc.image.container
            continue
        img = by_name(doc, "docker:index/remoteImage:RemoteImage", f"{svc.name}-container-image")
        ctx = renderers.render_build_context(svc)
        tag = renderers.context_digest(ctx)
        assert img["inputs"]["name"] == f"twinstack/{STACK}-{svc.name}:{tag}"
        assert c0["inputs"]["image"] == img["inputs"]["name"]
        assert img["inputs"]["keepLocally"] is False  # destroy removes what it built
        build = img["inputs"]["build"]
        dockerfile = world["root"] / build["context"] / build["dockerfile"]  # relative to context
        assert dockerfile.read_text() == renderers.render_dockerfile(svc)
        for rel, content in ctx.items():
            assert (world["root"] / img["inputs"]["build"]["context"] / rel).read_text() == content
    for n in of_type(doc, "docker:index/network:Network"):
        net = next(s for s in spec.networks if n["name"].startswith(s.name + "-"))
        sub = net.container_subnet
        assert n["inputs"]["ipamConfigs"] == [
            {"subnet": str(sub), "gateway": str(sub.network_address + 1)}
        ]
        assert n["inputs"]["internal"] is (net.mode == "isolated")
        assert labels(n["inputs"])["twinstack.stack"] == STACK


def test_addresses_are_unique_per_network(world: dict[str, Any]) -> None:
    doc = world["plans"]["both"]
    seen: set[str] = set()
    for d in of_type(doc, "libvirt:index/domain:Domain"):
        for nic in d["inputs"]["networkInterfaces"]:
            assert nic["addresses"][0] not in seen
            seen.add(nic["addresses"][0])
    for c in of_type(doc, "docker:index/container:Container"):
        for a in c["inputs"]["networksAdvanced"]:
            assert a["ipv4Address"] not in seen
            seen.add(a["ipv4Address"])


def test_runtime_selects_realizations(world: dict[str, Any]) -> None:
    plans = world["plans"]
    for runtime, absent in (("vm", "docker"), ("container", "libvirt")):
        types = {r["type"] for r in plans[runtime]["resources"]}
        assert not any(t.startswith(f"{absent}:") or t.endswith(f":{absent}") for t in types)
    assert not of_type(plans["vm"], "twinstack:service:ContainerRealization")
    assert not of_type(plans["container"], "twinstack:service:VmRealization")


def test_both_has_no_name_clashes(world: dict[str, Any]) -> None:
    doc = world["plans"]["both"]
    urns = [r["urn"] for r in doc["resources"]]
    assert len(urns) == len(set(urns))
    for kind in ("vm", "container"):
        assert (
            len(
                of_type(
                    doc,
                    f"twinstack:service:{kind.title()}Realization"
                    if kind == "vm"
                    else "twinstack:service:ContainerRealization",
                )
            )
            == 3
        )
    # every resource of each single runtime appears, unchanged in URN, in `both`
    both = set(urns)
    for runtime in ("vm", "container"):
        single = {r["urn"] for r in world["plans"][runtime]["resources"]}
        assert single <= both, sorted(single - both)


def test_shared_urns_survive_a_runtime_flip(world: dict[str, Any]) -> None:
    shared = {"twinstack:network:Network", "twinstack:storage:Storage", "twinstack:service:Service"}

    def urns(runtime: str) -> set[str]:
        return {r["urn"] for r in world["plans"][runtime]["resources"] if r["type"] in shared}

    assert urns("vm") == urns("container") == urns("both")
    assert len(urns("vm")) == 7


def test_realizations_have_the_same_output_surface(world: dict[str, Any]) -> None:
    spec = spec_of(world)
    services = world["plans"]["both"]["outputs"]["services"]
    assert set(services) == {s.name for s in spec.services}
    for svc in spec.services:
        out = services[svc.name]
        assert out["runtime"] == "both"
        insts = out["instances"]
        vm = [x for x in insts if x["runtime"] == "vm"]
        ct = [x for x in insts if x["runtime"] == "container"]
        assert len(vm) == len(ct) == svc.replicas
        fp = {
            "vcpus": svc.resources.vcpus,
            "memoryMib": svc.resources.memory_mib,
            "diskGib": svc.resources.disk_gib + sum(v.size_gib for v in svc.volumes),
        }
        for a, b in zip(vm, ct, strict=True):
            assert set(a) == set(b)
            assert a["footprint"] == b["footprint"] == fp
            assert a["name"] == b["name"] and a["replica"] == b["replica"]
            assert a["host"] == b["host"] == spec.host_of(svc)
            assert set(a["endpoints"]) == set(b["endpoints"]) == {p.name for p in svc.ports}
    for runtime in ("vm", "container"):
        for name, out in world["plans"][runtime]["outputs"]["services"].items():
            assert {x["runtime"] for x in out["instances"]} == {runtime}, name


def test_vm_user_data_is_the_rendered_cloud_init(world: dict[str, Any]) -> None:
    doc, spec = world["plans"]["both"], spec_of(world)
    for svc in spec.services:
        for i in range(svc.replicas):
            seed = by_name(
                doc, "libvirt:index/cloudInitDisk:CloudInitDisk", f"{svc.name}-vm-{i}-cloudinit"
            )
            host = f"{STACK}-{svc.name}-{i}"
            assert seed["inputs"]["userData"] == renderers.render_cloud_init(
                svc, hostname=host, secret_values={}
            )
            assert seed["inputs"]["metaData"] == renderers.render_meta_data(host)


def test_per_service_runtime_override(tmp_path: Path, project: Path) -> None:
    cfg = json.loads(json.dumps(CONFIG))
    cfg["twinstack:runtime"] = "container"
    cfg["twinstack:services"][1]["runtime"] = "vm"
    write_stack(project, "mixed", cfg)
    doc = plan_stack("mixed", root=project)
    vm = {r["name"] for r in of_type(doc, "twinstack:service:VmRealization")}
    ct = {r["name"] for r in of_type(doc, "twinstack:service:ContainerRealization")}
    assert vm == {"api-vm"} and ct == {"web-container", "proxy-container"}
    assert doc["outputs"]["services"]["api"]["runtime"] == "vm"


SECRET_CONFIG: dict[str, Any] = {
    "twinstack:runtime": "both",
    "twinstack:dbPassword": {"secure": "v1:abc"},
    "twinstack:networks": [{"name": "apps", "cidr": "10.30.0.0/24"}],
    "twinstack:storage": [{"name": "data"}],
    "twinstack:vmImage": {"source": "/srv/images/debian.qcow2"},
    "twinstack:services": [
        {
            "name": "api",
            "build": {
                "command": ["/usr/bin/api"],
                "environment": {"LOG_LEVEL": "info"},
                "secrets": {"DB_PASSWORD": "dbPassword"},
            },
            "replicas": 2,
        }
    ],
}


def test_secrets_stay_secret(project: Path) -> None:
    write_stack(project, "sec", SECRET_CONFIG)
    doc = plan_stack("sec", root=project)
    every = of_type(doc, "docker:index/container:Container")
    containers = [c for c in every if c["inputs"].get("start") is not False]
    writers = [c for c in every if c["inputs"].get("start") is False]
    seeds = of_type(doc, "libvirt:index/cloudInitDisk:CloudInitDisk")
    assert len(containers) == len(writers) == len(seeds) == 2
    volumes = {v["inputs"]["name"] for v in of_type(doc, "docker:index/volume:Volume")}
    for c, w in zip(containers, writers, strict=True):
        # the service's container: the secret's file name only, on a read-only volume
        assert c["inputs"]["envs"] == [
            "LOG_LEVEL=info",
            "DB_PASSWORD_FILE=/run/secrets/DB_PASSWORD",
        ]
        (mount,) = [m for m in c["inputs"]["mounts"] if m["target"] == "/run/secrets"]
        assert mount["readOnly"] is True and mount["source"] in volumes
        assert w["inputs"]["name"] == c["inputs"]["name"] + "-secrets"
        assert w["urn"] in c["dependencies"]
        # its writer: the same image, the volume read-write, never started, one upload
        assert w["inputs"]["image"] == c["inputs"]["image"]
        assert w["inputs"]["mustRun"] is False and w["inputs"]["networkMode"] == "none"
        assert [(m["target"], m["source"], m.get("readOnly")) for m in w["inputs"]["mounts"]] == [
            ("/run/secrets", mount["source"], None)
        ]
        (upload,) = w["inputs"]["uploads"]
        assert upload["file"] == "/run/secrets/DB_PASSWORD" and upload["permissions"] == "0444"
        assert is_secret(upload["content"]), upload
        assert upload["content"][SIG_KEY] == "1b47061264138c4ac30d75fd1eb44270"
        assert reveal(upload["content"]) == "[secret:dbPassword]"
    for s in seeds:
        assert is_secret(s["inputs"]["userData"])
        env = written_file(user_data(s), "/etc/twinstack/api.env")
        assert env is not None
        assert parse_env_file(env) == {"LOG_LEVEL": "info", "DB_PASSWORD": "[secret:dbPassword]"}

    # nothing else carries the secret in the clear, and outputs do not leak it
    def clear(value: Any) -> Any:  # the value without its secret envelopes
        if is_secret(value):
            return None
        if isinstance(value, dict):
            return {k: clear(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clear(v) for v in value]
        return value

    for r in doc["resources"]:
        for key, value in r["inputs"].items():
            assert "[secret:" not in json.dumps(clear(value)), (r["name"], key)
    assert "[secret:" not in json.dumps(doc["outputs"])
    assert "v1:abc" not in json.dumps(doc)


def test_services_without_secrets_have_plain_inputs(world: dict[str, Any]) -> None:
    doc = world["plans"]["both"]
    for r in doc["resources"]:
        assert not any(is_secret(v) for v in r["inputs"].values()), r["name"]


def test_endpoints_without_networks(project: Path) -> None:
    """A service on no network still declares its ports; both realizations must expose
    the same endpoint names (or the spec must reject a VM that cannot be reached)."""
    cfg: dict[str, Any] = {
        "twinstack:runtime": "both",
        "twinstack:storage": [{"name": "data"}],
        "twinstack:vmImage": {"source": "/srv/images/debian.qcow2"},
        "twinstack:services": [
            {
                "name": "solo",
                "build": {"command": ["/usr/bin/solo"]},
                "ports": [{"name": "http", "port": 8080, "hostPort": 18080}],
                "networks": [],
            }
        ],
    }
    write_stack(project, "solo", cfg)
    # the spec rejects a VM with ports that no network can reach
    with pytest.raises(TwinstackError) as err:
        plan_stack("solo", root=project)
    assert "twinstack:services[0].networks" in str(err.value)
    assert "runs as a VM with ports" in str(err.value)
    # as a container only, the host ports are its endpoints
    cfg["twinstack:runtime"] = "container"
    write_stack(project, "solo", cfg)
    doc = plan_stack("solo", root=project)
    (ct,) = doc["outputs"]["services"]["solo"]["instances"]
    assert ct["endpoints"] == {"http": "tcp://127.0.0.1:18080"}


def test_build_context_holds_exactly_the_rendered_files(project: Path) -> None:
    """A file dropped from the spec leaves the build context (else it enters the image)."""
    cfg: dict[str, Any] = {
        "twinstack:runtime": "container",
        "twinstack:services": [
            {
                "name": "web",
                "build": {
                    "base": "debian:bookworm-20251117-slim",
                    "command": ["/usr/bin/web"],
                    "files": [
                        {"path": "/srv/a.txt", "content": "a\n"},
                        {"path": "/srv/sub/b.txt", "content": "b\n"},
                    ],
                },
            }
        ],
    }
    write_stack(project, "ctx", cfg)
    plan_stack("ctx", root=project)
    context = project / ".twinstack" / "build" / "ctx" / "web"
    assert (context / "rootfs/srv/sub/b.txt").read_text() == "b\n"
    cfg["twinstack:services"][0]["build"]["files"] = [{"path": "/srv/a.txt", "content": "a2\n"}]
    write_stack(project, "ctx", cfg)
    plan_stack("ctx", root=project)
    files = sorted(p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file())
    assert files == ["Dockerfile", "rootfs/srv/a.txt"]
    assert (context / "rootfs/srv/a.txt").read_text() == "a2\n"
    assert not (context / "rootfs/srv/sub").exists()


def test_preview_leaves_ids_of_new_resources_unknown(project: Path) -> None:
    """As under the engine's preview: ids of resources to be created are unknown, so
    inputs that reference them are recorded as the unknown sentinel."""
    from twinstack.plan import UNKNOWN

    cfg: dict[str, Any] = {
        "twinstack:runtime": "vm",
        "twinstack:networks": [{"name": "n", "cidr": "10.77.0.0/24"}],
        "twinstack:storage": [{"name": "data"}],
        "twinstack:vmImage": {"source": "/srv/images/debian.qcow2"},
        "twinstack:services": [{"name": "web", "build": {"command": ["/usr/bin/web"]}}],
    }
    write_stack(project, "pv", cfg)
    planned = plan_stack("pv", root=project)
    previewed = plan_stack("pv", root=project, preview=True)
    (dom,) = (r for r in planned["resources"] if r["type"] == "libvirt:index/domain:Domain")
    (pdom,) = (r for r in previewed["resources"] if r["type"] == "libvirt:index/domain:Domain")
    assert dom["inputs"]["disks"][0]["volumeId"] != UNKNOWN
    assert dom["inputs"]["cloudinit"] == "web-vm-0-cloudinit-id"
    assert pdom["inputs"]["disks"][0]["volumeId"] == UNKNOWN
    assert pdom["inputs"]["cloudinit"] == UNKNOWN
    assert pdom["inputs"]["networkInterfaces"][0]["networkId"] == UNKNOWN
    assert pdom["id"] == UNKNOWN
    # what the program itself decides stays known in a preview
    assert pdom["inputs"]["memory"] == dom["inputs"]["memory"]
    assert previewed["preview"] is True
