"""Fixtures for the real-daemon tests: daemons, base images, derived stacks, teardown.

The tests take an example service from ``stacks/Pulumi.dev.yaml``, write a small
derived stack file (that service only, a test network, a test pool, the domain type
this host can run), plan it offline exactly as ``twinstack plan`` does, and apply the
recorded plan to dockerd and libvirtd with :mod:`twinstack.realize`.

Run them with ``bash scripts/integration.sh`` (starts the daemons and builds or reuses
the images). Without reachable daemons they skip, unless ``TWINSTACK_INTEGRATION=1``
(set by that script), where a missing daemon is a failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twinstack.errors import TwinstackError

from ._support import ROOT, TIMINGS, PlanFn, record, timed


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("integration phases (seconds)")
    for phase, secs in TIMINGS.items():
        terminalreporter.write_line(f"{phase:<40} {secs:7.1f}")


# ------------------------------------------------------------------------- daemons


@pytest.fixture(scope="session")
def clients() -> Iterator[tuple[Any, Any]]:
    """(docker client, libvirt connection); skip or fail when a daemon is missing."""
    from twinstack.realize import docker_client, libvirt_conn

    try:
        dc = docker_client()
        conn = libvirt_conn()
    except TwinstackError as exc:
        if os.environ.get("TWINSTACK_INTEGRATION") == "1":
            pytest.fail(str(exc))
        pytest.skip(f"real daemons not available: {exc}")
    try:
        yield dc, conn
    finally:
        dc.close()
        conn.close()


@pytest.fixture(scope="session")
def docker(clients: tuple[Any, Any]) -> Any:
    return clients[0]


@pytest.fixture(scope="session")
def virt(clients: tuple[Any, Any]) -> Any:
    return clients[1]


@pytest.fixture(scope="session")
def images(clients: tuple[Any, Any]) -> Any:
    """The local base images (built, or reused from the cache)."""
    from twinstack.images import build_images

    cache = Path(os.environ.get("TWINSTACK_IMAGE_CACHE", ROOT / ".twinstack" / "images"))
    start = time.monotonic()
    result = build_images(cache)
    reused = all(result.reused.values())
    record(f"images build ({'warm' if reused else 'cold'})", time.monotonic() - start)
    return result


@pytest.fixture(scope="session")
def domain_type(images: Any) -> str:
    """``kvm`` where a KVM guest really boots here, else ``qemu`` (TCG)."""
    from twinstack.realize import detect_domain_type

    with timed("kvm probe"):
        return detect_domain_type(images.kernel)


@pytest.fixture(scope="session")
def plan_of() -> PlanFn:
    """Plan a derived stack file offline (the project's own `twinstack plan` code)."""
    from twinstack.plan import plan_stack

    def _plan(stack: str, stack_file: Path, preview: bool = False) -> dict[str, Any]:
        cwd = Path.cwd()
        os.chdir(ROOT)  # build contexts are written relative to the project
        try:
            with timed("plan"):
                return plan_stack(stack, root=ROOT, stack_file=stack_file, preview=preview)
        finally:
            os.chdir(cwd)

    return _plan
