"""Providers, networks and storage: what services on a host share.

``Network`` and ``Storage`` realize the same specs on every host that needs them: a
libvirt network / pool where a VM runs, a Docker network where a container runs. Child
names derive from the component name and the host (``f"{name}-{host}-libvirt"``), never
from the runtime flag, so flipping ``runtime`` adds or removes children but never renames
a survivor (its URN stays the same).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker
import pulumi_libvirt as libvirt

from components.spec import HostSpec, NetworkSpec, StorageSpec, VmImage

GIB = 1024**3


def docker_labels(stack: str, **extra: str) -> dict[str, str]:
    """Labels on every Docker resource twinstack declares."""
    return {"twinstack.stack": stack, **{f"twinstack.{k}": v for k, v in extra.items()}}


@dataclass
class HostProviders:
    """Explicit providers of one host, created only when a runtime there needs them."""

    name: str
    spec: HostSpec
    _libvirt: libvirt.Provider | None = None
    _docker: docker.Provider | None = None

    @property
    def libvirt(self) -> libvirt.Provider:
        if self._libvirt is None:
            self._libvirt = libvirt.Provider(f"{self.name}-libvirt", uri=self.spec.libvirt_uri)
        return self._libvirt

    @property
    def docker(self) -> docker.Provider:
        if self._docker is None:
            self._docker = docker.Provider(f"{self.name}-docker", host=self.spec.docker_host)
        return self._docker


@dataclass(frozen=True)
class HostNeeds:
    """Which realizations a host must carry for one network or pool."""

    vm: bool = False
    container: bool = False


class Network(pulumi.ComponentResource):
    """One spec network, as a libvirt network (VMs) and/or a Docker network (containers).

    The CIDR's lower half is the libvirt side and the upper half the Docker side (see
    :class:`~components.spec.NetworkSpec`), so both can exist on one host.
    """

    libvirt_networks: dict[str, libvirt.Network]
    docker_networks: dict[str, docker.Network]

    def __init__(
        self,
        name: str,
        spec: NetworkSpec,
        *,
        stack: str,
        hosts: dict[str, tuple[HostProviders, HostNeeds]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("twinstack:network:Network", name, None, opts)
        self.spec = spec
        self.libvirt_networks = {}
        self.docker_networks = {}
        physical = f"{stack}-{spec.name}"
        for host, (providers, needs) in hosts.items():
            if needs.vm:
                self.libvirt_networks[host] = libvirt.Network(
                    f"{name}-{host}-libvirt",
                    name=physical,
                    mode="nat" if spec.mode == "nat" else "none",
                    addresses=[str(spec.vm_subnet)],
                    autostart=True,
                    dhcp=libvirt.NetworkDhcpArgs(enabled=True),
                    dns=libvirt.NetworkDnsArgs(enabled=True, local_only=True),
                    # fixed physical name: the old network must go before its twin comes
                    opts=pulumi.ResourceOptions(
                        parent=self, provider=providers.libvirt, delete_before_replace=True
                    ),
                )
            if needs.container:
                subnet = spec.container_subnet
                self.docker_networks[host] = docker.Network(
                    f"{name}-{host}-docker",
                    name=physical,
                    driver="bridge",
                    internal=spec.mode == "isolated",
                    ipam_configs=[
                        docker.NetworkIpamConfigArgs(
                            subnet=str(subnet), gateway=str(subnet.network_address + 1)
                        )
                    ],
                    labels=[
                        docker.NetworkLabelArgs(label=k, value=v)
                        for k, v in docker_labels(stack, network=spec.name).items()
                    ],
                    opts=pulumi.ResourceOptions(
                        parent=self, provider=providers.docker, delete_before_replace=True
                    ),
                )
        self.register_outputs(
            {
                "cidr": str(spec.cidr),
                "vmSubnet": str(spec.vm_subnet),
                "containerSubnet": str(spec.container_subnet),
                "hosts": sorted(hosts),
            }
        )


@dataclass
class PoolOnHost:
    """A libvirt pool on one host and the base image volumes shared in it."""

    pool: libvirt.Pool
    base_images: dict[str, libvirt.Volume] = field(default_factory=dict)


class Storage(pulumi.ComponentResource):
    """One spec storage pool: a libvirt ``dir`` pool on every host running VMs from it.

    Base images live here, one volume per image per pool, shared by every service's
    clones, so a base image is stored (and counted) once per host. Containers keep their
    data in Docker volumes owned by each service's container realization.
    """

    pools: dict[str, PoolOnHost]

    def __init__(
        self,
        name: str,
        spec: StorageSpec,
        *,
        stack: str,
        hosts: dict[str, tuple[HostProviders, list[VmImage]]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("twinstack:storage:Storage", name, None, opts)
        self.spec = spec
        self.pools = {}
        for host, (providers, images) in hosts.items():
            pool = libvirt.Pool(
                f"{name}-{host}-pool",
                name=f"{stack}-{spec.name}",
                type="dir",
                target=libvirt.PoolTargetArgs(path=spec.path),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=providers.libvirt,
                    protect=spec.protect,
                    delete_before_replace=True,
                ),
            )
            on_host = PoolOnHost(pool)
            for image in images:
                if image.key in on_host.base_images:
                    continue
                on_host.base_images[image.key] = libvirt.Volume(
                    f"{name}-{host}-base-{image.key}",
                    name=f"{stack}-base-{image.key}.{image.format}",
                    pool=pool.name,
                    source=image.source,
                    format=image.format,
                    opts=pulumi.ResourceOptions(
                        parent=self, provider=providers.libvirt, delete_before_replace=True
                    ),
                )
            self.pools[host] = on_host
        self.register_outputs(
            {
                "path": spec.path,
                "capacityGib": spec.capacity_gib,
                "hosts": sorted(hosts),
                "baseImages": json.dumps(
                    {h: sorted(p.base_images) for h, p in self.pools.items()}, sort_keys=True
                ),
            }
        )


def first_host_address(net: ipaddress.IPv4Network, offset: int) -> ipaddress.IPv4Address:
    """Address ``offset`` places after the gateway (network + 1) of ``net``."""
    return net.network_address + 2 + offset
