"""The stack ``measure`` plans: one service of a user's stack, N replicas, one runtime.

Pure: it takes the stack file's ``config`` mapping and returns a new one (plus notes on
what it changed), so the derivation is unit-tested without Pulumi or daemons. The
result is planned by :func:`twinstack.plan.plan_stack` like any stack file, so the
measured instances are exactly what the components declare for that service.
"""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

from twinstack.errors import SpecError

SERVICES = "twinstack:services"
SERVICE_FILES = "twinstack:serviceFiles"
NETWORKS = "twinstack:networks"
STORAGE = "twinstack:storage"
HOSTS = "twinstack:hosts"
RUNTIME = "twinstack:runtime"
DROPPED = ("twinstack:cost",)
"""Keys of the user's stack a measurement does not need."""

POOL_ROOT = Path("/var/lib/twinstack/pools")


def derive_config(
    config: dict[str, Any],
    service: str,
    *,
    runtime: str,
    count: int,
    domain_type: str,
    cidr: str,
    stack: str,
    source: str = "stack file",
    pool_root: Path = POOL_ROOT,
    root: Path | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The measurement stack's config and the notes that say what differs from ``config``.

    * only ``service``, with ``replicas: count`` and no runtime override;
    * host ports are not published (N replicas of one service would need N distinct host
      ports, and a measurement must not take ports a deployed stack uses); the ports stay
      on the service's networks;
    * the networks the service joins get fresh addresses from ``cidr`` (one block of that
      size each, in order), so a deployed stack's bridges are not touched;
    * storage pools live under ``pool_root/<stack>-<pool>``, unprotected (measurements are
      torn down), with capacity for ``count`` replicas;
    * every host runs domains of ``domain_type`` (``kvm`` or ``qemu``).

    The service may come from one of the stack's ``twinstack:serviceFiles`` (read relative
    to ``root``, default the project of the stack file ``source`` names); the measurement
    stack declares it inline and lists no service files.
    """
    services = config.get(SERVICES) or []
    if config.get(SERVICE_FILES) is not None:
        from components.spec import merge_service_files, project_dir_of

        bare: dict[str, Any] = {"services": services, "serviceFiles": config[SERVICE_FILES]}
        if root is None:
            root = project_dir_of(Path(source))
        merge_service_files(bare, source=source, root=root)
        services = bare["services"]
    names = [str(s.get("name")) for s in services if isinstance(s, dict)]
    found = next((s for s in services if isinstance(s, dict) and s.get("name") == service), None)
    if found is None:
        raise SpecError(
            f"{source}: {SERVICES}: no service {service!r}; services: {', '.join(names) or 'none'}"
        )
    if runtime not in ("vm", "container"):
        raise SpecError(f"--runtime: {runtime!r} is not allowed here; allowed: vm, container")
    if not 1 <= count <= 100:
        raise SpecError(f"--count: {count} is not allowed; allowed: 1..100")
    notes: list[str] = []
    svc = copy.deepcopy(found)
    svc["replicas"] = count
    svc.pop("runtime", None)
    published = [p for p in svc.get("ports") or [] if isinstance(p, dict) and "hostPort" in p]
    if published:
        svc["ports"] = [
            {k: v for k, v in p.items() if k not in ("hostPort", "hostIp")}
            if isinstance(p, dict)
            else p
            for p in svc["ports"]
        ]
        notes.append(
            "host port publishing dropped ("
            + ", ".join(f"{p.get('name')}: hostPort {p['hostPort']}" for p in published)
            + f"): {count} replicas cannot share one host port and a measurement must not "
            "take ports a deployed stack uses; the ports stay on the service's networks"
        )

    nets = [n for n in config.get(NETWORKS) or [] if isinstance(n, dict)]
    wanted = svc.get("networks")
    kept = nets[:1] if wanted is None else [n for n in nets if n.get("name") in wanted]
    try:
        block = ipaddress.ip_network(cidr)
    except ValueError as exc:
        raise SpecError(f"--cidr: {cidr!r} is not an IPv4 network: {exc}") from None
    new_nets = []
    for i, net in enumerate(kept):
        start = int(block.network_address) + i * block.num_addresses
        addr = ipaddress.ip_network((start, block.prefixlen))
        new_nets.append({**net, "cidr": str(addr)})
    if kept:
        notes.append(
            "networks re-addressed for the measurement: "
            + ", ".join(f"{o.get('name')} {o.get('cidr')} → {n['cidr']}" for o, n in zip(kept, new_nets, strict=True))
        )  # fmt: skip

    per_replica = float((svc.get("resources") or {}).get("diskGib", 0) or 0) + sum(
        float(v.get("sizeGib", 0) or 0) for v in svc.get("volumes") or [] if isinstance(v, dict)
    )
    pools = []
    for pool in config.get(STORAGE) or []:
        if not isinstance(pool, dict):
            continue
        need = per_replica * count + 1
        cap = max(float(pool.get("capacityGib", 0) or 0), need)
        pools.append(
            {**pool, "path": str(pool_root / f"{stack}-{pool.get('name')}"),
             "capacityGib": int(cap) if cap.is_integer() else cap, "protect": False}
        )  # fmt: skip

    hosts_in = config.get(HOSTS)
    if isinstance(hosts_in, dict) and hosts_in:
        hosts = {h: {**(v or {}), "domainType": domain_type} for h, v in hosts_in.items()}
    else:
        hosts = {"local": {"domainType": domain_type}}

    out: dict[str, Any] = {
        k: copy.deepcopy(v)
        for k, v in config.items()
        if k not in (SERVICES, SERVICE_FILES, NETWORKS, STORAGE, HOSTS, RUNTIME, *DROPPED)
    }
    out[RUNTIME] = runtime
    out[HOSTS] = hosts
    if new_nets:
        out[NETWORKS] = new_nets
    if pools:
        out[STORAGE] = pools
    out[SERVICES] = [svc]
    return out, notes
