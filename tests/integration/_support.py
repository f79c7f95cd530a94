"""Helpers shared by the integration tests (paths, timings, derived stacks, teardown)."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_STACK = ROOT / "stacks" / "Pulumi.dev.yaml"
OUR_STACKS = ("itapi", "itbad", "iteng", "itmeasure", "itmig")
"""Stack names the tests use; every physical name they create starts with one of them."""
POOL_ROOT = Path("/var/lib/twinstack/pools")
# The same request, made from inside each instance (no traffic leaves the instance).
CLIENT = """
import json, sys, urllib.request
port, method, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as r:
    print(json.dumps({"status": r.status, "type": r.headers["Content-Type"],
                      "body": json.loads(r.read())}, sort_keys=True))
"""

TIMINGS: dict[str, float] = {}
"""Phase → seconds, printed at the end of the run."""


def record(phase: str, seconds: float) -> None:
    TIMINGS[phase] = TIMINGS.get(phase, 0.0) + seconds


@contextlib.contextmanager
def timed(phase: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        record(phase, time.monotonic() - start)


# ------------------------------------------------------------------------- stacks


def example_service(name: str) -> dict[str, Any]:
    """A service of the example stack, as plain data."""
    doc = yaml.safe_load(EXAMPLE_STACK.read_text())
    for svc in doc["config"]["twinstack:services"]:
        if svc["name"] == name:
            return dict(svc)
    raise LookupError(f"{EXAMPLE_STACK}: no service {name!r}")


def derived_stack(
    directory: Path,
    stack: str,
    services: list[dict[str, Any]],
    *,
    runtime: str,
    domain_type: str,
    cidr: str,
    protect: bool = False,
) -> Path:
    """Write ``Pulumi.<stack>.yaml``: the example's images, our network/pool/host."""
    base = yaml.safe_load(EXAMPLE_STACK.read_text())["config"]
    config = {
        "twinstack:runtime": runtime,
        "twinstack:hosts": {"local": {"domainType": domain_type}},
        "twinstack:networks": [{"name": "apps", "cidr": cidr, "mode": "nat"}],
        "twinstack:storage": [
            {"name": "data", "path": str(POOL_ROOT / stack), "capacityGib": 50, "protect": protect}
        ],
        "twinstack:vmImage": base["twinstack:vmImage"],
        "twinstack:services": services,
    }
    path = directory / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return path


class PlanFn(Protocol):
    """The ``plan_of`` fixture: plan a stack file offline (``preview``: with unknowns)."""

    def __call__(self, stack: str, stack_file: Path, preview: bool = False) -> dict[str, Any]: ...


def teardown_stack(docker: Any, virt: Any, stack: str) -> None:
    from twinstack.realize import teardown_docker, teardown_libvirt

    with timed("teardown"):
        teardown_docker(docker, stack)
        teardown_libvirt(virt, stack)
        # the rendered build contexts `plan` wrote for this stack
        shutil.rmtree(ROOT / ".twinstack" / "build" / stack, ignore_errors=True)
