"""The measurement stack derived from a user's stack (pure), and its offline plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.spec import load_stack, read_stack_file
from twinstack.errors import SpecError
from twinstack.measure.stackfile import derive_config

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "stacks" / "Pulumi.dev.yaml"


def _derive(**kw: Any) -> tuple[dict[str, Any], list[str]]:
    args: dict[str, Any] = {
        "runtime": "container", "count": 3, "domain_type": "qemu", "cidr": "10.213.96.0/24",
        "stack": "utmeasure",
    }  # fmt: skip
    service = kw.pop("service", "web")
    args.update(kw)
    return derive_config(read_stack_file(DEV), service, **args)


def test_only_the_service_with_n_replicas_and_no_host_ports() -> None:
    cfg, notes = _derive()
    (svc,) = cfg["twinstack:services"]
    assert svc["name"] == "web" and svc["replicas"] == 3
    assert all("hostPort" not in p for p in svc["ports"])
    assert svc["ports"][0]["port"] == 8080
    assert cfg["twinstack:runtime"] == "container"
    assert cfg["twinstack:hosts"] == {"local": {"domainType": "qemu"}}
    assert cfg["twinstack:networks"] == [{"name": "apps", "cidr": "10.213.96.0/24", "mode": "nat"}]
    (pool,) = cfg["twinstack:storage"]
    assert pool["path"] == "/var/lib/twinstack/pools/utmeasure-data"
    assert pool["protect"] is False and pool["capacityGib"] >= 3 * 4
    assert "twinstack:vmImage" in cfg
    assert any("hostPort 18080" in n and "dropped" in n for n in notes)
    assert any("10.88.0.0/24 → 10.213.96.0/24" in n for n in notes)


def test_the_derived_file_is_a_valid_stack(tmp_path: Path) -> None:
    cfg, _ = _derive(service="api", runtime="vm", count=2)
    path = tmp_path / "Pulumi.utmeasure.yaml"
    path.write_text(yaml.safe_dump({"config": cfg}))
    spec = load_stack(path)
    assert [s.name for s in spec.services] == ["api"]
    assert spec.services[0].replicas == 2
    assert spec.runtime == "vm"


def test_derived_stack_plans_n_instances_without_published_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twinstack.plan import plan_stack

    cfg, _ = _derive(count=3)
    path = tmp_path / "Pulumi.utmeasure.yaml"
    path.write_text(yaml.safe_dump({"config": cfg}))
    monkeypatch.chdir(tmp_path)  # build contexts land here, not in the repository
    doc = plan_stack("utmeasure", "container", root=ROOT, stack_file=path)
    ctrs = [r for r in doc["resources"] if r["type"] == "docker:index/container:Container"]
    assert sorted(r["inputs"]["name"] for r in ctrs) == [f"utmeasure-web-{i}" for i in range(3)]
    assert all("external" not in p for r in ctrs for p in r["inputs"].get("ports", []))


def test_errors_name_the_problem() -> None:
    with pytest.raises(SpecError, match="no service 'nope'; services: web, api, worker"):
        _derive(service="nope")
    with pytest.raises(SpecError, match="--runtime"):
        _derive(runtime="both")
    with pytest.raises(SpecError, match="--count"):
        _derive(count=0)
    with pytest.raises(SpecError, match="--cidr"):
        _derive(cidr="10.1.2.300/24")


def test_service_networks_and_hosts_are_kept() -> None:
    config = {
        "twinstack:hosts": {"h1": {"libvirtUri": "qemu:///system"}},
        "twinstack:networks": [
            {"name": "a", "cidr": "10.1.0.0/24"},
            {"name": "b", "cidr": "10.2.0.0/24"},
        ],
        "twinstack:cost": {"profiles": []},
        "twinstack:services": [{"name": "s", "networks": ["b", "a"], "image": {}}],
    }
    cfg, _ = derive_config(
        config, "s", runtime="vm", count=1, domain_type="kvm", cidr="10.9.0.0/25", stack="m"
    )
    assert [n["cidr"] for n in cfg["twinstack:networks"]] == ["10.9.0.0/25", "10.9.0.128/25"]
    assert cfg["twinstack:hosts"] == {"h1": {"libvirtUri": "qemu:///system", "domainType": "kvm"}}
    assert "twinstack:cost" not in cfg
