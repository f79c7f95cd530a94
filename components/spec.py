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
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components.cost import CostSpec
from components.grammar import (
    EXECUTABLE,
    HTTPS_URL,
    AbsPath,
    Arg,
    ConfigKey,
    Content,
    DockerHost,
    EnvName,
    EnvValue,
    HttpPath,
    ImageRef,
    KernelCmdline,
    LibvirtUri,
    Name,
    Package,
    UnixUser,
    check_path,
)
from components.provider_forms import docker_cpus, docker_cpus_exact
from twinstack.errors import SpecError

PROJECT = "twinstack"
"""Pulumi project name; stack config keys are ``twinstack:<key>``."""

Runtime = Literal["vm", "container", "both"]
RUNTIMES: tuple[str, ...] = ("vm", "container", "both")

# The grammar of every string field lives in components.grammar (declared once, enforced
# here, shown in the JSON Schema).


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


MIN_CONTAINER_MEMORY_MIB = 16
"""Smallest memory limit: Docker refuses below 6 MiB, and no Debian service starts in less."""
MIN_VM_MEMORY_MIB = 256
"""Smallest VM: a Debian guest with cloud-init and systemd does not boot reliably below."""
MIN_VM_DISK_GIB = 2
"""Smallest VM root disk: the clone of the base image may not be smaller than the image."""

BRIDGE_MAX_PORTS = 1023
"""Interfaces one Linux bridge takes: the kernel numbers a bridge's ports in 10 bits, port 0
reserved (``BR_MAX_PORTS``). A Docker bridge network and a libvirt network are each one bridge
per host; the 1,024th container on one fails to start with "exchange full"."""


def vm_vcpus(vcpus: float) -> int:
    """Whole vCPUs a VM gets for a (possibly fractional) vCPU request: the ceiling, ≥ 1."""
    whole = int(vcpus)
    return max(1, whole if whole == vcpus else whole + 1)


class Resources(Model):
    """What one instance of a service may use."""

    vcpus: float = Field(
        1,
        ge=0.1,
        le=256,
        description="Virtual CPUs. A VM gets ceil(vcpus); a container gets a CPU quota of vcpus.",
    )
    memory_mib: int = Field(
        512,
        ge=MIN_CONTAINER_MEMORY_MIB,
        le=1_048_576,
        description=(
            f"Memory limit in MiB (VM RAM / container limit); at least "
            f"{MIN_CONTAINER_MEMORY_MIB}, and {MIN_VM_MEMORY_MIB} for a service that runs as a VM."
        ),
    )
    disk_gib: int = Field(
        10, gt=0, le=65_536, description="Root disk in GiB (VM clone size; container budget)."
    )

    @field_validator("vcpus")
    @classmethod
    def _representable(cls, v: float) -> float:
        if round(v, 2) != v:
            raise ValueError(f"{v} has more than two decimals; use a multiple of 0.01")
        if not docker_cpus_exact(v):
            near = sorted(
                (c / 100 for c in range(max(1, round(v * 100) - 10), round(v * 100) + 11)),
                key=lambda c: abs(c - v),
            )
            ok = next(c for c in near if docker_cpus_exact(c))
            raise ValueError(
                f"{v} is stored back by the Docker provider as {docker_cpus(v)!r}, so every "
                f"`pulumi up` would replace the container; use a value it keeps, e.g. {ok:g}"
            )
        return v

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
    mount_path: AbsPath = Field(description="Absolute mount path inside the instance.")
    size_gib: int = Field(1, gt=0, le=65_536, description="Size in GiB (VM data disk size).")
    storage: Name | None = Field(
        None, description="Storage pool (a `storage` entry) holding it; default the first one."
    )

    @field_validator("mount_path")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        _check_not_reserved(v, "a volume")
        return v


class HttpCheck(Model):
    """An HTTP GET that must answer 2xx."""

    path: HttpPath = Field("/", description="Request path (and query).")
    port: Name | int = Field(description="A port name from `ports`, or a port number.")


class HealthCheck(Model):
    """How readiness and health are checked, the same way in a container and a VM."""

    http: HttpCheck | None = Field(None, description="HTTP check (exclusive with `command`).")
    command: list[Arg] | None = Field(
        None, min_length=1, max_length=256, description="Command that exits 0 when healthy."
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

    path: AbsPath = Field(description="Absolute path inside the instance.")
    content: Content = Field(description="File content (UTF-8).")
    mode: str = Field("0644", pattern=r"^0?[0-7]{3,4}$", description="Octal permission bits.")

    @field_validator("path")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        _check_not_reserved(v, "a file")
        return v


class VmImage(Model):
    """A VM base disk: a local path or an URL with its checksum."""

    source: str = Field(
        description="Absolute path on the libvirt host, or https URL, of the image.",
        json_schema_extra={"maxLength": 2048},
    )
    checksum: str | None = Field(
        None,
        pattern=r"^sha(256|512):[0-9a-f]{64,128}$",
        description="`sha256:<hex>` or `sha512:<hex>`; required for URLs.",
    )
    format: Literal["qcow2", "raw"] = Field("qcow2", description="Disk format of the image.")
    kernel: AbsPath | None = Field(None, description="Kernel for direct boot (path on the host).")
    initrd: AbsPath | None = Field(None, description="Initrd for direct boot (path on the host).")
    cmdline: KernelCmdline = Field(
        "root=/dev/vda rw console=ttyS0", description="Kernel command line for direct boot."
    )

    @model_validator(mode="after")
    def _checked(self) -> VmImage:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", self.source):
            if not self.source.startswith("https://"):
                raise ValueError(f"image URL must use https, got {show_value(self.source)}")
            HTTPS_URL.check(self.source)
            if self.checksum is None:
                raise ValueError("an image URL needs `checksum: sha256:<hex>`")
        else:
            try:
                check_path(self.source)
            except ValueError as exc:
                raise ValueError(f"image source {show_value(self.source)} {exc}") from None
        if (self.kernel is None) != (self.initrd is None):
            raise ValueError("set both `kernel` and `initrd` for direct boot, or neither")
        return self

    @property
    def key(self) -> str:
        """Stable short id of the image, used to share one base volume per pool."""
        return hashlib.sha256(f"{self.source}|{self.checksum}".encode()).hexdigest()[:10]


RESERVED_PATHS: tuple[str, ...] = (
    "/etc/twinstack",
    "/usr/local/lib/twinstack",
    "/etc/systemd",
    "/run/twinstack",
    "/run/secrets",
)
"""Paths twinstack itself writes in an instance; files and volumes may not shadow them."""


def _check_not_reserved(path: str, what: str) -> None:
    for root in RESERVED_PATHS:
        if path == root or path.startswith(root + "/"):
            raise ValueError(
                f"{what} may not be placed at {path!r}: {root}/… is reserved "
                f"(twinstack writes there); reserved: {', '.join(RESERVED_PATHS)}"
            )


def _check_env_secrets(environment: Mapping[str, str], secrets: Mapping[str, str]) -> None:
    """No variable is both plain and secret, and none is a secret's ``<ENV>_FILE``: a
    container gets that variable naming the secret's file (``components.service``)."""
    both = sorted(set(environment) & set(secrets))
    if both:
        raise ValueError(f"{both} set in both `environment` and `secrets`")
    files = sorted(f"{env}_FILE" for env in secrets if f"{env}_FILE" in environment)
    if files:
        raise ValueError(
            f"{files} in `environment` name secret files: a container gets <ENV>_FILE="
            "/run/secrets/<ENV> for each of `secrets`; rename the variable"
        )


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


def _check_executable(command: list[str]) -> list[str]:
    try:
        EXECUTABLE.check(command[0])
    except ValueError as exc:
        raise ValueError(f"command[0] {show_value(command[0])} {exc}") from None
    return command


Command = Annotated[
    list[Arg], Field(min_length=1, max_length=1024), AfterValidator(_check_executable)
]
"""An exec-form command: an executable, then any arguments (see ``grammar.ARG``)."""


def _check_workdir(v: str) -> str:
    return v if v == "/" else check_path(v)


WorkingDir = Annotated[
    str,
    Field(json_schema_extra={"description": "'/' or a normalized absolute path"}),
    AfterValidator(_check_workdir),
]


class BuildSpec(Model):
    """What to build: renders both a Dockerfile and a cloud-init user-data."""

    base: ImageRef = Field(
        "debian:bookworm-20251117-slim",
        description="Container base image (pinned tag or digest) for the Dockerfile's FROM.",
    )
    vm_image: VmImage | None = Field(
        None, description="VM base disk; default the stack's `vmImage`."
    )
    packages: list[Package] = Field(
        default_factory=list, max_length=1000, description="Debian packages to install."
    )
    files: list[FileSpec] = Field(
        default_factory=list, max_length=1000, description="Files to write."
    )
    command: Command = Field(description="The service's command (exec form).")
    working_dir: WorkingDir = Field("/", description="Working directory (absolute).")
    user: UnixUser = Field("app", description="User the service runs as; created when not root.")
    environment: dict[EnvName, EnvValue] = Field(
        default_factory=dict, description="Plain environment variables."
    )
    secrets: dict[EnvName, ConfigKey] = Field(
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

    @model_validator(mode="after")
    def _no_overlap(self) -> BuildSpec:
        _check_env_secrets(self.environment, self.secrets)
        paths: set[str] = set()
        for f in self.files:
            if f.path in paths:
                raise ValueError(f"file path {f.path!r} is listed twice in `files`")
            paths.add(f.path)
        return self


class PrebuiltSpec(Model):
    """A prebuilt container image plus the matching VM base image."""

    container: ImageRef = Field(description="Container image, pinned by tag or digest.")
    vm: VmImage = Field(description="VM disk that already contains the service.")
    command: Command | None = Field(
        None, description="Command the VM's systemd unit runs (default: the image's own init)."
    )
    user: UnixUser | None = Field(None, description="User the service runs as.")
    environment: dict[EnvName, EnvValue] = Field(default_factory=dict)
    secrets: dict[EnvName, ConfigKey] = Field(default_factory=dict)

    @field_validator("container")
    @classmethod
    def _pinned(cls, v: str) -> str:
        return _check_image_ref(v)

    @model_validator(mode="after")
    def _no_overlap(self) -> PrebuiltSpec:
        _check_env_secrets(self.environment, self.secrets)
        return self


class RestartPolicy(Model):
    """Restart policy; `onFailure` is bounded by `maxRetries`."""

    policy: Literal["no", "on-failure", "always", "unless-stopped"] = "on-failure"
    max_retries: int = Field(5, ge=0, le=1000, description="Bound for `on-failure` (≥ 1).")

    @model_validator(mode="after")
    def _bounded(self) -> RestartPolicy:
        # Docker reads on-failure:0 as "retry forever", systemd's StartLimitBurst as "never
        # restart": no value means the same in both, so it is not allowed.
        if self.policy == "on-failure" and self.max_retries < 1:
            raise ValueError(
                "maxRetries 0 with policy on-failure means 'restart forever' to Docker and "
                "'never restart' to systemd; use maxRetries ≥ 1, or policy `no` or `always`"
            )
        return self


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
    path: AbsPath = Field(
        "/var/lib/twinstack/pools/default", description="Directory on the libvirt host."
    )
    capacity_gib: int = Field(100, gt=0, description="Capacity budget in GiB.")
    protect: bool = Field(True, description="Protect the pool and data volumes from deletion.")


class HostSpec(Model):
    """Where a realization runs: one libvirt URI and one Docker host."""

    libvirt_uri: LibvirtUri = Field("qemu:///system", description="libvirt connection URI.")
    docker_host: DockerHost = Field(
        "unix:///var/run/docker.sock", description="Docker daemon address."
    )
    domain_type: Literal["kvm", "qemu"] = Field(
        "kvm", description="kvm (hardware) or qemu (TCG emulation, where KVM is unavailable)."
    )


SERVICE_FILE_PATTERN = r"^(?:[A-Za-z0-9_*][A-Za-z0-9._*-]*/)*[A-Za-z0-9_*][A-Za-z0-9._*-]*\.ya?ml$"
"""A ``serviceFiles`` entry: a relative YAML path inside the project, ``/``-separated
segments of letters, digits and ``. _ -`` that do not start with ``.`` (so no ``.``/``..``
segments and no hidden files), where ``*`` matches any part of one segment."""

MAX_SERVICE_FILE_REF_CHARS = 255
"""Longest ``serviceFiles`` entry."""

ServiceFileRef = Annotated[
    str, Field(pattern=SERVICE_FILE_PATTERN, max_length=MAX_SERVICE_FILE_REF_CHARS)
]


MAX_SERVICE_FILES = 1000
"""Most ``serviceFiles`` entries, and most files they may match together."""


class ServiceOrigin(NamedTuple):
    """Where a service of a :class:`StackSpec` was declared (for error messages)."""

    file: str | None
    """The service file (project-relative, as matched), or ``None``: the stack file's own
    ``twinstack:services``."""
    position: int
    """Its index in that file's ``services`` list."""


class StackSpec(Model):
    """A whole stack: the `twinstack:*` config keys of one stack file."""

    _origins: tuple[ServiceOrigin, ...] = PrivateAttr(default=())

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
    service_files: list[ServiceFileRef] = Field(
        default_factory=list,
        max_length=MAX_SERVICE_FILES,
        description=(
            "YAML files of more services (`services: [...]`, each item as in `services`), "
            "merged after the inline ones in the order listed: relative paths inside the "
            "project, `*` matching part of one path segment (a pattern's files in path order)."
        ),
    )

    @model_validator(mode="after")
    def _cross(self, info: ValidationInfo) -> StackSpec:
        ctx = info.context if isinstance(info.context, Mapping) else {}
        origins = ctx.get("origins") or ()
        _check_stack(self, _Locator(ctx.get("source", "stack file"), origins))
        self._origins = tuple(origins)
        return self

    def locate(self, source: str, loc: tuple[str | int, ...]) -> str:
        """``file: key.path`` of ``loc`` (``('services', 3, 'ports', 0)``): the service
        file a service came from and its place there, else ``source`` and the config key."""
        return _Locator(source, self._origins).at(loc)

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


class _Locator:
    """Names the place of a key path: services from service files by file and position
    there (``services/web.yaml: services[2].name``), the rest by the stack file and config
    key (``stacks/Pulumi.dev.yaml: twinstack:networks[0]``)."""

    def __init__(self, source: str, origins: tuple[ServiceOrigin, ...] | list[ServiceOrigin]):
        self.source = source
        self.origins = origins
        self.files = any(o.file is not None for o in origins)

    def origin(self, loc: tuple[str | int, ...]) -> tuple[str | None, tuple[str | int, ...]]:
        """The service file of ``loc`` (``None``: the stack file) and the key path in it."""
        i = loc[1] if len(loc) > 1 and loc[0] == "services" else None
        if isinstance(i, int) and 0 <= i < len(self.origins):
            found = self.origins[i]
            if found.file is not None:
                return found.file, ("services", found.position, *loc[2:])
        return None, loc

    def at(self, loc: tuple[str | int, ...]) -> str:
        """``file: key.path`` (the stack file's keys with their ``twinstack:`` namespace)."""
        file, inner = self.origin(loc)
        if file is None:
            return f"{self.source}: {config_key(_fmt_loc(loc))}"
        return f"{file}: {_fmt_loc(inner)}"

    def key(self, loc: tuple[str | int, ...]) -> str:
        """Another place, named inside a message: ``twinstack:services[0]`` when the stack
        has no service files, else with its file (:meth:`at`)."""
        return self.at(loc) if self.files else config_key(_fmt_loc(loc))

    def ref(self, loc: tuple[str | int, ...]) -> str:
        """Like :meth:`key`, but bare (``services[0].ports[0]``) without service files."""
        return self.at(loc) if self.files else _fmt_loc(loc)


class _Err(ValueError):
    """A cross-field error with the key path it belongs to."""

    def __init__(self, loc: tuple[str | int, ...], msg: str, value: Any = None) -> None:
        super().__init__(msg)
        self.loc = loc
        self.value = value


def _check_stack(s: StackSpec, where: _Locator) -> None:
    names: dict[str, int] = {}
    for i, svc in enumerate(s.services):
        if svc.name in names:
            raise _Err(
                ("services", i, "name"),
                f"duplicate service name; also {where.ref(('services', names[svc.name]))}",
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
            if svc.resources.memory_mib < MIN_VM_MEMORY_MIB:
                raise _Err(
                    ("services", i, "resources", "memoryMib"),
                    f"is too small for a VM (the service runs as {s.runtime_of(svc)!r}); "
                    f"a VM needs at least {MIN_VM_MEMORY_MIB} MiB",
                    svc.resources.memory_mib,
                )
            if svc.resources.disk_gib < MIN_VM_DISK_GIB:
                raise _Err(
                    ("services", i, "resources", "diskGib"),
                    f"is too small for a VM root disk (a clone of the base image); "
                    f"at least {MIN_VM_DISK_GIB} GiB",
                    svc.resources.disk_gib,
                )
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
                    here = f"{where.ref(('services', i, 'ports', j))} ({svc.name}/{p.name}, replica {k})"
                    if key in bound:
                        raise _Err(
                            ("services", i, "ports", j, "hostPort"),
                            f"host port {p.host_port + k}/{p.protocol} on {p.host_ip} of host "
                            f"{host!r} is already published by {bound[key]}; "
                            "host ports must be unique per host",
                            p.host_port,
                        )
                    bound[key] = here
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
    # every network's bridge on a host can take the instances attached to it
    sides = {"vm": "VMs", "container": "containers"}
    attached: dict[tuple[str, str, str], int] = {}
    for svc in s.services:
        for side in _runtimes(s.runtime_of(svc)):
            for name in s.networks_of(svc):
                bridge = (name, s.host_of(svc), side)
                attached[bridge] = attached.get(bridge, 0) + svc.replicas
    if any(count > BRIDGE_MAX_PORTS for count in attached.values()):
        seen: dict[tuple[str, str, str], int] = {}
        for i, svc in enumerate(s.services):
            for side in sorted(_runtimes(s.runtime_of(svc))):
                for j, name in enumerate(s.networks_of(svc)):
                    bridge = (name, s.host_of(svc), side)
                    seen[bridge] = seen.get(bridge, 0) + svc.replicas
                    if seen[bridge] <= BRIDGE_MAX_PORTS:
                        continue
                    raise _Err(
                        ("services", i, "networks", j) if svc.networks else ("services", i),
                        f"on host {bridge[1]!r} is the network this service takes past "
                        f"{BRIDGE_MAX_PORTS:,} {sides[side]}: the stack attaches "
                        f"{attached[bridge]:,} {sides[side]} to it, and one Linux bridge holds "
                        f"at most {BRIDGE_MAX_PORTS:,} (the kernel's port limit; Docker fails "
                        "with 'exchange full'); spread the services over more networks or hosts",
                        name,
                    )


# ----------------------------------------------------------------------- loading


def config_key(key: str) -> str:
    """The namespaced Pulumi config key of a stack spec field (``runtime`` → ``twinstack:runtime``)."""
    return f"{PROJECT}:{key}"


SHOWN_CHARS = 80
"""How much of a bad value an error message shows (see :func:`show_value`)."""

_MESSAGE_CHARS = 500
"""Cap for a validator's own message text, which may embed the value it rejects."""


def show_value(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for an error message, cut at ``limit`` characters.

    A cut value ends in ``…(N chars)`` (a string's length) or ``…(N items)`` (a list's or
    mapping's); the work is bounded by ``limit``, not by the value, so a 16 MiB string or
    a deeply nested list costs no more to show than a short one.
    """
    if isinstance(value, str):
        text = repr(value[: limit + 1])
        if len(value) <= limit and len(text) <= limit + 2:
            return text
        return f"{text[:limit]}…({len(value)} chars)"
    if isinstance(value, dict | list | tuple | set | frozenset):
        import reprlib

        short = reprlib.Repr()  # keyword arguments only from Python 3.12
        short.maxlevel, short.maxstring, short.maxother = 3, limit, limit
        short.maxdict = short.maxlist = short.maxtuple = short.maxset = 8
        text = short.repr(value)
        if len(text) <= limit and "..." not in text:
            return text
        return f"{text[:limit]}…({len(value)} items)"
    try:
        text = repr(value)
    except ValueError:  # an int too long for Python to print
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


def _clip(text: str, limit: int = _MESSAGE_CHARS) -> str:
    """Message text (not a value) cut at ``limit`` characters."""
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_/@$+-]([A-Za-z0-9_.:/@$+-]*[A-Za-z0-9_/@$+-])?$")


def _fmt_loc(loc: tuple[str | int, ...]) -> str:
    """``('services', 0, 'build')`` → ``services[0].build``.

    Keys come from the stack file: one that is not plain (spaces, newlines, terminal
    escapes, a whole paragraph) is shown quoted and cut, as ``["…"]``.
    """
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and len(part) <= SHOWN_CHARS and _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{show_value(part)}]"
    return out


def _describe(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    msg = msg.replace("Extra inputs are not permitted", "unknown key")
    if "\n" in msg:  # one message, one line
        msg = " ".join(msg.split())
    return _clip(msg)


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
    config: Mapping[str, Any],
    *,
    source: str = "<config>",
    runtime: str | None = None,
    root: Path | None = None,
) -> StackSpec:
    """Validate the ``twinstack:*`` keys of a stack's config into a :class:`StackSpec`.

    ``config`` maps namespaced keys (``twinstack:services``) or bare keys to values. Keys of
    other namespaces (``docker:host``, ``libvirt:uri``) are ignored; unknown ``twinstack:``
    keys are errors. Secret config values (``{secure: ...}``) are not spec keys; a key that
    a service's ``secrets`` references but that is set as plain config is an error that
    says so (in the program too: the engine lists which keys are secret).

    ``twinstack:serviceFiles`` names YAML files of more services, relative to ``root``
    (default: the project directory, the nearest one upward from the working directory
    that holds ``Pulumi.yaml``); they are read here (:func:`merge_service_files`) and
    validated with the rest, and errors in them name the file and the key path there.
    """
    data: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise SpecError(
                f"{source}: config key {show_value(key)} is not a string; config keys are "
                f"namespaced strings such as {config_key('runtime')}"
            )
        ns, _, bare = key.rpartition(":")
        if ns and ns != PROJECT:
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue  # a secret value referenced by build.secrets
        data[bare] = value
    origins = merge_service_files(data, source=source, root=root)
    refs = _secret_refs(data, _Locator(source, origins))
    if refs:
        fields = {f.alias or n for n, f in StackSpec.model_fields.items()}
        for bare in data:
            if bare in refs and bare not in fields:
                raise SpecError(
                    f"{source}: {config_key(_fmt_loc((bare,)))}: is referenced by {refs[bare]} "
                    "as a secret but is set as plain config (its value is not shown); set it "
                    f"with `pulumi config set --secret {_clip(bare, SHOWN_CHARS)} <value>`"
                )
    if runtime is not None:
        if runtime not in RUNTIMES:
            raise SpecError(
                f"{source}: --runtime: {runtime!r} is not allowed; allowed: {', '.join(RUNTIMES)}"
            )
        data["runtime"] = runtime
    return validate_spec(data, source=source, origins=origins)


def _secret_refs(data: Mapping[str, Any], where: _Locator) -> dict[str, str]:
    """Config keys the (not yet validated) services read as secrets → the first key path
    that references each (``twinstack:services[0].build.secrets.API_TOKEN``)."""
    refs: dict[str, str] = {}
    services = data.get("services")
    if not isinstance(services, list):
        return refs
    for i, svc in enumerate(services):
        if not isinstance(svc, Mapping):
            continue
        for kind in ("build", "image"):
            src = svc.get(kind)
            secrets = src.get("secrets") if isinstance(src, Mapping) else None
            if not isinstance(secrets, Mapping):
                continue
            for env, key in secrets.items():
                if isinstance(key, str):
                    refs.setdefault(key, where.key(("services", i, kind, "secrets", env)))
    return refs


def check_secrets_set(spec: StackSpec, config: Mapping[str, Any], *, source: str) -> None:
    """Every secret a service references is set in the stack file's ``config``.

    Only for a stack file's own config (``{secure: ...}`` values present): the program
    (``twinstack/program.py``) checks the engine's config itself, where secrets arrive
    decrypted and listed as secret keys.
    """
    for i, svc in enumerate(spec.services):
        kind = "build" if svc.build is not None else "image"
        for env, key in svc.secrets.items():
            if config_key(key) in config or key in config:
                continue
            shown_key = _clip(key, SHOWN_CHARS)
            raise SpecError(
                f"{spec.locate(source, ('services', i, kind, 'secrets', env))}: "
                f"config key {show_value(key)} is not set; run "
                f"`pulumi config set --secret {shown_key} <value>`"
            )


_SPEC_KEYS_HINT = "see `twinstack schema` for every allowed key"


def _first_error(exc: ValidationError, data: Mapping[str, Any]) -> Any:
    """``exc.errors()[0]`` without converting every error.

    A list of 100,000 bad items is 100,000 errors, and ``errors()`` spends seconds and
    hundreds of MB building them all. With several errors the first is read from pydantic's
    JSON (no inputs) and its input is looked up in ``data`` along its key path.
    """
    if exc.error_count() == 1:
        return exc.errors()[0]  # keeps ctx["error"], e.g. an _Err with its own loc and value
    import json

    text = exc.json(include_url=False, include_context=True, include_input=False)
    err, _ = json.JSONDecoder().raw_decode(text, 1)
    value: Any = data
    for part in err["loc"]:
        # a part not found is a union/validator step, or the missing key: keep the parent
        in_map = isinstance(value, Mapping) and part in value
        in_list = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        if in_map or in_list:
            value = value[part]
    err["input"] = value
    return err


def validate_spec(
    data: Mapping[str, Any], *, source: str, origins: list[ServiceOrigin] | None = None
) -> StackSpec:
    """Validate plain data; raise :class:`SpecError` naming file, key path, value, allowed.

    ``origins`` says where each of ``data["services"]`` was declared (see
    :func:`merge_service_files`); errors in a service file's services name that file.
    """
    where = _Locator(source, origins or ())
    try:
        context = {"origins": origins, "source": source} if origins else None
        return StackSpec.model_validate(dict(data), context=context)
    except ValidationError as exc:
        err = _first_error(exc, data)
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, _Err):
            shown = "" if cause.value is None else f"{show_value(cause.value)} "
            raise SpecError(
                f"{where.at(cause.loc)}: {shown}{_describe(str(cause))}".rstrip()
            ) from None
        loc = tuple(err["loc"])
        # collapse pydantic's tagged-union steps (e.g. 'int', 'str') out of the path
        loc = tuple(p for p in loc if not (isinstance(p, str) and p in _TYPE_STEPS))
        value = err.get("input")
        msg = _describe(err["msg"])
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(StackSpec, loc)
            what = f"allowed keys here: {', '.join(allowed)}" if allowed else _SPEC_KEYS_HINT
            raise SpecError(f"{where.at(loc)}: unknown key {show_value(loc[-1])}; {what}") from None
        if err["type"] == "literal_error":
            ctx = err.get("ctx", {})
            raise SpecError(
                f"{where.at(loc)}: {show_value(value)} is not allowed; "
                f"allowed: {ctx.get('expected', '')}"
            ) from None
        if err["type"] == "missing":
            raise SpecError(f"{where.at(loc)}: required key is missing") from None
        shown = "" if isinstance(value, dict) else f"{show_value(value)}: "
        raise SpecError(f"{where.at(loc)}: {shown}{msg}") from None


_TYPE_STEPS = {
    "int",
    "str",
    "float",
    "bool",
    "function-after[_strict_cidr(), function-after[_big_enough(), IPv4Network]]",
}


# A stack file is untrusted input: whatever it holds, reading it must end within a bounded
# time and memory. Each limit below is checked before the work it bounds is done.

MAX_STACK_FILE_BYTES = 16 * 1024 * 1024
"""Largest stack file read (16 MiB): checked before reading, so ``/dev/zero`` or a
multi-gigabyte file costs nothing. Real stack files are a few KiB (a 1,000-service
benchmark stack is 0.6 MiB)."""

MAX_YAML_NODES = 100_000
"""Most YAML nodes (scalars, lists, mappings; an alias counts as a copy of what it names)
a stack file may expand to. Bounds "billion laughs" files (a few hundred bytes of nested
anchors that expand to 10⁹ nodes) and files of millions of tiny nodes alike; the
1,000-service benchmark stack has about 60,000. Counted on the parser's event stream,
before anything is built, so merge keys (``<<: [*a, *a]``) are bounded too."""

MAX_YAML_TEXT = MAX_STACK_FILE_BYTES
"""Most characters of scalar text a stack file may expand to, aliases counted as copies:
aliases cannot make the data larger than the largest file read."""

MAX_YAML_DEPTH = 64
"""Deepest nesting of lists and mappings. A spec value is at most 7 levels deep; libyaml's
scanner slows quadratically with flow nesting and its composer recurses in C, so a file of
100,000 ``[`` would otherwise take minutes or crash the interpreter."""

MAX_INT_CHARS = 100
"""Longest integer literal: Python refuses to convert integers over 4,300 digits, and no
spec value needs more than 20."""

_YAML = "tag:yaml.org,2002:"
_PLAIN_TAGS = frozenset({"!", _YAML + "str", _YAML + "seq", _YAML + "map"})
"""Explicit tags allowed (e.g. ``!!str 0755``); ``!!binary``, ``!!set``, ``!!python/...``
and custom tags would make values that are not Pulumi config (bytes, sets, objects)."""

_STRING_TAGS = frozenset({_YAML + "timestamp", _YAML + "value"})
_LoaderBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Loader: Any = type(
    "_StackLoader",
    (_LoaderBase,),
    {
        # YAML 1.1 dates (2024-01-01) and `=` are strings in Pulumi config (Go's YAML 1.2
        # reader), not datetime objects or a constructor error.
        "yaml_implicit_resolvers": {
            first: [(tag, rx) for tag, rx in resolvers if tag not in _STRING_TAGS]
            for first, resolvers in _LoaderBase.yaml_implicit_resolvers.items()
        }
    },
)
"""The C safe loader when PyYAML has it (fast), with Pulumi's reading of dates."""


def _read_bounded(path: Path, what: str = "stack file", name: str | None = None) -> bytes:
    """The file's bytes, refusing files over :data:`MAX_STACK_FILE_BYTES` before reading.
    Messages name the file ``name`` (default: ``path``)."""
    import os

    shown = path if name is None else Path(name)
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_STACK_FILE_BYTES:
                raise SpecError(_too_big(shown, f"is {size:,} bytes"))
            data = f.read(MAX_STACK_FILE_BYTES + 1)  # not a regular file: read no more
    except FileNotFoundError:
        raise SpecError(f"{shown}: no such {what}") from None
    except OSError as exc:
        raise SpecError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_STACK_FILE_BYTES:
        raise SpecError(_too_big(shown, f"is over {MAX_STACK_FILE_BYTES:,} bytes"))
    return data


def _too_big(path: Path, what: str) -> str:
    return (
        f"{path}: {what}; a stack file may be at most {MAX_STACK_FILE_BYTES:,} bytes "
        f"({MAX_STACK_FILE_BYTES // 2**20} MiB)"
    )


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = exc.start
        line_start = data.rfind(b"\n", 0, at) + 1
        line = data.count(b"\n", 0, at) + 1
        column = len(data[line_start:at].decode("utf-8")) + 1
        raise SpecError(
            f"{path}: line {line}, column {column} (byte {at}): byte 0x{data[at]:02x} is not "
            f"valid UTF-8 ({exc.reason}); stack files are UTF-8"
        ) from None


def _event_loc(frames: list[list[Any]]) -> str:
    """Key path of the node being read (``twinstack:services[0].build``), from the open
    collections; the top-level ``config`` step is left out, as in every other message."""
    loc: list[str | int] = []
    for is_map, _anchor, children, key, _nodes, _chars in frames:
        if not is_map:
            loc.append(children)
        elif children % 2:
            loc.append(key if isinstance(key, str) else "?")
        # else: reading a key of this mapping: the mapping's own path names it
    if len(loc) > 1 and loc[0] == "config":
        loc = loc[1:]
    return _clip(_fmt_loc(tuple(loc)), 2 * SHOWN_CHARS)  # 64 levels of [0] say no more


def _check_events(loader: Any, path: Path, limits: _Limits | None = None) -> tuple[bool, int, int]:
    """Walk the parser's events once, enforcing the ``MAX_YAML_*`` limits (or ``limits``),
    explicit tags, integer length, one document and no recursive aliases; return whether
    the file holds a document, and the nodes and characters it expands to. Nothing is
    built: memory stays flat whatever the file expands to."""
    max_nodes, max_chars, holder = limits or (MAX_YAML_NODES, MAX_YAML_TEXT, "a stack file")
    frames: list[list[Any]] = []  # open collections: [is_map, anchor, children, key, nodes, chars]
    anchors: dict[str, tuple[int, int]] = {}  # anchor → expanded (nodes, chars)
    nodes = chars = 0
    documents = 0

    def fail(event: Any, what: str) -> SpecError:
        where = _event_loc(frames)
        line = f"line {event.start_mark.line + 1}"
        return SpecError(f"{path}: {where + ': ' if where else ''}{what} ({line})")

    def done(key: Any) -> None:  # a child of the innermost collection is complete
        if frames:
            top = frames[-1]
            if top[0] and top[2] % 2 == 0:
                top[3] = key
            top[2] += 1

    while loader.check_event():
        event = loader.get_event()
        kind = type(event)
        if kind is yaml.ScalarEvent:
            if event.tag is not None and event.tag not in _PLAIN_TAGS:
                raise fail(event, f"YAML tag {show_value(event.tag)} is not supported{_TAG_HINT}")
            value = event.value
            if (
                len(value) > MAX_INT_CHARS
                and event.implicit[0]
                and loader.resolve(yaml.ScalarNode, value, event.implicit) == _YAML + "int"
            ):
                raise fail(
                    event,
                    f"an integer of {len(value):,} characters is too long; at most "
                    f"{MAX_INT_CHARS} (quote it if it is text)",
                )
            nodes += 1
            chars += len(value)
            if event.anchor is not None:
                anchors[event.anchor] = (1, len(value))
            done(value)
        elif kind is yaml.AliasEvent:
            size = anchors.get(event.anchor)
            if size is None:
                if any(f[1] == event.anchor for f in frames):
                    raise fail(
                        event,
                        f"alias *{_clip(event.anchor, SHOWN_CHARS)} refers to a list or "
                        "mapping that contains it; recursive values are not allowed",
                    )
                size = (1, 0)  # an undefined alias: the loader reports it
            nodes += size[0]
            chars += size[1]
            done(None)
        elif kind is yaml.SequenceStartEvent or kind is yaml.MappingStartEvent:
            if event.tag is not None and event.tag not in _PLAIN_TAGS:
                raise fail(event, f"YAML tag {show_value(event.tag)} is not supported{_TAG_HINT}")
            if len(frames) >= MAX_YAML_DEPTH:
                raise fail(
                    event, f"is nested more than {MAX_YAML_DEPTH} lists/mappings deep; too deep"
                )
            frames.append([kind is yaml.MappingStartEvent, event.anchor, 0, None, nodes, chars])
            nodes += 1
        elif kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
            _is_map, anchor, _children, _key, nodes0, chars0 = frames.pop()
            if anchor is not None:
                anchors[anchor] = (nodes - nodes0, chars - chars0)
            done(None)
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise fail(event, "holds a second YAML document (`---`); a stack file is one")
            anchors.clear()
        if nodes > max_nodes:
            raise fail(
                event,
                f"expands to more than {max_nodes:,} YAML nodes (aliases counted as "
                f"copies of what they name); {holder} may hold at most {max_nodes:,}",
            )
        if chars > max_chars:
            raise fail(
                event,
                f"expands to more than {max_chars:,} characters of text (aliases counted "
                f"as copies of what they name); {holder} may hold at most {max_chars:,}",
            )
    return documents > 0, nodes, chars


_TAG_HINT = "; stack files hold plain values: strings, numbers, booleans, null, lists and mappings"


def _yaml_error(path: Path, text: str, exc: Exception) -> SpecError:
    """One line naming the file, where, and what libyaml or the constructor objected to."""
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        column = exc.position - (before.rfind("\n") + 1) + 1
        where = f" line {line}, column {column}:"
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1])
        problem = f"character U+{char:04X} is not allowed ({exc.reason})"
    else:
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
    return SpecError(f"{path}:{where} not valid YAML: {_clip(' '.join(str(problem).split()))}")


_Limits = tuple[int, int, str]
"""Most nodes and characters a file may expand to, and what holds them (for messages)."""


def _load_yaml(path: Path, text: str, limits: _Limits | None = None) -> tuple[Any, int, int]:
    """Check the file's event stream against the limits, then load it (C loader); return
    the document and the nodes and characters it expands to."""
    import gc

    # Both passes allocate only acyclic objects; the collector would walk them all,
    # again and again, as they grow (half of the load time of a large file).
    collecting = gc.isenabled()
    gc.disable()
    try:
        checker = _Loader(text)
        try:
            has_document, nodes, chars = _check_events(checker, path, limits)
        finally:
            checker.dispose()
        if not has_document:
            return None, nodes, chars
        return yaml.load(text, Loader=_Loader), nodes, chars
    except (yaml.YAMLError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise _yaml_error(path, text, exc) from None
    finally:
        if collecting:
            gc.enable()


_TOP_LEVEL_KEYS = ("config", "secretsprovider", "encryptionsalt", "encryptedkey")
_EMPTY = "a stack file is a mapping with a `config:` key holding twinstack:* keys"


def load_yaml_file(path: Path, what: str = "stack file") -> Any:
    """One YAML document from a file a stack file brings in (the stack file itself, a cost
    file), read within the ``MAX_*`` limits above; ``None`` when it holds no document.
    Anything wrong (size, encoding, YAML) is a :class:`SpecError` naming the file."""
    data = _read_bounded(path, what)
    text = _decode(path, data)
    del data
    return _load_yaml(path, text)[0]


def read_stack_file(path: Path) -> dict[str, Any]:
    """Read a Pulumi stack file and return its ``config`` mapping.

    The file is untrusted: it is read by :func:`load_yaml_file`, and anything wrong with
    its shape is a :class:`SpecError` naming the file.
    """
    doc = load_yaml_file(path)
    if doc is None:
        raise SpecError(f"{path}: is empty; {_EMPTY}")
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: holds a {type(doc).__name__}, not a mapping; {_EMPTY}")
    unknown = sorted((k for k in doc if k not in _TOP_LEVEL_KEYS), key=str)
    if unknown:
        shown = ", ".join(show_value(k) for k in unknown[:5])
        raise SpecError(
            f"{path}: unknown top-level key(s) {shown}{', …' if len(unknown) > 5 else ''}; "
            f"allowed: {', '.join(_TOP_LEVEL_KEYS)}"
        )
    config = doc.get("config")
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise SpecError(
            f"{path}: config: must be a mapping of keys to values, got {show_value(config)}"
        )
    for key in config:
        if not isinstance(key, str):
            raise SpecError(
                f"{path}: config: key {show_value(key)} is not a string; config keys are "
                f"namespaced strings such as {config_key('runtime')}"
            )
    return config


def load_stack(path: Path, runtime: str | None = None) -> StackSpec:
    """Read and validate a stack file (``stacks/Pulumi.<stack>.yaml``), including that
    every secret its services reference is set (``pulumi config set --secret``)."""
    config = read_stack_file(path)
    spec = spec_from_config(config, source=str(path), runtime=runtime, root=project_dir_of(path))
    check_secrets_set(spec, config, source=str(path))
    return spec


# ------------------------------------------------------------------- service files
# A large stack keeps its services in files the stack config names
# (`twinstack:serviceFiles`), so that what travels in one config value (the engine passes
# the whole stack config to the language host and to policy packs in one environment
# variable, which the kernel caps at 128 KiB) is a list of paths, not the services.

MAX_SERVICE_FILES_NODES = 1_000_000
"""Most YAML nodes the service files of one stack expand to together (each file is also
bounded like a stack file); a generated benchmark service is about 60 nodes."""

MAX_SERVICE_FILES_BYTES = 64 * 1024 * 1024
"""Most bytes the service files of one stack hold together (checked before reading), and
most characters of text they expand to."""

_SERVICE_FILE_SHAPE = (
    "a service file is a mapping with one key, `services:`, a list of services as in "
    f"{PROJECT}:services"
)
_SERVICE_FILE_ALLOWED = (
    "allowed: a relative path inside the project (no leading '/', no '.' or '..' segments, "
    "no hidden files) of letters, digits and '. _ -', '*' matching part of one path "
    "segment, ending in .yaml or .yml, e.g. services/web.yaml or services/dev/*.yaml"
)
_SERVICE_FILE_RX = re.compile(SERVICE_FILE_PATTERN)


def project_dir_of(stack_file: Path) -> Path:
    """The project a stack file belongs to: the nearest directory upward from the stack
    file that holds ``Pulumi.yaml``; else the one upward from the working directory; else
    the working directory. Service files (and cost files) are relative to it."""
    for start in (stack_file.absolute().parent, Path.cwd()):
        for d in (start, *start.parents):
            if (d / "Pulumi.yaml").is_file():
                return d
    return Path.cwd()


def merge_service_files(
    data: dict[str, Any], *, source: str, root: Path | None = None
) -> list[ServiceOrigin]:
    """Read the files ``data["serviceFiles"]`` names (bare config keys) and append their
    services to ``data["services"]``; return where each service comes from.

    Paths are relative to ``root`` (default: the project directory of the working
    directory) and follow :data:`SERVICE_FILE_PATTERN`; a match must be a regular file
    whose real path (symbolic links resolved) is inside ``root``. Inline services come
    first, then each entry's files in the order listed (a pattern's matches sorted by
    path; a file matched twice is read once). Every file is read by the same bounded YAML
    reader as stack files, and all of them together within :data:`MAX_SERVICE_FILES_NODES`
    and :data:`MAX_SERVICE_FILES_BYTES`. Errors name the stack file and
    ``twinstack:serviceFiles[i]``, or the service file and the key path in it.
    """
    refs = data.get("serviceFiles")
    inline = data.get("services")
    if refs is None or not (inline is None or isinstance(inline, list)):
        return []  # no files; or inline services that are not a list: the spec says so
    here = f"{source}: {config_key('serviceFiles')}"
    if not isinstance(refs, list):
        raise SpecError(
            f"{here}: {show_value(refs)} is not a list of paths; {_SERVICE_FILE_ALLOWED}"
        )
    if len(refs) > MAX_SERVICE_FILES:
        raise SpecError(
            f"{here}: lists {len(refs):,} entries; at most {MAX_SERVICE_FILES:,} (use a '*' pattern)"
        )
    if root is None:
        root = project_dir_of(Path.cwd() / "Pulumi.yaml")
    merged = list(inline or [])
    origins = [ServiceOrigin(None, i) for i in range(len(merged))]
    budget = [MAX_SERVICE_FILES_NODES, MAX_SERVICE_FILES_BYTES]
    for label, path in _service_file_paths(refs, root=root, here=here):
        services = _read_service_file(path, label, budget)
        origins += [ServiceOrigin(label, j) for j in range(len(services))]
        merged += services
    data["services"] = merged
    return origins


def _service_file_paths(refs: list[Any], *, root: Path, here: str) -> list[tuple[str, Path]]:
    """(label, real path) of every file ``refs`` names, checked and de-duplicated."""
    import stat

    real_root = root.resolve()
    seen: set[Path] = set()
    out: list[tuple[str, Path]] = []
    total = 0
    for i, ref in enumerate(refs):
        at = f"{here}[{i}]"
        if (
            not isinstance(ref, str)
            or len(ref) > MAX_SERVICE_FILE_REF_CHARS
            or not _SERVICE_FILE_RX.fullmatch(ref)
            or "**" in ref
        ):
            raise SpecError(f"{at}: {show_value(ref)} is not allowed; {_SERVICE_FILE_ALLOWED}")
        matches = _glob(root, real_root, ref, at) if "*" in ref else [ref]
        if not matches:
            raise SpecError(f"{at}: {show_value(ref)} matches no file in the project ({root})")
        for rel in matches:
            try:
                real = (root / rel).resolve(strict=True)
            except FileNotFoundError:
                raise SpecError(
                    f"{at}: {rel}: no such service file in the project ({root})"
                ) from None
            except (OSError, RuntimeError) as exc:  # a symlink loop, a permission
                what = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise SpecError(f"{at}: {rel}: cannot read: {what}") from None
            if not real.is_relative_to(real_root):
                raise SpecError(
                    f"{at}: {rel}: is a symbolic link (or lies under one) that leads outside "
                    f"the project ({root}); service files must be inside the project"
                )
            info = real.stat()
            if not stat.S_ISREG(info.st_mode):
                raise SpecError(f"{at}: {rel}: is not a regular file; {_SERVICE_FILE_ALLOWED}")
            if real in seen:
                continue
            seen.add(real)
            out.append((rel, real))
            total += info.st_size
            if len(out) > MAX_SERVICE_FILES:
                raise SpecError(
                    f"{at}: the service files listed match more than {MAX_SERVICE_FILES:,} "
                    f"files; at most {MAX_SERVICE_FILES:,}"
                )
            if total > MAX_SERVICE_FILES_BYTES:
                raise SpecError(
                    f"{at}: {rel}: the service files listed hold more than "
                    f"{MAX_SERVICE_FILES_BYTES:,} bytes together; at most "
                    f"{MAX_SERVICE_FILES_BYTES:,} ({MAX_SERVICE_FILES_BYTES // 2**20} MiB)"
                )
    return out


def _glob(root: Path, real_root: Path, ref: str, at: str) -> list[str]:
    """Project-relative paths matching ``ref``, where ``*`` matches any part of one path
    segment but not a leading '.'; sorted. Only directories inside the project are listed."""
    import os

    found = [""]
    for part in ref.split("/"):
        if "*" not in part:
            found = [f"{rel}/{part}" if rel else part for rel in found]
            continue
        rx = re.compile(".*".join(re.escape(piece) for piece in part.split("*")))
        nxt: list[str] = []
        for rel in found:
            d = root / rel if rel else root
            try:
                if not d.resolve().is_relative_to(real_root):
                    raise SpecError(
                        f"{at}: {rel}: is a symbolic link (or lies under one) that leads "
                        f"outside the project ({root}); service files must be inside the project"
                    )
                names = os.listdir(d)
            except (OSError, RuntimeError):
                continue  # not a directory (or unreadable): nothing matches under it
            for name in names:
                if not name.startswith(".") and rx.fullmatch(name):
                    nxt.append(f"{rel}/{name}" if rel else name)
                    if len(nxt) > MAX_SERVICE_FILES:
                        raise SpecError(
                            f"{at}: {show_value(ref)} matches more than {MAX_SERVICE_FILES:,} "
                            f"paths; at most {MAX_SERVICE_FILES:,} files"
                        )
        found = nxt
    return sorted(rel for rel in found if os.path.lexists(root / rel))


def _read_service_file(path: Path, label: str, budget: list[int]) -> list[Any]:
    """The ``services`` list of one service file, read within the file's own bounds and
    what is left of the stack's ``budget`` (nodes, characters), which it consumes."""
    nodes, chars = budget
    holder = "a service file"
    if nodes < MAX_YAML_NODES or chars < MAX_YAML_TEXT:
        holder = "the service files of a stack together"
    limits = (min(nodes, MAX_YAML_NODES), min(chars, MAX_YAML_TEXT), holder)
    shown = Path(label)
    data = _read_bounded(path, "service file", name=label)
    text = _decode(shown, data)
    del data
    doc, used_nodes, used_chars = _load_yaml(shown, text, limits)
    budget[0] -= used_nodes
    budget[1] -= used_chars
    if doc is None:
        raise SpecError(f"{label}: is empty; {_SERVICE_FILE_SHAPE}")
    if not isinstance(doc, dict):
        raise SpecError(
            f"{label}: holds a {type(doc).__name__}, not a mapping; {_SERVICE_FILE_SHAPE}"
        )
    unknown = sorted((k for k in doc if k != "services"), key=str)
    if unknown:
        shown_keys = ", ".join(show_value(k) for k in unknown[:5])
        raise SpecError(
            f"{label}: unknown top-level key(s) {shown_keys}{', …' if len(unknown) > 5 else ''}; "
            f"allowed: services ({_SERVICE_FILE_SHAPE})"
        )
    if "services" not in doc:
        raise SpecError(f"{label}: services: required key is missing; {_SERVICE_FILE_SHAPE}")
    services = doc["services"]
    if not isinstance(services, list):
        raise SpecError(
            f"{label}: services: {show_value(services)} is not a list; {_SERVICE_FILE_SHAPE}"
        )
    return services


def service_file_schema() -> dict[str, Any]:
    """JSON Schema of a service file (``services: [...]``), for editors."""
    spec_schema = StackSpec.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "twinstack service file (twinstack:serviceFiles)",
        "type": "object",
        "properties": {"services": spec_schema["properties"]["services"]},
        "required": ["services"],
        "additionalProperties": False,
        "$defs": spec_schema.get("$defs", {}),
    }


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
