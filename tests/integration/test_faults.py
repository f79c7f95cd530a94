"""Faults are reported, not hung: a VM whose service cannot start, a missing daemon."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from twinstack.realize import DaemonUnavailable, apply_plan, docker_client, libvirt_conn
from twinstack.realize.guest import guest_exec, wait_vm

from ._support import ROOT, PlanFn, derived_stack, example_service, teardown_stack, timed

pytestmark = pytest.mark.integration

STACK = "itbad"
NAME = f"{STACK}-api-0"
VM_TIMEOUT_S = float(os.environ.get("TWINSTACK_VM_TIMEOUT_S", "600"))


def test_missing_daemons_are_named() -> None:
    with pytest.raises(DaemonUnavailable) as dock:
        docker_client("unix:///run/twinstack-test/no-docker.sock")
    assert dock.value.daemon == "dockerd"
    assert "dockerd is not reachable at unix:///run/twinstack-test/no-docker.sock" in str(
        dock.value
    )
    assert "scripts/daemons.sh start" in str(dock.value)
    with pytest.raises(DaemonUnavailable) as virt:
        libvirt_conn("qemu+unix:///system?socket=/run/twinstack-test/no-libvirt-sock")
    assert virt.value.daemon == "libvirtd"
    assert "libvirtd is not reachable" in str(virt.value)


@pytest.fixture
def broken_vm(
    docker: Any, virt: Any, images: Any, domain_type: str, plan_of: PlanFn,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:  # fmt: skip
    """The example api as a VM whose service command does not exist."""
    svc = example_service("api")
    svc["build"] = {**svc["build"], "command": ["python3", "/opt/api/missing.py"]}
    svc["restart"] = {"policy": "on-failure", "maxRetries": 2}
    teardown_stack(docker, virt, STACK)
    try:
        stack_file = derived_stack(
            tmp_path_factory.mktemp(STACK), STACK, [svc], runtime="vm",
            domain_type=domain_type, cidr="10.213.8.0/24",
        )  # fmt: skip
        doc = plan_of(STACK, stack_file)
        with timed("apply (broken vm)"):
            applied = apply_plan(doc, root=ROOT, docker=docker, libvirt=virt)
        assert applied.libvirt is not None
        yield applied.libvirt.consoles[NAME]
    finally:
        teardown_stack(docker, virt, STACK)


def test_vm_with_failing_service_is_reported_unhealthy(virt: Any, broken_vm: Any) -> None:
    start = time.monotonic()
    with timed("broken vm reported"):
        health = wait_vm(virt, NAME, "api", broken_vm, timeout_s=VM_TIMEOUT_S)
    assert not health.healthy
    assert health.status == "unhealthy", str(health)  # a verdict, not a timeout
    assert health.step == "start"  # the step that failed: the service unit
    assert health.detail == "exit-code"
    assert time.monotonic() - start < VM_TIMEOUT_S
    # cloud-init itself records the failed step (its runcmd), readable without network
    status = guest_exec(virt.lookupByName(NAME), ["/usr/bin/cloud-init", "status", "--long"])
    assert "status: error" in status.stdout
    assert "scripts_user" in status.stdout or "runcmd" in status.stdout, status.stdout
