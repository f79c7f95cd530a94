"""The footprint reader on real `pulumi stack export` fixtures, offline plans, and the
shapes a policy pack passes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from twinstack.density.footprint import (
    SECRET_SIG,
    UNKNOWN,
    FootprintError,
    read_footprint,
    resources_of,
)
from twinstack.plan import plan_stack


def by_name(fp: Any) -> dict[str, Any]:
    return {i.name: i for i in fp.instances}


def test_vm_stack_export(vm_export: Any) -> None:
    fp = read_footprint(vm_export, "dev-vm.json")
    assert fp.stack == "dev-vm"
    assert fp.runtimes == ["vm"]
    assert fp.services == ["api", "web", "worker"]
    inst = by_name(fp)
    assert sorted(inst) == ["api-vm-0", "web-vm-0", "web-vm-1", "worker-vm-0"]
    api = inst["api-vm-0"]
    assert (api.vcpus, api.memory_mib) == (1.0, 768.0)
    # root clone (8 GiB) + data volume (2 GiB), resolved through the volume ids (paths)
    assert api.disk_gib == pytest.approx(10.0)
    assert api.declared_disk_gib == 10
    assert api.host == "local" and api.replica == 0
    assert api.image == "/var/lib/twinstack/images/debian-12-twinstack.qcow2"
    assert api.accelerator == "kvm"
    web = inst["web-vm-1"]
    assert (web.vcpus, web.declared_vcpus, web.replica) == (1.0, 0.5, 1)
    # the fixture's worker runs under TCG (libvirt domain type `qemu`)
    assert inst["worker-vm-0"].accelerator == "tcg"
    assert fp.warnings == ()


def test_container_stack_export(ctr_export: Any) -> None:
    fp = read_footprint(ctr_export, "dev.json")
    assert fp.stack == "dev"
    assert fp.runtimes == ["container"]
    inst = by_name(fp)
    web = inst["web-container-0"]
    assert (web.vcpus, web.memory_mib) == (0.5, 512.0)
    assert (web.declared_vcpus, web.declared_memory_mib, web.declared_disk_gib) == (0.5, 512, 4)
    assert web.image == "twinstack/dev-web:db7c1192d8b9"
    # json-file with max-size 10m x max-file 3
    assert web.log_cap_gib == pytest.approx(30 / 1024)
    assert inst["api-container-0"].declared_disk_gib == 10  # root budget + data volume


def test_secrets_in_export_are_envelopes_not_values(ctr_export: Any) -> None:
    api = next(
        r
        for r in ctr_export["deployment"]["resources"]
        if r["type"] == "docker:index/container:Container" and "api" in r["urn"]
    )
    assert SECRET_SIG in api["inputs"]["envs"]
    assert "ciphertext" in api["inputs"]["envs"]
    # and the reader is not disturbed by them
    assert by_name(read_footprint(ctr_export))["api-container-0"].memory_mib == 768


def test_secret_or_unknown_sizes_fall_back_to_declared(ctr_export: Any) -> None:
    doc = copy.deepcopy(ctr_export)
    for r in doc["deployment"]["resources"]:
        if r["type"] == "docker:index/container:Container":
            r["inputs"]["memory"] = UNKNOWN
            r["outputs"].pop("memory", None)
            r["inputs"]["cpus"] = {
                SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270",
                "ciphertext": "x",
            }
            r["outputs"].pop("cpus", None)
    fp = read_footprint(doc)
    web = by_name(fp)["web-container-0"]
    assert web.memory_mib == 0 and web.declared_memory_mib == 512
    assert web.vcpus == 0 and web.declared_vcpus == 0.5


@pytest.mark.parametrize(("stack", "runtime"), [("dev", "container"), ("dev-vm", "vm")])
def test_plan_and_export_give_the_same_footprint(
    stack: str, runtime: str, vm_export: Any, ctr_export: Any
) -> None:
    export = vm_export if runtime == "vm" else ctr_export
    from_plan = read_footprint(plan_stack(stack, runtime), "plan")
    from_state = read_footprint(export, "state")

    def key(fp: Any) -> list[tuple[Any, ...]]:
        return [
            (
                i.service,
                i.runtime,
                i.replica,
                i.host,
                i.vcpus,
                i.memory_mib,
                i.disk_gib,
                i.declared_disk_gib,
                i.image,
            )
            for i in fp.instances
        ]

    # the fixture's worker runs under TCG; everything else matches the plan exactly
    assert key(from_plan) == key(from_state)


def test_plans_of_every_stack_are_read() -> None:
    for stack in ("dev", "dev-vm", "compare"):
        for runtime in ("vm", "container"):
            fp = read_footprint(plan_stack(stack, runtime), f"{stack}/{runtime}")
            assert fp.runtimes == [runtime]
            assert fp.services == ["api", "web", "worker"]
            assert len(fp.instances) == 4
            assert all(i.host == "local" for i in fp.instances)
            assert fp.warnings == ()
    both = read_footprint(plan_stack("compare"), "compare")
    assert both.runtimes == ["container", "vm"] and len(both.instances) == 8


def test_policy_pack_shape_is_accepted(ctr_export: Any) -> None:
    resources = [
        {
            "resource_type": r["type"],
            "urn": r["urn"],
            "name": r["urn"].rsplit("::", 1)[-1],
            "parent": r.get("parent"),
            "props": r.get("inputs", {}),
        }
        for r in ctr_export["deployment"]["resources"]
    ]
    assert [i.name for i in read_footprint(resources).instances] == [
        i.name for i in read_footprint(ctr_export).instances
    ]


def test_parent_chain_maps_unlabelled_instances() -> None:
    svc = "urn:pulumi:s::twinstack::twinstack:service:Service::billing"
    real = (
        "urn:pulumi:s::twinstack::twinstack:service:Service"
        "$twinstack:service:VmRealization::billing-vm"
    )
    resources = [
        {"type": "twinstack:service:Service", "urn": svc, "inputs": {}},
        {"type": "twinstack:service:VmRealization", "urn": real, "parent": svc, "inputs": {}},
        {
            "type": "libvirt:index/domain:Domain",
            "urn": real + "$libvirt:index/domain:Domain::billing-vm-3",
            "parent": real,
            "inputs": {"memory": 2048, "vcpu": 2},
        },
        {
            "type": "docker:index/container:Container",
            "urn": "urn:pulumi:s::twinstack::docker:index/container:Container::orphan-1",
            "inputs": {"memory": 64, "cpus": "0.25"},
        },
    ]
    fp = read_footprint(resources)
    inst = by_name(fp)
    assert inst["billing-vm-3"].service == "billing"
    assert inst["billing-vm-3"].replica == 3
    assert inst["orphan-1"].service == "orphan"
    assert any("orphan-1" in w for w in fp.warnings)


@pytest.mark.parametrize(
    "doc", [{"nothing": 1}, 42, {"resources": {}}, {"resources": [{"urn": "x"}]}]
)
def test_bad_documents_are_errors(doc: Any) -> None:
    with pytest.raises(FootprintError):
        resources_of(doc, "bad.json")


def test_never_deployed_stack_has_no_instances() -> None:
    assert read_footprint({"version": 3, "deployment": {"manifest": {}}}).instances == ()


def test_a_never_started_container_is_no_instance() -> None:
    """A service's secrets writer is created with `start: false`: it runs nothing and holds
    nothing of the host, so it is neither an instance nor a footprint."""
    base = "urn:pulumi:s::twinstack::docker:index/container:Container::"
    labels = [{"label": "twinstack.service", "value": "api"}]
    resources = [
        {
            "type": "docker:index/container:Container",
            "urn": base + "api-container-0-secrets",
            "inputs": {"memory": 512, "cpus": "1", "start": False, "labels": labels},
        },
        {
            "type": "docker:index/container:Container",
            "urn": base + "api-container-0",
            "inputs": {"memory": 512, "cpus": "1", "labels": labels},
        },
    ]
    assert [i.name for i in read_footprint(resources).instances] == ["api-container-0"]
    resources[0]["inputs"]["start"] = True
    assert len(read_footprint(resources).instances) == 2
