"""Remove everything the harness created for a stack (by label and name prefix).

Every physical name the components derive starts with ``<stack>-`` and every Docker
resource carries the label ``twinstack.stack=<stack>``, so teardown needs no plan and
works after a half-finished apply. Protection (``protect``) is a Pulumi engine option;
the harness ignores it here on purpose: tests must leave nothing behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from twinstack.realize.daemons import libvirt_module
from twinstack.realize.libvirt_apply import CONSOLE_DIR, remove_domain

Log = Callable[[str], None]


def teardown_docker(client: Any, stack: str, log: Log = lambda _m: None) -> list[str]:
    """Remove the stack's containers, networks, volumes and built images."""
    import docker.errors

    removed: list[str] = []
    label = f"twinstack.stack={stack}"
    for c in client.containers.list(all=True, filters={"label": label}):
        c.remove(force=True)
        removed.append(f"container {c.name}")
    for n in client.networks.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound):
            n.remove()
            removed.append(f"network {n.name}")
    for v in client.volumes.list(filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound):
            v.remove(force=True)
            removed.append(f"volume {v.name}")
    prefix = f"twinstack/{stack}-"
    for img in client.images.list():
        for tag in img.tags:
            if tag.startswith(prefix):
                with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
                    client.images.remove(tag, force=True)
                    removed.append(f"image {tag}")
    for r in removed:
        log(f"removed {r}")
    return removed


def teardown_libvirt(conn: Any, stack: str, log: Log = lambda _m: None) -> list[str]:
    """Remove the stack's domains, networks, and pools with all their volumes."""
    libvirt = libvirt_module()
    removed: list[str] = []
    prefix = f"{stack}-"
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(prefix):
            remove_domain(dom)
            (CONSOLE_DIR / f"{dom.name()}.log").unlink(missing_ok=True)
            removed.append(f"domain {dom.name()}")
    for net in conn.listAllNetworks(0):
        if net.name().startswith(prefix):
            if net.isActive():
                net.destroy()
            net.undefine()
            removed.append(f"network {net.name()}")
    for pool in conn.listAllStoragePools(0):
        if not pool.name().startswith(prefix):
            continue
        if not pool.isActive():
            with contextlib.suppress(libvirt.libvirtError):
                pool.create(0)
        if pool.isActive():
            pool.refresh(0)
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
                removed.append(f"volume {pool.name()}/{vol.name()}")
            pool.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            pool.delete(0)  # removes the (now empty) directory
        pool.undefine()
        removed.append(f"pool {pool.name()}")
    for r in removed:
        log(f"removed {r}")
    return removed
