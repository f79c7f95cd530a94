"""One spec, two realizations, for real: the example `api` service as a Docker container
and as a libvirt VM, planned offline and applied to dockerd and libvirtd."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.spec import ServiceSpec, load_stack
from twinstack.realize import Applied, apply_plan, wait_container
from twinstack.realize.guest import guest_exec, wait_vm
from twinstack.realize.libvirt_apply import remove_domain

from ._support import (
    CLIENT,
    PlanFn,
    derived_stack,
    example_service,
    teardown_stack,
    timed,
)

pytestmark = pytest.mark.integration

STACK = "itapi"
NAME = f"{STACK}-api-0"  # the container and the domain: one physical name per replica
ROOT = Path(__file__).resolve().parents[2]
VM_TIMEOUT_S = float(os.environ.get("TWINSTACK_VM_TIMEOUT_S", "600"))


@dataclass
class Deployed:
    applied: Applied
    spec: ServiceSpec
    stack_file: Path
    console: Path


def _stack_file(tmp: Path, domain_type: str, changed: bool = False) -> Path:
    svc = example_service("api")
    if changed:  # a changed file: a new build context and image tag, a new cloud-init
        build = dict(svc["build"])
        build["files"] = [{**f, "content": f["content"] + "# release 2\n"} for f in build["files"]]
        svc["build"] = build
    return derived_stack(
        tmp, STACK, [svc], runtime="both", domain_type=domain_type, cidr="10.213.7.0/24"
    )


@pytest.fixture(scope="module")
def deployed(
    docker: Any, virt: Any, images: Any, domain_type: str, plan_of: PlanFn,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployed]:  # fmt: skip
    tmp = tmp_path_factory.mktemp(STACK)
    teardown_stack(docker, virt, STACK)  # leftovers of an interrupted run
    try:
        stack_file = _stack_file(tmp, domain_type)
        doc = plan_of(STACK, stack_file)
        with timed("apply (both runtimes)"):
            applied = apply_plan(doc, root=ROOT, docker=docker, libvirt=virt)
        assert applied.docker is not None and applied.libvirt is not None
        spec = next(s for s in load_stack(stack_file).services if s.name == "api")
        yield Deployed(applied, spec, stack_file, applied.libvirt.consoles[NAME])
    finally:
        teardown_stack(docker, virt, STACK)


def _container_request(docker: Any, *args: str) -> dict[str, Any]:
    res = docker.containers.get(NAME).exec_run(["python3", "-c", CLIENT, *args])
    assert res.exit_code == 0, res.output.decode()
    return json.loads(res.output.decode())  # type: ignore[no-any-return]


def _vm_request(virt: Any, *args: str) -> dict[str, Any]:
    dom = virt.lookupByName(NAME)
    res = guest_exec(dom, ["/usr/bin/python3", "-c", CLIENT, *args])
    if res.exit_code != 0:
        diag = guest_exec(
            dom,
            ["/bin/bash", "-c", "systemctl status api --no-pager; journalctl -b -u api "
             "--no-pager | tail -20; cloud-init status --long; uptime"],
        )  # fmt: skip
        pytest.fail(f"request {args} failed in the VM: {res.stderr[-300:]}\n{diag.stdout}")
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_both_become_healthy(deployed: Deployed, docker: Any, virt: Any) -> None:
    with timed("container healthy"):
        ch = wait_container(docker, NAME, timeout_s=120)
    assert ch.healthy, str(ch)
    with timed("vm healthy (boot + cloud-init)"):
        vh = wait_vm(virt, NAME, "api", deployed.console, timeout_s=VM_TIMEOUT_S)
    assert vh.healthy, str(vh)


def test_same_request_same_answer(deployed: Deployed, docker: Any, virt: Any) -> None:
    port = str(deployed.spec.ports[0].port)
    item = json.dumps({"id": "same-answer", "n": 1})
    answers = {}
    for where, ask in (("container", _container_request), ("vm", _vm_request)):
        client = docker if where == "container" else virt
        health = ask(client, port, "GET", "/healthz")
        created = ask(client, port, "POST", "/items", item)
        items = ask(client, port, "GET", "/items")
        answers[where] = (health, created, items)
    assert answers["container"] == answers["vm"]
    health, created, items = answers["container"]
    assert health == {"status": 200, "type": "application/json", "body": {"ok": True}}
    assert created["status"] == 201
    assert items["body"] == [{"id": "same-answer", "n": 1}]


def _cgroup_limits(docker: Any) -> tuple[int, float]:
    """(memory bytes, CPUs) as the container's own cgroup states them (v2 or v1)."""
    script = (
        "if [ -f /sys/fs/cgroup/memory.max ]; then cat /sys/fs/cgroup/memory.max "
        "/sys/fs/cgroup/cpu.max; else cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
        "echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) "
        "$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); fi"
    )
    res = docker.containers.get(NAME).exec_run(["/bin/sh", "-c", script])
    assert res.exit_code == 0, res.output.decode()
    mem, cpu = res.output.decode().split("\n")[:2]
    quota, period = cpu.split()
    return int(mem), int(quota) / int(period)


def test_limits_match_spec(deployed: Deployed, docker: Any, virt: Any) -> None:
    res = deployed.spec.resources
    mem, cpus = _cgroup_limits(docker)
    assert mem == res.memory_mib * 1024 * 1024
    assert cpus == pytest.approx(res.vcpus)
    dom = virt.lookupByName(NAME)
    _state, max_kib, _cur, nr_vcpus, _t = dom.info()
    assert max_kib == res.memory_mib * 1024
    assert nr_vcpus == res.vm_vcpus
    inside = guest_exec(dom, ["/usr/bin/nproc"])
    assert inside.stdout.strip() == str(res.vm_vcpus)


def test_killed_container_restarts(deployed: Deployed, docker: Any) -> None:
    before = docker.api.inspect_container(NAME)["State"]
    restarts = docker.api.inspect_container(NAME)["RestartCount"]
    assert deployed.spec.restart.policy == "on-failure"
    # a crash, not `docker stop`/`kill` (Docker never restarts a manually stopped one)
    os.kill(before["Pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    with timed("container restart (policy)"):
        while docker.api.inspect_container(NAME)["RestartCount"] == restarts:
            assert time.monotonic() < deadline, "container was not restarted"
            time.sleep(0.2)
        health = wait_container(docker, NAME, timeout_s=120)
    assert health.healthy, str(health)
    after = docker.api.inspect_container(NAME)["State"]
    assert after["Pid"] != before["Pid"]


def test_data_survives_replacement(
    deployed: Deployed, docker: Any, virt: Any, domain_type: str, plan_of: PlanFn
) -> None:
    port = str(deployed.spec.ports[0].port)
    item = json.dumps({"id": "survivor"})
    _container_request(docker, port, "POST", "/items", item)
    _vm_request(virt, port, "POST", "/items", item)
    old_image = docker.containers.get(NAME).image.id
    old_uuid = virt.lookupByName(NAME).UUIDString()

    # container: a changed build → new image tag → the container is replaced
    stack_file = _stack_file(deployed.stack_file.parent, domain_type, changed=True)
    doc = plan_of(STACK, stack_file)
    # VM: define the domain again from the plan (volumes stay in the pool). The provider
    # deletes a domain with a hard `virDomainDestroy` (power cut), as remove_domain does:
    # only data that reached the disk survives, so flush the guest's page cache first
    # (the example app does not fsync; see the report to the lead).
    dom = virt.lookupByName(NAME)
    assert guest_exec(dom, ["/usr/bin/sync"]).exit_code == 0
    remove_domain(dom)
    with timed("apply (replace container, redefine domain)"):
        applied = apply_plan(doc, root=ROOT, docker=docker, libvirt=virt)
    assert applied.docker is not None and NAME in applied.docker.replaced
    assert docker.containers.get(NAME).image.id != old_image
    with timed("container healthy after replace"):
        assert wait_container(docker, NAME, timeout_s=120).healthy
    assert virt.lookupByName(NAME).UUIDString() != old_uuid
    assert applied.libvirt is not None
    with timed("vm healthy after redefine"):
        vh = wait_vm(virt, NAME, "api", applied.libvirt.consoles[NAME],
                     timeout_s=VM_TIMEOUT_S, probe_after_boot=True)  # fmt: skip
    assert vh.healthy, str(vh)

    for ask, client in ((_container_request, docker), (_vm_request, virt)):
        items = ask(client, port, "GET", "/items")["body"]
        assert {"id": "survivor"} in items
