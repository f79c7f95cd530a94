"""Apply a recorded plan to real daemons: a test harness that mirrors ``pulumi up``.

Users deploy with ``pulumi up``. The integration tests take the offline plan's recorded
inputs (docs/plan-format.md) and apply the subset of provider fields twinstack's
components use, through the Docker SDK and libvirt-python; MAPPING.md lists, field by
field, what each recorded input becomes and where the providers do the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinstack.realize.daemons import DaemonUnavailable, docker_client, libvirt_conn
from twinstack.realize.docker_apply import DockerApplied, Health, apply_docker, wait_container
from twinstack.realize.hostcheck import detect_domain_type
from twinstack.realize.libvirt_apply import LibvirtApplied, apply_libvirt
from twinstack.realize.records import LIBVIRT_DOMAIN, Plan
from twinstack.realize.teardown import teardown_docker, teardown_libvirt

__all__ = [
    "Applied",
    "DaemonUnavailable",
    "Health",
    "Plan",
    "apply_plan",
    "detect_domain_type",
    "docker_client",
    "libvirt_conn",
    "teardown_docker",
    "teardown_libvirt",
    "wait_container",
]

Log = Callable[[str], None]


@dataclass
class Applied:
    """Result of :func:`apply_plan`."""

    plan: Plan
    docker: DockerApplied | None
    libvirt: LibvirtApplied | None


def provider_address(plan: Plan, token: str, key: str) -> str | None:
    """The first explicit provider's address (``host`` / ``uri``) recorded in the plan."""
    for rec in plan.of_type(token):
        value = rec.inputs.get(key)
        if value:
            return str(value)
    return None


def apply_plan(
    doc: Mapping[str, Any] | Plan,
    *,
    root: Path,
    docker: Any | None = None,
    libvirt: Any | None = None,
    log: Log = lambda _m: None,
    on_create: Log = lambda _n: None,
) -> Applied:
    """Apply every Docker and libvirt resource of a plan (connecting only where needed).

    ``on_create(name)`` is called right before each container create / domain
    define+start, so callers can time create → healthy without reading the log."""
    plan = doc if isinstance(doc, Plan) else Plan(doc)
    types = {r.type for r in plan.records}
    docker_applied = libvirt_applied = None
    if any(t.startswith("docker:") for t in types):
        client = docker or docker_client(provider_address(plan, "pulumi:providers:docker", "host"))
        docker_applied = apply_docker(plan, client, root=root, log=log, on_create=on_create)
    if any(t.startswith("libvirt:") for t in types):
        conn = libvirt or libvirt_conn(provider_address(plan, "pulumi:providers:libvirt", "uri"))
        libvirt_applied = apply_libvirt(plan, conn, log=log, on_create=on_create)
    return Applied(plan, docker_applied, libvirt_applied)


def domain_service(plan: Plan, domain: str) -> str:
    """The service a domain runs, from the facts the components put in its description."""
    import json

    for rec in plan.of_type(LIBVIRT_DOMAIN):
        if rec.inputs.get("name") == domain:
            facts = json.loads(rec.inputs.get("description") or "{}")
            return str(facts.get("twinstack", {}).get("service", ""))
    return ""
