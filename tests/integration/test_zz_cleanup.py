"""Runs last: nothing the integration tests created is left behind."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from ._support import OUR_STACKS, teardown_stack

pytestmark = pytest.mark.integration


def test_nothing_of_ours_is_left(docker: Any, virt: Any) -> None:
    for stack in OUR_STACKS:  # idempotent; the fixtures already tore down
        teardown_stack(docker, virt, stack)
    prefixes = tuple(f"{s}-" for s in OUR_STACKS)
    ps = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    assert [n for n in ps.stdout.split() if n.startswith(prefixes)] == []
    doms = subprocess.run(
        ["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert [n for n in doms.stdout.split() if n.startswith(prefixes)] == []
    nets = subprocess.run(
        ["virsh", "-c", "qemu:///system", "net-list", "--all", "--name"], capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert [n for n in nets.stdout.split() if n.startswith(prefixes)] == []
    pools = subprocess.run(
        ["virsh", "-c", "qemu:///system", "pool-list", "--all", "--name"], capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert [n for n in pools.stdout.split() if n.startswith(prefixes)] == []
    vols = docker.volumes.list(filters={"label": "twinstack.stack"})
    assert [v.name for v in vols if v.name.startswith(prefixes)] == []
