"""Build every component of a stack from its validated spec.

This is the whole program apart from reading config: ``__main__.py`` hands it a
:class:`~components.spec.StackSpec` and a way to read secret config, and exports what it
returns. It never reads config itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.grammar import STACK_NAME
from components.infra import HostNeeds, HostProviders, Network, Storage
from components.service import Context, SecretLookup, Service, realizations_for
from components.spec import StackSpec, VmImage
from twinstack.errors import SpecError

BUILD_ROOT = Path(".twinstack/build")
"""Where rendered Docker build contexts are written (relative to the project)."""


def assign_addresses(spec: StackSpec) -> dict[tuple[str, str], int]:
    """Offset of each service's replica 0 on each of its networks.

    Instances are numbered in declaration order, per network; replica i of a service sits
    at offset + i. VM and container sides use the same offset in their own half.
    """
    out: dict[tuple[str, str], int] = {}
    next_free: dict[str, int] = {}
    for svc in spec.services:
        for net in spec.networks_of(svc):
            out[(svc.name, net)] = next_free.get(net, 0)
            next_free[net] = out[(svc.name, net)] + svc.replicas
    return out


def build_stack(
    spec: StackSpec,
    *,
    stack_name: str,
    secret: SecretLookup,
    build_root: Path = BUILD_ROOT,
) -> dict[str, Any]:
    """Declare networks, storage and services; return the stack outputs."""
    try:
        STACK_NAME.check(stack_name)  # it names the build folder of every image
    except ValueError as exc:
        raise SpecError(f"stack {stack_name!r}: {exc}") from None
    providers = {name: HostProviders(name, host) for name, host in spec.hosts.items()}

    net_needs: dict[str, dict[str, HostNeeds]] = {}
    pool_images: dict[str, dict[str, list[VmImage]]] = {}
    for svc in spec.services:
        rts = realizations_for(spec.runtime_of(svc))
        host = spec.host_of(svc)
        for net in spec.networks_of(svc):
            have = net_needs.setdefault(net, {}).get(host, HostNeeds())
            net_needs[net][host] = HostNeeds(
                vm=have.vm or "vm" in rts, container=have.container or "container" in rts
            )
        if "vm" in rts:
            image = spec.vm_image_of(svc)
            root_pool = spec.storage_of()
            assert image is not None and root_pool is not None
            pool_images.setdefault(root_pool, {}).setdefault(host, []).append(image)
            for vol in svc.volumes:
                pool = spec.storage_of(vol)
                assert pool is not None
                pool_images.setdefault(pool, {}).setdefault(host, [])

    networks = {
        n.name: Network(
            n.name,
            n,
            stack=stack_name,
            hosts={h: (providers[h], needs) for h, needs in net_needs.get(n.name, {}).items()},
        )
        for n in spec.networks
    }
    storage = {
        s.name: Storage(
            s.name,
            s,
            stack=stack_name,
            hosts={h: (providers[h], imgs) for h, imgs in pool_images.get(s.name, {}).items()},
        )
        for s in spec.storage
    }
    ctx = Context(
        stack_name=stack_name,
        spec=spec,
        providers=providers,
        networks=networks,
        storage=storage,
        addresses=assign_addresses(spec),
        secret=secret,
        build_root=build_root,
    )
    services = {svc.name: Service(svc.name, svc, ctx) for svc in spec.services}
    return {
        "runtime": spec.runtime,
        "services": {
            svc.name: {"runtime": spec.runtime_of(svc), "instances": services[svc.name].instances}
            for svc in spec.services
        },
    }
