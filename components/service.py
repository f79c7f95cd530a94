"""The ``Service`` component and its two realizations.

``Service`` picks its realizations in one place (:data:`REALIZATIONS`); each realization
implements the same small interface and exposes the same output surface: one record per
instance with its name, runtime, host, endpoints and footprint (vCPUs, memory MiB, disk
GiB). ``runtime: both`` simply builds both, side by side, under different child names.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pulumi
import pulumi_docker as docker
import pulumi_libvirt as libvirt

from components import renderers
from components.infra import (
    GIB,
    HostProviders,
    Network,
    Storage,
    docker_labels,
    first_host_address,
)
from components.provider_forms import docker_cpus, docker_duration, libvirt_cmdlines
from components.spec import ServiceSpec, StackSpec, VolumeSpec
from twinstack.errors import SpecError

SecretLookup = Callable[[str], pulumi.Output[str]]
"""Returns the secret Output of a config key (``pulumi.Config().require_secret``)."""


@dataclass
class Context:
    """What every service realization needs from the stack (built once in components.stack)."""

    stack_name: str
    spec: StackSpec
    providers: dict[str, HostProviders]
    networks: dict[str, Network]
    storage: dict[str, Storage]
    addresses: dict[tuple[str, str], int]
    """(service, network) → offset of replica 0 on that network (replica i adds i)."""
    secret: SecretLookup
    build_root: Path


def instance_name(ctx: Context, svc: ServiceSpec, replica: int) -> str:
    """Physical name of a container or domain: unique per stack, host and service."""
    return f"{ctx.stack_name}-{svc.name}-{replica}"


def footprint(svc: ServiceSpec) -> dict[str, float | int]:
    """Declared size of one instance (the same in both runtimes)."""
    disk = svc.resources.disk_gib + sum(v.size_gib for v in svc.volumes)
    return {
        "vcpus": svc.resources.vcpus,
        "memoryMib": svc.resources.memory_mib,
        "diskGib": disk,
    }


class Realization(pulumi.ComponentResource):
    """The interface both realizations implement."""

    runtime: ClassVar[str]
    type_token: ClassVar[str]
    instances: list[dict[str, Any]]

    def __init__(
        self,
        name: str,
        svc: ServiceSpec,
        ctx: Context,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(self.type_token, name, None, opts)
        self.resource_name = name
        self.svc = svc
        self.ctx = ctx
        self.host = ctx.spec.host_of(svc)
        self.instances = []
        self.build()
        # The instances are the stack's `services` output (components/stack.py); repeating
        # them as each component's outputs cost a serialization per component and level.
        self.register_outputs({})

    def build(self) -> None:
        raise NotImplementedError

    def address(self, network: str, replica: int, side: str) -> str:
        net = self.ctx.networks[network].spec
        subnet = net.vm_subnet if side == "vm" else net.container_subnet
        offset = self.ctx.addresses[(self.svc.name, network)] + replica
        return str(first_host_address(subnet, offset))

    def record(self, name: str, replica: int, endpoints: dict[str, str]) -> None:
        self.instances.append(
            {
                "name": name,
                "runtime": self.runtime,
                "host": self.host,
                "replica": replica,
                "endpoints": endpoints,
                "footprint": footprint(self.svc),
            }
        )

    def secret_env(self) -> pulumi.Output[dict[str, str]]:
        """Secret values of the service's environment, as one secret Output."""
        keys = self.svc.secrets
        outs = {env: self.ctx.secret(key) for env, key in keys.items()}
        return pulumi.Output.all(**outs) if outs else pulumi.Output.from_input({})


class ContainerRealization(Realization):
    """Docker: an image (built from the rendered Dockerfile, or prebuilt), one volume per
    replica and declared volume, and one hardened container per replica."""

    runtime = "container"
    type_token = "twinstack:service:ContainerRealization"

    def build(self) -> None:
        svc, ctx = self.svc, self.ctx
        provider = ctx.providers[self.host].docker
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        image_ref = self._image(child)
        probe = renderers.health_probe(svc)
        hc = svc.health_check
        healthcheck = None
        if probe is not None and hc is not None:
            healthcheck = docker.ContainerHealthcheckArgs(
                tests=probe,
                # as the provider reads them back (Go's form): else `1m0s` ≠ `60s` is a
                # change on every preview of an unchanged stack
                interval=docker_duration(hc.interval_s),
                timeout=docker_duration(hc.timeout_s),
                retries=hc.retries,
                start_period=docker_duration(hc.start_period_s),
            )
        # Secrets never enter the container's configuration (CIS 4.10: `docker inspect`
        # shows it): each is a file on a read-only volume, /run/secrets/<ENV>, and the
        # environment names it, <ENV>_FILE (a built image's entrypoint turns that back into
        # <ENV>: renderers.SECRETS_LOADER_SCRIPT).
        envs = [f"{k}={v}" for k, v in sorted(svc.environment.items())] + [
            f"{env}_FILE={renderers.secret_file(env)}" for env in sorted(svc.secrets)
        ]
        networks = ctx.spec.networks_of(svc)
        # a prebuilt image without `user` keeps the image's own USER
        user = renderers.service_user(svc) if svc.build is not None or svc.image_user else None
        for i in range(svc.replicas):
            name = instance_name(ctx, svc, i)
            mounts = []
            holder: list[pulumi.Resource] = []
            if svc.secrets:
                secrets_volume, writer = self._secrets(i, name, image_ref, user, child)
                holder.append(writer)
                mounts.append(
                    docker.ContainerMountArgs(
                        target=renderers.SECRETS_DIR,
                        type="volume",
                        source=secrets_volume.name,
                        read_only=True,
                    )
                )
            for vol in svc.volumes:
                volume = docker.Volume(
                    f"{self.resource_name}-{i}-{vol.name}",
                    name=f"{name}-{vol.name}",
                    labels=[
                        docker.VolumeLabelArgs(label=k, value=v)
                        for k, v in docker_labels(
                            ctx.stack_name, service=svc.name, runtime="container", volume=vol.name
                        ).items()
                    ],
                    opts=pulumi.ResourceOptions.merge(
                        child,
                        pulumi.ResourceOptions(
                            protect=self._volume_protected(vol), delete_before_replace=True
                        ),
                    ),
                )
                mounts.append(
                    docker.ContainerMountArgs(
                        target=vol.mount_path, type="volume", source=volume.name
                    )
                )
            advanced = [
                docker.ContainerNetworksAdvancedArgs(
                    name=ctx.networks[n].docker_networks[self.host].name,
                    aliases=[svc.name],
                    ipv4_address=self.address(n, i, "container"),
                )
                for n in networks
            ]
            ports = [
                docker.ContainerPortArgs(
                    internal=p.port,
                    external=p.host_port + i,
                    ip=str(p.host_ip),
                    protocol=p.protocol,
                )
                for p in svc.ports
                if p.host_port is not None
            ]
            labels = docker_labels(
                ctx.stack_name,
                service=svc.name,
                runtime="container",
                replica=str(i),
                host=self.host,
                vcpus=_cpus(svc.resources.vcpus),
                **{"memory-mib": str(svc.resources.memory_mib)},
                **{"disk-gib": str(footprint(svc)["diskGib"])},
                ports=_ports_fact(svc),
                # which envs come from Pulumi secrets (the env file's first line on a VM)
                **({"secret-env": ",".join(sorted(svc.secrets))} if svc.secrets else {}),
            )
            docker.Container(
                f"{self.resource_name}-{i}",
                name=name,
                hostname=name,
                image=image_ref,
                envs=envs,
                user=user,
                # the Dockerfile's CMD and WORKDIR, stated again so that the recorded inputs
                # show what runs (parity with the VM's unit reads them)
                command=svc.build.command if svc.build is not None else None,
                working_dir=svc.build.working_dir if svc.build is not None else None,
                # terraform-provider-docker multiplies `memory` by 1024*1024: it is MiB.
                memory=svc.resources.memory_mib,
                memory_swap=svc.resources.memory_mib,
                cpus=docker_cpus(svc.resources.vcpus),  # as the provider reads it back
                ports=ports,
                mounts=mounts,
                network_mode="bridge" if not networks else None,
                networks_advanced=advanced,
                healthcheck=healthcheck,
                restart=svc.restart.policy,
                max_retry_count=svc.restart.max_retries
                if svc.restart.policy == "on-failure"
                else None,
                log_driver="json-file",
                log_opts={"max-size": "10m", "max-file": "3"},
                labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in labels.items()],
                capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
                security_opts=["no-new-privileges:true"],
                read_only=svc.read_only_root_fs,
                tmpfs={"/tmp": "rw,nosuid,nodev,size=64m", "/run": "rw,nosuid,nodev,size=16m"}
                if svc.read_only_root_fs
                else None,
                init=True,
                must_run=True,
                wait=False,
                destroy_grace_seconds=10,
                # a rotated secret replaces the writer, and so the service, which reads its
                # secrets at start: `pulumi up` hands the new value over
                opts=pulumi.ResourceOptions.merge(
                    child,
                    pulumi.ResourceOptions(
                        delete_before_replace=True,
                        depends_on=holder,
                        replace_with=holder or None,
                    ),
                ),
            )
            endpoints = {}
            for p in svc.ports:
                if p.host_port is not None:
                    endpoints[p.name] = f"{p.protocol}://{p.host_ip}:{p.host_port + i}"
                elif networks:
                    addr = self.address(networks[0], i, "container")
                    endpoints[p.name] = f"{p.protocol}://{addr}:{p.port}"
            self.record(name, i, endpoints)

    def _volume_protected(self, vol: VolumeSpec) -> bool:
        """Data volumes follow their storage pool's `protect` (default on)."""
        pool = self.ctx.spec.storage_of(vol)
        spec = next((s for s in self.ctx.spec.storage if s.name == pool), None)
        return True if spec is None else spec.protect

    def _image(self, child: pulumi.ResourceOptions) -> pulumi.Output[str]:
        svc, ctx = self.svc, self.ctx
        if svc.image is not None:
            remote = docker.RemoteImage(
                f"{self.resource_name}-image",
                name=svc.image.container,
                keep_locally=True,
                opts=child,
            )
            return remote.name
        files = renderers.render_build_context(svc)
        context = ctx.build_root / ctx.stack_name / svc.name
        _write_context(context, files)
        tag = renderers.context_digest(files)
        # The provider's RemoteImage builds it (pulumi-docker's own `Image` is native code that
        # the provider built here lacks; tools/engine/README.md). The tag is the context's
        # content hash: a changed context is a new name, so the image is replaced and rebuilt,
        # and (keep_locally off) the old tag is removed, as `destroy` removes the last one.
        image = docker.RemoteImage(
            f"{self.resource_name}-image",
            name=f"twinstack/{ctx.stack_name}-{svc.name}:{tag}",
            build=docker.RemoteImageBuildArgs(
                context=str(context),
                dockerfile="Dockerfile",
                platform="linux/amd64",
            ),
            keep_locally=False,
            opts=child,
        )
        return image.name

    def _secrets(
        self,
        replica: int,
        name: str,
        image_ref: pulumi.Input[str],
        user: str | None,
        child: pulumi.ResourceOptions,
    ) -> tuple[docker.Volume, docker.Container]:
        """The secrets of one replica: a volume holding /run/secrets/<ENV>, written by a
        container that is created and never started.

        The provider's `upload` writes files into a container before its start, but Docker
        refuses that on a read-only root, so the service container cannot take them itself.
        The writer is created with the same image and the volume mounted read-write,
        receives one file per secret (mode 0444: the service's user reads it, and only the
        service's container mounts the volume, read-only), and never runs a process. The
        upload's content is the secret Output, kept encrypted in the state; nothing secret is
        in either container's configuration. A rotated value replaces the writer (uploads
        force a new container), which rewrites the file and replaces the service container
        (`replace_with`), so the service starts with the new value.
        """
        svc, ctx = self.svc, self.ctx
        labels = docker_labels(
            ctx.stack_name, service=svc.name, runtime="container", role="secrets"
        )
        volume = docker.Volume(
            f"{self.resource_name}-{replica}-secrets",
            name=f"{name}-secrets",
            labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in labels.items()],
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(delete_before_replace=True)
            ),
        )
        uploads = [
            docker.ContainerUploadArgs(
                file=renderers.secret_file(env),
                content=pulumi.Output.secret(self.ctx.secret(key)),
                permissions="0444",
            )
            for env, key in sorted(svc.secrets.items())
        ]
        writer = docker.Container(
            f"{self.resource_name}-{replica}-secrets",
            name=f"{name}-secrets",
            image=image_ref,
            # never started: no process, no network (policies: never_started)
            start=False,
            must_run=False,
            network_mode="none",
            user=user,  # the service's
            mounts=[
                docker.ContainerMountArgs(
                    target=renderers.SECRETS_DIR, type="volume", source=volume.name
                )
            ],
            uploads=uploads,
            # the service's limits (they reserve nothing; the same bounds hold for both)
            memory=svc.resources.memory_mib,
            memory_swap=svc.resources.memory_mib,
            cpus=docker_cpus(svc.resources.vcpus),
            restart="no",
            log_driver="json-file",
            log_opts={"max-size": "1m", "max-file": "1"},
            labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in labels.items()],
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            security_opts=["no-new-privileges:true"],
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(delete_before_replace=True)
            ),
        )
        return volume, writer


def _ports_fact(svc: ServiceSpec) -> str:
    """Ports a service listens on, as recorded on both realizations (for parity checks)."""
    return ",".join(f"{p.port}/{p.protocol}" for p in svc.ports)


def _cpus(vcpus: float) -> str:
    return f"{vcpus:g}"


def _write_context(directory: Path, files: Mapping[str, str]) -> None:
    """Write the rendered build context exactly: files whose content changed are rewritten,
    files the spec no longer renders are removed (a stale file would enter the image).

    Every path must stay inside ``directory``: the spec's path grammar already keeps
    ``..`` out, and this checks again; nothing here follows a symlink (one planted in the
    tree, or at ``directory`` itself, is an error or is removed, never written through), so
    no stack file can make ``plan`` or ``policy`` write elsewhere. Plain ``os`` calls: this
    runs once per built service in every plan.
    """
    targets: dict[str, str] = {}
    for rel, content in files.items():
        parts = rel.split("/")
        if rel.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise SpecError(f"build context path {rel!r} leaves the build folder {directory}")
        targets[os.path.join(directory, *parts)] = content
    root = os.fspath(directory)
    if os.path.islink(root):
        raise SpecError(f"build folder {directory} is a symlink; remove it")
    if os.path.isdir(root):
        for here, dirs, names, in_fd in os.fwalk(root, topdown=False):
            for name in names:
                path = os.path.join(here, name)
                # nothing twinstack writes is a symlink; a stale file would enter the image
                if path not in targets or stat.S_ISLNK(os.lstat(name, dir_fd=in_fd).st_mode):
                    os.unlink(name, dir_fd=in_fd)
            for name in dirs:  # fwalk lists a symlink to a folder here, and does not enter it
                if stat.S_ISLNK(os.lstat(name, dir_fd=in_fd).st_mode):
                    os.unlink(name, dir_fd=in_fd)
                elif not os.listdir(os.path.join(here, name)):
                    os.rmdir(name, dir_fd=in_fd)
    else:
        os.makedirs(root)
    made, real_root = {root}, os.path.realpath(root)
    for path, content in targets.items():
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            if os.path.realpath(parent) != os.path.join(real_root, parent[len(root) + 1 :]):
                raise SpecError(f"build context path {path} leaves the build folder {directory}")
            made.add(parent)
        data = content.encode("utf-8")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            pass
        else:
            with os.fdopen(fd, "rb") as old:
                if old.read() == data:
                    continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, "wb") as out:
            out.write(data)


class VmRealization(Realization):
    """libvirt: per replica a root clone of the shared base image sized to the spec, one
    data volume per declared volume, a cloud-init disk rendered from the spec, and a
    domain with the spec's vCPUs and memory, serial console, guest agent and autostart."""

    runtime = "vm"
    type_token = "twinstack:service:VmRealization"

    def build(self) -> None:
        svc, ctx = self.svc, self.ctx
        host_spec = ctx.spec.hosts[self.host]
        provider = ctx.providers[self.host].libvirt
        # every libvirt child has a fixed physical name: delete the old one before its twin
        child = pulumi.ResourceOptions(parent=self, provider=provider, delete_before_replace=True)
        image = ctx.spec.vm_image_of(svc)
        assert image is not None  # enforced by the spec
        root_pool_name = ctx.spec.storage_of()
        assert root_pool_name is not None
        root_pool = ctx.storage[root_pool_name].pools[self.host]
        base = root_pool.base_images[image.key]
        networks = ctx.spec.networks_of(svc)
        secrets = self.secret_env()
        for i in range(svc.replicas):
            name = instance_name(ctx, svc, i)
            hostname = name

            def _user_data(values: dict[str, str], hostname: str = hostname) -> str:
                return renderers.render_cloud_init(svc, hostname=hostname, secret_values=values)

            # The release: what cloud-init installs, in its secret-free rendering (as the
            # offline plan has it). A new release gets a new root clone and a new domain, so
            # cloud-init installs it on a first boot (it runs once per instance, and the
            # provider would only swap the seed disk of a running domain); the data volumes
            # stay. A rotated secret changes only the real rendering: it replaces the seed
            # disk, and with it (`replace_with`) the root clone and the domain, whose first
            # boot writes the new value; `pulumi up` hands it over.
            offline = _user_data(renderers.secret_placeholders(svc))
            # without secrets the offline rendering is the real one
            user_data: pulumi.Input[str] = (
                pulumi.Output.secret(secrets.apply(_user_data)) if svc.secrets else offline
            )
            seed = libvirt.CloudInitDisk(
                f"{self.resource_name}-{i}-cloudinit",
                name=f"{name}-cloudinit.iso",
                pool=root_pool.pool.name,
                user_data=user_data,
                meta_data=renderers.render_meta_data(hostname),
                opts=child,
            )
            release = pulumi.ResourceOptions(
                replacement_trigger=renderers.context_digest({"user-data": offline}),
                replace_with=[seed] if svc.secrets else None,
            )
            root = libvirt.Volume(
                f"{self.resource_name}-{i}-root",
                name=f"{name}-root.qcow2",
                pool=root_pool.pool.name,
                base_volume_id=base.id,
                size=svc.resources.disk_gib * GIB,
                format="qcow2",
                opts=pulumi.ResourceOptions.merge(child, release),
            )
            disks = [libvirt.DomainDiskArgs(volume_id=root.id)]
            for vol in svc.volumes:
                pool_name = ctx.spec.storage_of(vol)
                assert pool_name is not None
                pool_spec = ctx.storage[pool_name]
                data = libvirt.Volume(
                    f"{self.resource_name}-{i}-{vol.name}",
                    name=f"{name}-{vol.name}.qcow2",
                    pool=pool_spec.pools[self.host].pool.name,
                    size=vol.size_gib * GIB,
                    format="qcow2",
                    opts=pulumi.ResourceOptions.merge(
                        child, pulumi.ResourceOptions(protect=pool_spec.spec.protect)
                    ),
                )
                disks.append(libvirt.DomainDiskArgs(volume_id=data.id))
            interfaces = [
                libvirt.DomainNetworkInterfaceArgs(
                    network_id=ctx.networks[n].libvirt_networks[self.host].id,
                    addresses=[self.address(n, i, "vm")],
                    hostname=hostname,
                    # The provider reads `addresses` back from the network's DHCP leases:
                    # without waiting for the lease, Create stores none and every later
                    # `pulumi preview` wants to add the address again (found under the engine).
                    wait_for_lease=True,
                )
                for n in networks
            ]
            direct_boot: dict[str, Any] = {}
            if image.kernel is not None:
                direct_boot = {
                    "kernel": image.kernel,
                    "initrd": image.initrd,
                    "cmdlines": libvirt_cmdlines(image.cmdline),  # as read back
                }
            facts = {
                "twinstack": {
                    "stack": ctx.stack_name,
                    "service": svc.name,
                    "runtime": "vm",
                    "replica": i,
                    "host": self.host,
                    "vcpus": svc.resources.vcpus,
                    "memoryMib": svc.resources.memory_mib,
                    "diskGib": footprint(svc)["diskGib"],
                    "ports": _ports_fact(svc),
                }
            }
            libvirt.Domain(
                f"{self.resource_name}-{i}",
                name=name,
                type=host_spec.domain_type,
                memory=svc.resources.memory_mib,  # libvirt: MiB
                vcpu=svc.resources.vm_vcpus,
                cpu=libvirt.DomainCpuArgs(mode="host-passthrough")
                if host_spec.domain_type == "kvm"
                else None,
                cloudinit=seed.id,
                disks=disks,
                network_interfaces=interfaces,
                consoles=[
                    libvirt.DomainConsoleArgs(type="pty", target_port="0", target_type="serial"),
                ],
                # The provider always adds the guest agent's channel; `qemuAgent` only makes
                # its Read ask the agent for addresses, which fails ("guest agent is not
                # connected") while the guest boots, and so fails Create (provider v0.8.1).
                qemu_agent=False,
                autostart=True,
                running=True,
                description=json.dumps(facts, sort_keys=True),
                **direct_boot,
                opts=pulumi.ResourceOptions.merge(
                    pulumi.ResourceOptions.merge(child, release),
                    pulumi.ResourceOptions(delete_before_replace=True),
                ),
            )
            endpoints = {}
            if networks:
                addr = self.address(networks[0], i, "vm")
                endpoints = {p.name: f"{p.protocol}://{addr}:{p.port}" for p in svc.ports}
            self.record(name, i, endpoints)


REALIZATIONS: dict[str, type[Realization]] = {
    "vm": VmRealization,
    "container": ContainerRealization,
}
"""The one switch: runtime name → realization class."""


def realizations_for(runtime: str) -> list[str]:
    """Runtimes a ``runtime`` flag value deploys, in a stable order."""
    return ["vm", "container"] if runtime == "both" else [runtime]


class Service(pulumi.ComponentResource):
    """One service, realized as VMs, containers or both (``twinstack:service:Service``).

    The component's own URN never depends on the runtime, so flipping ``runtime`` replaces
    the realization children and keeps the service (and everything shared) in place.
    """

    def __init__(
        self,
        name: str,
        svc: ServiceSpec,
        ctx: Context,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("twinstack:service:Service", name, None, opts)
        runtime = ctx.spec.runtime_of(svc)
        self.realizations = {
            rt: REALIZATIONS[rt](f"{name}-{rt}", svc, ctx, pulumi.ResourceOptions(parent=self))
            for rt in realizations_for(runtime)
        }
        self.instances = [inst for r in self.realizations.values() for inst in r.instances]
        self.register_outputs({"runtime": runtime})
