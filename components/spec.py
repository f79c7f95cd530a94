"""The typed stack spec: one service declaration, two realizations.

Everything here is plain data (no ``pulumi.Output``) so that every analysis runs without
Pulumi. A stack file (``stacks/Pulumi.<stack>.yaml``) is validated once, by
:func:`load_stack`, and every error names the file, the key path, the bad value and what
is allowed.

Keys in stack files are camelCase (``memoryMib``, ``hostPort``) like the rest of Pulumi
config; the Python attributes are snake_case.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components.cost import CostSpec
from twinstack.errors import SpecError

PROJECT = "twinstack"
"""Pulumi project name; stack config keys are ``twinstack:<key>``."""

Runtime = Literal["vm", "container", "both"]
RUNTIMES: tuple[str, ...] = ("vm", "container", "both")

_NAME_RE = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$"
Name = Annotated[
    str,
    Field(
        pattern=_NAME_RE,
        description="Lower-case letters, digits and '-', starting with a letter (1-32 chars).",
    ),
]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Model(BaseModel):
    """Base for every spec model: strict about unknown keys, immutable, camelCase keys."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        validate_default=True,
    )


# --------------------------------------------------------------------------- services


def vm_vcpus(vcpus: float) -> int:
    """Whole vCPUs a VM gets for a (possibly fractional) vCPU request: the ceiling, ≥ 1."""
    whole = int(vcpus)
    return max(1, whole if whole == vcpus else whole + 1)


class Resources(Model):
    """What one instance of a service may use."""

    vcpus: float = Field(
        1,
        gt=0,
        le=256,
        description="Virtual CPUs. A VM gets ceil(vcpus); a container gets a CPU quota of vcpus.",
    )
    memory_mib: int = Field(
        512, gt=0, le=1_048_576, description="Memory limit in MiB (VM RAM / container limit)."
    )
    disk_gib: int = Field(
        10, gt=0, le=65_536, description="Root disk in GiB (VM clone size; container budget)."
    )

    @property
    def vm_vcpus(self) -> int:
        """vCPUs a domain gets: libvirt counts whole CPUs."""
        return vm_vcpus(self.vcpus)


class Port(Model):
    """A port the service listens on."""

    name: Name = Field(description="Port name, used in endpoint outputs.")
    port: int = Field(ge=1, le=65535, description="Port inside the container or guest.")
    protocol: Literal["tcp", "udp"] = Field("tcp", description="Transport protocol.")
    host_ip: ipaddress.IPv4Address = Field(
        ipaddress.IPv4Address("127.0.0.1"),
        description="Host address a container port is published on (default loopback).",
    )
    host_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description=(
            "Host port to publish (containers). Replica i publishes hostPort + i. "
            "Omit to keep the port on the service's networks only."
        ),
    )


class VolumeSpec(Model):
    """A persistent volume mounted into every replica."""

    name: Name = Field(description="Volume name, unique within the service.")
    mount_path: str = Field(description="Absolute mount path inside the instance.")
    size_gib: int = Field(1, gt=0, le=65_536, description="Size in GiB (VM data disk size).")
    storage: Name | None = Field(
        None, description="Storage pool (a `storage` entry) holding it; default the first one."
    )

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/") or "/../" in f"{v}/" or v.rstrip("/") == "":
            raise ValueError(f"mount path must be an absolute path other than '/', got {v!r}")
        return v


class HttpCheck(Model):
    """An HTTP GET that must answer 2xx."""

    path: str = Field("/", pattern=r"^/[^\s]*$", description="Request path.")
    port: Name | int = Field(description="A port name from `ports`, or a port number.")


class HealthCheck(Model):
    """How readiness and health are checked, the same way in a container and a VM."""

    http: HttpCheck | None = Field(None, description="HTTP check (exclusive with `command`).")
    command: list[str] | None = Field(
        None, min_length=1, description="Command that exits 0 when healthy."
    )
    interval_s: int = Field(10, ge=1, le=3600, description="Seconds between checks.")
    timeout_s: int = Field(5, ge=1, le=3600, description="Seconds before a check fails.")
    retries: int = Field(3, ge=1, le=100, description="Consecutive failures before unhealthy.")
    start_period_s: int = Field(0, ge=0, le=3600, description="Grace period after start.")

    @model_validator(mode="after")
    def _one_kind(self) -> HealthCheck:
        if (self.http is None) == (self.command is None):
            raise ValueError("set exactly one of `http` or `command`")
        if self.timeout_s > self.interval_s:
            raise ValueError(
                f"timeoutS ({self.timeout_s}) must not exceed intervalS ({self.interval_s})"
            )
        return self


class FileSpec(Model):
    """A file written into the instance (image layer / cloud-init write_files)."""

    path: str = Field(description="Absolute path inside the instance.")
    content: str = Field(description="File content (UTF-8).")
    mode: str = Field("0644", pattern=r"^0?[0-7]{3,4}$", description="Octal permission bits.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/") or v.endswith("/"):
            raise ValueError(f"file path must be an absolute file path, got {v!r}")
        return v


class VmImage(Model):
    """A VM base disk: a local path or an URL with its checksum."""

    source: str = Field(description="Path on the libvirt host, or http(s) URL, of a qcow2 image.")
    checksum: str | None = Field(
        None,
        pattern=r"^sha(256|512):[0-9a-f]{64,128}$",
        description="`sha256:<hex>` or `sha512:<hex>`; required for URLs.",
    )
    format: Literal["qcow2", "raw"] = Field("qcow2", description="Disk format of the image.")
    kernel: str | None = Field(None, description="Kernel for direct boot (path on the host).")
    initrd: str | None = Field(None, description="Initrd for direct boot (path on the host).")
    cmdline: str = Field(
        "root=/dev/vda rw console=ttyS0", description="Kernel command line for direct boot."
    )

    @model_validator(mode="after")
    def _checked(self) -> VmImage:
        if re.match(r"^[a-z]+://", self.source):
            if not self.source.startswith("https://"):
                raise ValueError(f"image URL must use https, got {self.source!r}")
            if self.checksum is None:
                raise ValueError("an image URL needs `checksum: sha256:<hex>`")
        elif not self.source.startswith("/"):
            raise ValueError(f"image path must be absolute, got {self.source!r}")
        if (self.kernel is None) != (self.initrd is None):
            raise ValueError("set both `kernel` and `initrd` for direct boot, or neither")
        return self

    @property
    def key(self) -> str:
        """Stable short id of the image, used to share one base volume per pool."""
        return hashlib.sha256(f"{self.source}|{self.checksum}".encode()).hexdigest()[:10]


def _check_image_ref(v: str) -> str:
    ref = v.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if "@sha256:" in v:
        return v
    if ":" not in last:
        raise ValueError(f"image {v!r} has no tag; pin a version tag or a digest")
    if last.endswith(":latest"):
        raise ValueError(f"image {v!r} uses ':latest'; pin a version tag or a digest")
    return v


class BuildSpec(Model):
    """What to build: renders both a Dockerfile and a cloud-init user-data."""

    base: str = Field(
        "debian:bookworm-20251117-slim",
        description="Container base image (pinned tag or digest) for the Dockerfile's FROM.",
    )
    vm_image: VmImage | None = Field(
        None, description="VM base disk; default the stack's `vmImage`."
    )
    packages: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]*(=[\w.:~+-]+)?$")]] = Field(
        default_factory=list, description="Debian packages to install."
    )
    files: list[FileSpec] = Field(default_factory=list, description="Files to write.")
    command: list[str] = Field(min_length=1, description="The service's command (exec form).")
    working_dir: str = Field("/", description="Working directory (absolute).")
    user: str = Field(
        "app",
        pattern=r"^[a-z_][a-z0-9_-]*$",
        description="User the service runs as; created when not root.",
    )
    environment: dict[EnvName, str] = Field(
        default_factory=dict, description="Plain environment variables."
    )
    secrets: dict[EnvName, Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")]] = Field(
        default_factory=dict,
        description=(
            "Environment variables filled from Pulumi secret config: ENV: configKey "
            "(set with `pulumi config set --secret configKey ...`)."
        ),
    )

    @field_validator("base")
    @classmethod
    def _pinned(cls, v: str) -> str:
        return _check_image_ref(v)

    @field_validator("working_dir")
    @classmethod
    def _abs_wd(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"working dir must be absolute, got {v!r}")
        return v

    @model_validator(mode="after")
    def _no_overlap(self) -> BuildSpec:
        both = sorted(set(self.environment) & set(self.secrets))
        if both:
            raise ValueError(f"{both} set in both `environment` and `secrets`")
        return self


class PrebuiltSpec(Model):
    """A prebuilt container image plus the matching VM base image."""

    container: str = Field(description="Container image, pinned by tag or digest.")
    vm: VmImage = Field(description="VM disk that already contains the service.")
    command: list[str] | None = Field(
        None, description="Command the VM's systemd unit runs (default: the image's own init)."
    )
    user: str | None = Field(
        None, pattern=r"^[a-z_][a-z0-9_-]*$", description="User the service runs as."
    )
    environment: dict[EnvName, str] = Field(default_factory=dict)
    secrets: dict[EnvName, Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")]] = Field(
        default_factory=dict
    )

    @field_validator("container")
    @classmethod
    def _pinned(cls, v: str) -> str:
        return _check_image_ref(v)


class RestartPolicy(Model):
    """Restart policy; `onFailure` is bounded by `maxRetries`."""

    policy: Literal["no", "on-failure", "always", "unless-stopped"] = "on-failure"
    max_retries: int = Field(5, ge=0, le=1000, description="Bound for `on-failure`.")


class ServiceSpec(Model):
    """One service, declared once and realized as VMs, containers or both."""

    name: Name = Field(description="Service name, unique in the stack.")
    build: BuildSpec | None = Field(None, description="Build from Debian (exclusive with image).")
    image: PrebuiltSpec | None = Field(None, description="Prebuilt images (exclusive with build).")
    resources: Resources = Field(default_factory=Resources)  # type: ignore[arg-type]
    ports: list[Port] = Field(default_factory=list)
    volumes: list[VolumeSpec] = Field(default_factory=list)
    health_check: HealthCheck | None = Field(None)
    replicas: int = Field(1, ge=1, le=100, description="Number of instances.")
    restart: RestartPolicy = Field(default_factory=RestartPolicy)  # type: ignore[arg-type]
    networks: list[Name] | None = Field(
        None, description="Networks to join; default the first declared network."
    )
    runtime: Runtime | None = Field(None, description="Override the stack's runtime.")
    host: Name | None = Field(None, description="Host (a `hosts` key); default the first host.")
    read_only_root_fs: bool = Field(True, description="Containers: read-only root filesystem.")

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSpec:
        if (self.build is None) == (self.image is None):
            raise ValueError("set exactly one of `build` or `image`")
        seen: set[str] = set()
        for p in self.ports:
            if p.name in seen:
                raise ValueError(f"port name {p.name!r} is used twice")
            seen.add(p.name)
        vols: set[str] = set()
        paths: set[str] = set()
        for v in self.volumes:
            if v.name in vols:
                raise ValueError(f"volume name {v.name!r} is used twice")
            if v.mount_path in paths:
                raise ValueError(f"mount path {v.mount_path!r} is used twice")
            vols.add(v.name)
            paths.add(v.mount_path)
        hc = self.health_check
        if (
            hc is not None
            and hc.http is not None
            and isinstance(hc.http.port, str)
            and hc.http.port not in seen
        ):
            raise ValueError(
                f"healthCheck.http.port {hc.http.port!r} is not a declared port; "
                f"declared: {sorted(seen) or 'none'}"
            )
        return self

    @property
    def environment(self) -> dict[str, str]:
        src = self.build or self.image
        assert src is not None  # guaranteed by _consistent
        return dict(src.environment)

    @property
    def secrets(self) -> dict[str, str]:
        src = self.build or self.image
        assert src is not None
        return dict(src.secrets)

    @property
    def image_user(self) -> str | None:
        """The prebuilt image's declared user, if any."""
        return self.image.user if self.image is not None else None

    def port_number(self, ref: str | int) -> int:
        """Resolve a port name or number to the in-instance port number."""
        if isinstance(ref, int):
            return ref
        return next(p.port for p in self.ports if p.name == ref)


# --------------------------------------------------------------------- infrastructure


class NetworkSpec(Model):
    """A virtual network: a libvirt network and/or a Docker bridge network.

    The CIDR is split in two halves, always: the lower half is the libvirt network, the
    upper half the Docker network. So flipping `runtime` never renumbers either side, and
    `both` never puts two bridges on one subnet.
    """

    name: Name
    cidr: ipaddress.IPv4Network = Field(description="IPv4 network, e.g. 10.42.0.0/24 (≤ /28).")
    mode: Literal["nat", "isolated"] = Field("nat", description="nat: outbound NAT; isolated.")

    @field_validator("cidr", mode="before")
    @classmethod
    def _strict_cidr(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                ipaddress.IPv4Network(v, strict=True)
            except ValueError as exc:
                raise ValueError(f"{v!r} is not a network address: {exc}") from None
        return v

    @field_validator("cidr")
    @classmethod
    def _big_enough(cls, v: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if v.prefixlen > 28:
            raise ValueError(f"{v} is too small; use /28 or larger (it is split in two halves)")
        return v

    @property
    def vm_subnet(self) -> ipaddress.IPv4Network:
        return next(self.cidr.subnets(prefixlen_diff=1))

    @property
    def container_subnet(self) -> ipaddress.IPv4Network:
        return list(self.cidr.subnets(prefixlen_diff=1))[1]


class StorageSpec(Model):
    """A storage pool: a libvirt dir pool (VM disks and data volumes)."""

    name: Name
    path: str = Field(
        "/var/lib/twinstack/pools/default", description="Directory on the libvirt host."
    )
    capacity_gib: int = Field(100, gt=0, description="Capacity budget in GiB.")
    protect: bool = Field(True, description="Protect the pool and data volumes from deletion.")

    @field_validator("path")
    @classmethod
    def _abs(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"pool path must be absolute, got {v!r}")
        return v


class HostSpec(Model):
    """Where a realization runs: one libvirt URI and one Docker host."""

    libvirt_uri: str = Field("qemu:///system", description="libvirt connection URI.")
    docker_host: str = Field("unix:///var/run/docker.sock", description="Docker daemon address.")
    domain_type: Literal["kvm", "qemu"] = Field(
        "kvm", description="kvm (hardware) or qemu (TCG emulation, where KVM is unavailable)."
    )


class StackSpec(Model):
    """A whole stack: the `twinstack:*` config keys of one stack file."""

    runtime: Runtime = Field("container", description="Default realization for every service.")
    hosts: dict[Name, HostSpec] = Field(
        default_factory=lambda: {"local": HostSpec()},  # type: ignore[call-arg]
        description="Hosts by name; default one local host.",
    )
    vm_image: VmImage | None = Field(None, description="Default VM base disk for builds.")
    services: list[ServiceSpec] = Field(default_factory=list)
    networks: list[NetworkSpec] = Field(default_factory=list)
    storage: list[StorageSpec] = Field(default_factory=list)
    cost: CostSpec | None = Field(None, description="Host profiles and prices for `diff`.")

    @model_validator(mode="after")
    def _cross(self) -> StackSpec:
        _check_stack(self)
        return self

    # --- helpers used by components and analyses (pure) ---------------------------
    def runtime_of(self, svc: ServiceSpec) -> Runtime:
        return svc.runtime or self.runtime

    def host_of(self, svc: ServiceSpec) -> str:
        return svc.host or next(iter(self.hosts))

    def networks_of(self, svc: ServiceSpec) -> list[str]:
        if svc.networks is not None:
            return list(svc.networks)
        return [self.networks[0].name] if self.networks else []

    def storage_of(self, vol: VolumeSpec | None = None) -> str | None:
        if vol is not None and vol.storage is not None:
            return vol.storage
        return self.storage[0].name if self.storage else None

    def vm_image_of(self, svc: ServiceSpec) -> VmImage | None:
        if svc.image is not None:
            return svc.image.vm
        assert svc.build is not None
        return svc.build.vm_image or self.vm_image


def _runtimes(rt: str) -> set[str]:
    return {"vm", "container"} if rt == "both" else {rt}


class _Err(ValueError):
    """A cross-field error with the key path it belongs to."""

    def __init__(self, loc: tuple[str | int, ...], msg: str, value: Any = None) -> None:
        super().__init__(msg)
        self.loc = loc
        self.value = value


def _check_stack(s: StackSpec) -> None:
    names: dict[str, int] = {}
    for i, svc in enumerate(s.services):
        if svc.name in names:
            raise _Err(
                ("services", i, "name"),
                f"duplicate service name; also services[{names[svc.name]}]",
                svc.name,
            )
        names[svc.name] = i
    nets: dict[str, int] = {}
    for i, net in enumerate(s.networks):
        if net.name in nets:
            raise _Err(("networks", i, "name"), "duplicate network name", net.name)
        for j, other in enumerate(s.networks[:i]):
            if net.cidr.overlaps(other.cidr):
                raise _Err(
                    ("networks", i, "cidr"),
                    f"overlaps networks[{j}] ({other.name}: {other.cidr}); networks must not overlap",
                    str(net.cidr),
                )
        nets[net.name] = i
    pools = {p.name for p in s.storage}
    if len(pools) != len(s.storage):
        raise _Err(("storage",), "duplicate storage pool names", [p.name for p in s.storage])
    if not s.hosts:
        raise _Err(("hosts",), "declare at least one host", {})
    bound: dict[tuple[str, str, str, int], str] = {}
    for i, svc in enumerate(s.services):
        rts = _runtimes(s.runtime_of(svc))
        if svc.host is not None and svc.host not in s.hosts:
            raise _Err(
                ("services", i, "host"),
                f"is not a declared host; declared: {sorted(s.hosts)}",
                svc.host,
            )
        for j, n in enumerate(svc.networks or []):
            if n not in nets:
                raise _Err(
                    ("services", i, "networks", j),
                    f"is not a declared network; declared: {sorted(nets) or 'none'}",
                    n,
                )
        for j, v in enumerate(svc.volumes):
            if v.storage is not None and v.storage not in pools:
                raise _Err(
                    ("services", i, "volumes", j, "storage"),
                    f"is not a declared storage pool; declared: {sorted(pools) or 'none'}",
                    v.storage,
                )
        if "vm" in rts:
            if not s.storage:
                raise _Err(
                    ("services", i, "runtime"),
                    "runs as a VM but the stack declares no `storage` pool for its disks",
                    s.runtime_of(svc),
                )
            if svc.ports and not s.networks_of(svc):
                raise _Err(
                    ("services", i, "networks"),
                    "is empty but the service runs as a VM with ports; a VM is reached on a "
                    "network (declare one under `networks` and list it here)",
                    svc.networks,
                )
            if svc.image is not None and svc.image.command is None:
                raise _Err(
                    ("services", i, "image", "command"),
                    "is required when a prebuilt service runs as a VM: it is the command "
                    "the VM's systemd unit runs",
                    None,
                )
            if s.vm_image_of(svc) is None:
                raise _Err(
                    ("services", i, "build", "vmImage"),
                    "runs as a VM but has no VM base image; set `vmImage` on the stack "
                    "or `build.vmImage`",
                    None,
                )
        if "container" in rts:
            host = s.host_of(svc)
            for j, p in enumerate(svc.ports):
                if p.host_port is None:
                    continue
                last = p.host_port + svc.replicas - 1
                if last > 65535:
                    raise _Err(
                        ("services", i, "ports", j, "hostPort"),
                        f"with {svc.replicas} replicas publishes up to {last}; must be ≤ 65535",
                        p.host_port,
                    )
                for k in range(svc.replicas):
                    key = (host, str(p.host_ip), p.protocol, p.host_port + k)
                    where = f"services[{i}].ports[{j}] ({svc.name}/{p.name}, replica {k})"
                    if key in bound:
                        raise _Err(
                            ("services", i, "ports", j, "hostPort"),
                            f"host port {p.host_port + k}/{p.protocol} on {p.host_ip} of host "
                            f"{host!r} is already published by {bound[key]}; "
                            "host ports must be unique per host",
                            p.host_port,
                        )
                    bound[key] = where
    # every pool can hold the VM disks placed in it
    used: dict[str, int] = {}
    for svc in s.services:
        if "vm" not in _runtimes(s.runtime_of(svc)):
            continue
        root_pool = s.storage_of()
        assert root_pool is not None
        used[root_pool] = used.get(root_pool, 0) + svc.resources.disk_gib * svc.replicas
        for v in svc.volumes:
            pool = s.storage_of(v)
            assert pool is not None
            used[pool] = used.get(pool, 0) + v.size_gib * svc.replicas
    for i, pool_spec in enumerate(s.storage):
        if used.get(pool_spec.name, 0) > pool_spec.capacity_gib:
            raise _Err(
                ("storage", i, "capacityGib"),
                f"is too small: the VM disks and volumes placed in pool {pool_spec.name!r} "
                f"need {used[pool_spec.name]} GiB",
                pool_spec.capacity_gib,
            )
    # enough addresses on every network for the replicas on it
    for net in s.networks:
        count = sum(svc.replicas for svc in s.services if net.name in s.networks_of(svc))
        usable = net.vm_subnet.num_addresses - 3  # network, gateway, broadcast
        if count > usable:
            raise _Err(
                ("networks", nets[net.name], "cidr"),
                f"holds {count} instances but each half of it has room for {usable}; "
                "use a larger network",
                str(net.cidr),
            )


# ----------------------------------------------------------------------- loading


def config_key(key: str) -> str:
    """The namespaced Pulumi config key of a stack spec field (``runtime`` → ``twinstack:runtime``)."""
    return f"{PROJECT}:{key}"


def _fmt_loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _describe(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    msg = msg.replace("Extra inputs are not permitted", "unknown key")
    return msg


def _allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str] | None:
    """camelCase keys allowed at ``loc`` (for 'unknown key' messages)."""
    cur: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            return None
        field = next(
            (f for n, f in cur.model_fields.items() if (f.alias or n) == part or n == part), None
        )
        if field is None:
            return None
        cur = _model_in(field.annotation)
        if cur is None:
            return None
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return sorted(f.alias or n for n, f in cur.model_fields.items())
    return None


def _model_in(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in getattr(tp, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def spec_from_config(
    config: Mapping[str, Any], *, source: str = "<config>", runtime: str | None = None
) -> StackSpec:
    """Validate the ``twinstack:*`` keys of a stack's config into a :class:`StackSpec`.

    ``config`` maps namespaced keys (``twinstack:services``) or bare keys to values. Keys of
    other namespaces (``docker:host``, ``libvirt:uri``) are ignored; unknown ``twinstack:``
    keys are errors. Secret config values (``{secure: ...}``) are not spec keys.
    """
    data: dict[str, Any] = {}
    for key, value in config.items():
        ns, _, bare = key.rpartition(":")
        if ns and ns != PROJECT:
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue  # a secret value referenced by build.secrets
        data[bare] = value
    if runtime is not None:
        if runtime not in RUNTIMES:
            raise SpecError(
                f"{source}: --runtime: {runtime!r} is not allowed; allowed: {', '.join(RUNTIMES)}"
            )
        data["runtime"] = runtime
    return validate_spec(data, source=source)


_SPEC_KEYS_HINT = "see `twinstack schema` for every allowed key"


def validate_spec(data: Mapping[str, Any], *, source: str) -> StackSpec:
    """Validate plain data; raise :class:`SpecError` naming file, key path, value, allowed."""
    try:
        return StackSpec.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, _Err):
            shown = "" if cause.value is None else f"{cause.value!r} "
            raise SpecError(
                f"{source}: {config_key(_fmt_loc(cause.loc))}: {shown}{cause}".rstrip()
            ) from None
        loc = tuple(err["loc"])
        # collapse pydantic's tagged-union steps (e.g. 'int', 'str') out of the path
        loc = tuple(p for p in loc if not (isinstance(p, str) and p in _TYPE_STEPS))
        value = err.get("input")
        msg = _describe(err["msg"])
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(StackSpec, loc)
            what = f"allowed keys here: {', '.join(allowed)}" if allowed else _SPEC_KEYS_HINT
            raise SpecError(
                f"{source}: {config_key(_fmt_loc(loc))}: unknown key {loc[-1]!r}; {what}"
            ) from None
        if err["type"] == "literal_error":
            ctx = err.get("ctx", {})
            raise SpecError(
                f"{source}: {config_key(_fmt_loc(loc))}: {value!r} is not allowed; "
                f"allowed: {ctx.get('expected', '')}"
            ) from None
        if err["type"] == "missing":
            raise SpecError(
                f"{source}: {config_key(_fmt_loc(loc))}: required key is missing"
            ) from None
        shown = "" if isinstance(value, dict) else f"{value!r}: "
        raise SpecError(f"{source}: {config_key(_fmt_loc(loc))}: {shown}{msg}") from None


_TYPE_STEPS = {
    "int",
    "str",
    "float",
    "bool",
    "function-after[_strict_cidr(), function-after[_big_enough(), IPv4Network]]",
}


_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_stack_file(path: Path) -> dict[str, Any]:
    """Read a Pulumi stack file and return its ``config`` mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such stack file") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = yaml.load(text, Loader=_Loader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{path}:{where}: not valid YAML: {problem}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: a stack file is a mapping with a `config:` key")
    unknown = sorted(set(doc) - {"config", "secretsprovider", "encryptionsalt", "encryptedkey"})
    if unknown:
        raise SpecError(
            f"{path}: unknown top-level key(s) {unknown}; allowed: config, secretsprovider, "
            "encryptionsalt, encryptedkey"
        )
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise SpecError(f"{path}: config: must be a mapping of keys to values")
    return config


def load_stack(path: Path, runtime: str | None = None) -> StackSpec:
    """Read and validate a stack file (``stacks/Pulumi.<stack>.yaml``)."""
    return spec_from_config(read_stack_file(path), source=str(path), runtime=runtime)


def json_schema() -> dict[str, Any]:
    """JSON Schema of a stack file (``Pulumi.<stack>.yaml``), for editors."""
    spec_schema = StackSpec.model_json_schema(by_alias=True)
    defs = spec_schema.pop("$defs", {})
    props = {config_key(name): prop for name, prop in spec_schema.get("properties", {}).items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "twinstack stack file (Pulumi.<stack>.yaml)",
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "properties": props,
                "additionalProperties": True,
            },
            "secretsprovider": {"type": "string"},
            "encryptionsalt": {"type": "string"},
            "encryptedkey": {"type": "string"},
        },
        "additionalProperties": False,
        "$defs": defs,
    }
