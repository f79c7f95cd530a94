"""The density and cost model: effective demand, instances per host, fleet placement, cost.

Three dimensions, always in this order: ``cpu`` (vCPU slots), ``memory`` (MiB), ``disk``
(GiB). A host profile offers ``(total - reserved) x overcommit`` of each. An instance asks
for its *effective* demand: its declared size plus what its runtime adds (see
:mod:`twinstack.density.overhead`). Images (a VM's base image, a container's layers) are
stored once per host that runs them, so they are charged to the host, not the instance.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from components.cost import HOURS_PER_MONTH, Accelerator, CostSpec, HostProfile
from components.spec import vm_vcpus
from twinstack.density.footprint import Footprint, Instance
from twinstack.density.overhead import OverheadModel

DIMENSIONS: tuple[str, str, str] = ("cpu", "memory", "disk")
UNITS: dict[str, str] = {"cpu": "vCPU", "memory": "MiB", "disk": "GiB"}
_EPS = 1e-9

Vector = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Demand:
    """What one instance takes on its host, per dimension, after overheads."""

    cpu: float
    memory_mib: float
    disk_gib: float

    @property
    def vector(self) -> Vector:
        return (self.cpu, self.memory_mib, self.disk_gib)


def capacity(profile: HostProfile) -> Vector:
    """What one host of ``profile`` offers instances: (total - reserved) x overcommit."""
    r = profile.reserved
    return (
        (profile.cores - r.cores) * profile.cpu_overcommit,
        (profile.memory_gib - r.memory_gib) * 1024.0 * profile.memory_overcommit,
        (profile.disk_gib - r.disk_gib) * profile.disk_overcommit,
    )


def accelerator_of(inst: Instance, profile: HostProfile) -> Accelerator:
    return inst.accelerator or profile.accelerator


def demand(inst: Instance, ov: OverheadModel, profile: HostProfile) -> Demand:
    """Effective per-instance demand on a host of ``profile``.

    The declared size is the service's own need. A VM must also hold its guest OS, in
    memory and on its overlay, and its QEMU process takes memory and CPU of its own; a
    container adds its runtime shim and its (bounded) log files.
    """
    if inst.runtime == "vm":
        acc = accelerator_of(inst, profile)
        declared_mem = inst.declared_memory_mib or inst.memory_mib
        guest = max(inst.memory_mib, declared_mem + ov["vm.guestOsMemoryMib"])
        declared_disk = inst.declared_disk_gib if inst.declared_disk_gib is not None else 0.0
        disk = max(inst.disk_gib, declared_disk + ov["vm.guestOsDiskGib"])
        return Demand(
            cpu=inst.vcpus + ov.vmm(acc, "cpuCores"),
            memory_mib=guest + ov.vmm(acc, "memoryMib"),
            disk_gib=disk + ov["vm.cloudInitDiskMib"] / 1024.0,
        )
    cpu = inst.vcpus or inst.declared_vcpus or 0.0
    mem = max(inst.memory_mib, inst.declared_memory_mib or 0.0)
    log = inst.log_cap_gib if inst.log_cap_gib is not None else ov["container.logGib"]
    return Demand(
        cpu=cpu + ov["container.cpuCores"],
        memory_mib=mem + ov["container.shimMemoryMib"],
        disk_gib=(inst.declared_disk_gib or 0.0) + log,
    )


def startup_seconds(inst: Instance, ov: OverheadModel, profile: HostProfile) -> float:
    if inst.runtime == "vm":
        return ov.vmm(accelerator_of(inst, profile), "startupSeconds")
    return ov["container.startupSeconds"]


def shared_gib(inst: Instance, ov: OverheadModel) -> float:
    """Disk of the image this instance shares with others on the same host."""
    return ov.image_gib(inst.runtime, inst.image)


def counterpart(inst: Instance, runtime: str) -> Instance:
    """The same declared service as the other runtime (what the components would make)."""
    if runtime == inst.runtime:
        return inst
    vcpus = inst.declared_vcpus or inst.vcpus
    memory = inst.declared_memory_mib or inst.memory_mib
    disk = inst.declared_disk_gib if inst.declared_disk_gib is not None else inst.disk_gib
    if runtime == "vm":
        return replace(
            inst,
            runtime="vm",
            vcpus=float(vm_vcpus(vcpus)),
            memory_mib=memory,
            disk_gib=disk,
            declared_vcpus=vcpus,
            declared_memory_mib=memory,
            declared_disk_gib=disk,
            image=None,
            log_cap_gib=None,
        )
    return replace(
        inst,
        runtime="container",
        vcpus=vcpus,
        memory_mib=memory,
        disk_gib=0.0,
        declared_vcpus=vcpus,
        declared_memory_mib=memory,
        declared_disk_gib=disk,
        image=None,
        accelerator=None,
        log_cap_gib=None,
    )


# ------------------------------------------------------------------- per host


@dataclass(frozen=True, slots=True)
class PerHost:
    """How many instances of one service fit on one host, and which dimension binds."""

    count: int | None
    """``None``: no dimension limits it (zero demand)."""
    binding: str | None
    limits: dict[str, int | None]


def per_host(d: Demand, shared: float, profile: HostProfile) -> PerHost:
    """Instances per host: min over dimensions of floor((capacity - shared) / demand)."""
    cap = capacity(profile)
    avail = (cap[0], cap[1], cap[2] - shared)
    limits: dict[str, int | None] = {}
    for dim, a, need in zip(DIMENSIONS, avail, d.vector, strict=True):
        if need <= 0:
            limits[dim] = None if a >= 0 else 0
        else:
            limits[dim] = max(0, math.floor(a / need + _EPS))
    known = {k: v for k, v in limits.items() if v is not None}
    if not known:
        return PerHost(None, None, limits)
    binding = min(known, key=lambda k: (known[k], DIMENSIONS.index(k)))
    return PerHost(known[binding], binding, limits)


# ------------------------------------------------------------------- placement


@dataclass(frozen=True, slots=True)
class Item:
    """An instance as the packer sees it."""

    key: str
    service: str
    demand: Vector
    image: str | None
    image_gib: float


@dataclass
class Host:
    """One host of a profile with what was placed on it."""

    used: list[float]
    images: set[str] = field(default_factory=set)
    items: list[Item] = field(default_factory=list)


@dataclass
class Placement:
    """A packing of items onto hosts of one profile."""

    profile: HostProfile
    capacity: Vector
    hosts: list[Host]
    unplaced: list[Item]
    algorithm: str

    @property
    def used(self) -> Vector:
        u = [0.0, 0.0, 0.0]
        for h in self.hosts:
            for i in range(3):
                u[i] += h.used[i]
        return (u[0], u[1], u[2])

    def lower_bound(self) -> dict[str, int]:
        """ceil(total / capacity) per dimension, images counted once."""
        items = [it for h in self.hosts for it in h.items] + self.unplaced
        return lower_bound(items, self.capacity)

    def utilization(self) -> dict[str, float]:
        n = len(self.hosts)
        used = self.used
        return {
            dim: (used[i] / (n * self.capacity[i]) if n and self.capacity[i] > 0 else 0.0)
            for i, dim in enumerate(DIMENSIONS)
        }


def lower_bound(items: Sequence[Item], cap: Vector) -> dict[str, int]:
    total = [0.0, 0.0, 0.0]
    images: dict[str, float] = {}
    for it in items:
        for i in range(3):
            total[i] += it.demand[i]
        if it.image is not None:
            images[it.image] = it.image_gib
    total[2] += sum(images.values())
    return {
        dim: (math.ceil(total[i] / cap[i] - _EPS) if cap[i] > 0 else 0)
        for i, dim in enumerate(DIMENSIONS)
    }


def _fits(host: Host, it: Item, cap: Vector) -> bool:
    extra = it.image_gib if it.image is not None and it.image not in host.images else 0.0
    u = host.used
    d = it.demand
    return (
        u[0] + d[0] <= cap[0] + _EPS
        and u[1] + d[1] <= cap[1] + _EPS
        and u[2] + d[2] + extra <= cap[2] + _EPS
    )


def _put(host: Host, it: Item) -> None:
    extra = it.image_gib if it.image is not None and it.image not in host.images else 0.0
    host.used[0] += it.demand[0]
    host.used[1] += it.demand[1]
    host.used[2] += it.demand[2] + extra
    if it.image is not None:
        host.images.add(it.image)
    host.items.append(it)


def _size_key(it: Item, cap: Vector) -> tuple[float, float, str]:
    shares = [it.demand[i] / cap[i] if cap[i] > 0 else 0.0 for i in range(3)]
    return (-max(shares), -sum(shares), it.key)


def _pack(items: Sequence[Item], cap: Vector, best_fit: bool) -> tuple[list[Host], list[Item]]:
    order = sorted(items, key=lambda it: _size_key(it, cap))
    hosts: list[Host] = []
    unplaced: list[Item] = []
    empty = Host([0.0, 0.0, 0.0])
    # hosts that are full in some dimension for the smallest item are skipped cheaply
    for it in order:
        chosen: Host | None = None
        if best_fit:
            best = math.inf
            for h in hosts:
                if _fits(h, it, cap):
                    slack = sum(
                        (cap[i] - h.used[i] - it.demand[i]) / cap[i] for i in range(3) if cap[i]
                    )
                    if slack < best:
                        best, chosen = slack, h
        else:
            for h in hosts:
                if _fits(h, it, cap):
                    chosen = h
                    break
        if chosen is None:
            if not _fits(empty, it, cap):
                unplaced.append(it)
                continue
            chosen = Host([0.0, 0.0, 0.0])
            hosts.append(chosen)
        _put(chosen, it)
    return hosts, unplaced


def place(items: Sequence[Item], profile: HostProfile) -> Placement:
    """Pack items onto hosts of one profile: multi-dimensional first-fit decreasing and
    best-fit decreasing (items ordered by their largest share of a host); the packing with
    fewer hosts wins (first-fit on a tie)."""
    cap = capacity(profile)
    ffd, unplaced = _pack(items, cap, best_fit=False)
    result = Placement(profile, cap, ffd, unplaced, "first-fit decreasing")
    lb = max(lower_bound(items, cap).values(), default=0)
    if len(ffd) > lb:
        bfd, unplaced_b = _pack(items, cap, best_fit=True)
        if len(bfd) < len(ffd):
            result = Placement(profile, cap, bfd, unplaced_b, "best-fit decreasing")
    return result


# ------------------------------------------------------------------- a side


@dataclass(frozen=True, slots=True)
class ServiceFigures:
    """One service on one side of the comparison."""

    service: str
    runtime: str
    profile: str
    instances: int
    demand: Demand
    """Per-instance effective demand (the largest replica, per dimension)."""
    declared: Demand
    shared_gib: float
    per_host: PerHost
    startup_seconds: float
    monthly_cost: float
    """Its share of the hosts it occupies (largest share of any dimension) plus its rates
    and licences; idle host capacity is reported separately."""


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    hosts: float
    power: float
    rates: float
    licences: float

    @property
    def total(self) -> float:
        return self.hosts + self.power + self.rates + self.licences


@dataclass
class SideAnalysis:
    """Everything the report says about one side (one runtime, or one exported stack)."""

    label: str
    source: str
    runtimes: list[str]
    services: dict[str, ServiceFigures]
    placements: dict[str, Placement]
    cost: CostBreakdown
    instances: int
    unplaced: list[str]
    idle_cost: float = 0.0
    """Host and power cost of capacity no instance occupies (part of ``cost``)."""

    @property
    def hosts_needed(self) -> int:
        return sum(len(p.hosts) for p in self.placements.values())

    def lower_bound(self) -> dict[str, int]:
        out = dict.fromkeys(DIMENSIONS, 0)
        for p in self.placements.values():
            for dim, v in p.lower_bound().items():
                out[dim] += v
        return out

    def utilization(self) -> dict[str, float]:
        used = [0.0, 0.0, 0.0]
        cap = [0.0, 0.0, 0.0]
        for p in self.placements.values():
            u = p.used
            n = len(p.hosts)
            for i in range(3):
                used[i] += u[i]
                cap[i] += n * p.capacity[i]
        return {d: (used[i] / cap[i] if cap[i] else 0.0) for i, d in enumerate(DIMENSIONS)}

    @property
    def binding(self) -> str | None:
        """The fleet's binding dimension: the one with the highest lower bound (most hosts
        forced), ties broken by utilization."""
        if not self.placements or self.hosts_needed == 0:
            return None
        lb = self.lower_bound()
        util = self.utilization()
        return max(DIMENSIONS, key=lambda d: (lb[d], util[d], -DIMENSIONS.index(d)))


def _max_demand(ds: Iterable[Demand]) -> Demand:
    c = m = k = 0.0
    for d in ds:
        c, m, k = max(c, d.cpu), max(m, d.memory_mib), max(k, d.disk_gib)
    return Demand(c, m, k)


def declared_of(inst: Instance) -> Demand:
    return Demand(
        inst.declared_vcpus or inst.vcpus,
        inst.declared_memory_mib or inst.memory_mib,
        inst.declared_disk_gib if inst.declared_disk_gib is not None else inst.disk_gib,
    )


def analyse(
    fp: Footprint, cost: CostSpec, ov: OverheadModel, label: str | None = None
) -> SideAnalysis:
    """Demand, per-host density, fleet placement and monthly cost of one footprint."""
    prices = cost.prices
    # group instances into pools: one pool per host profile
    pools: dict[str, list[Item]] = defaultdict(list)
    by_service: dict[str, list[tuple[Instance, Demand, HostProfile]]] = defaultdict(list)
    rates = 0.0
    vms = 0
    for inst in fp.instances:
        profile = cost.profile_for_host(inst.host)
        d = demand(inst, ov, profile)
        by_service[inst.service].append((inst, d, profile))
        pools[profile.name].append(
            Item(inst.urn or inst.name, inst.service, d.vector, inst.image, shared_gib(inst, ov))
        )
        rates += (
            d.cpu * prices.per_vcpu_monthly
            + d.memory_mib / 1024.0 * prices.per_memory_gib_monthly
            + d.disk_gib * prices.per_disk_gib_monthly
        )
        vms += inst.runtime == "vm"
    placements = {name: place(items, cost.profile(name)) for name, items in sorted(pools.items())}

    # host cost, split over the instances on each host by their dominant share
    service_cost: dict[str, float] = defaultdict(float)
    host_cost = power_cost = image_rates = idle = 0.0
    for name, p in placements.items():
        price = prices.hosts[name]
        power = price.power_watts / 1000.0 * HOURS_PER_MONTH * prices.price_per_kwh
        per_host_cost = price.monthly + power
        host_cost += price.monthly * len(p.hosts)
        power_cost += power * len(p.hosts)
        for h in p.hosts:
            image_rates += (
                sum(next(it.image_gib for it in h.items if it.image == img) for img in h.images)
                * prices.per_disk_gib_monthly
            )
            # each instance pays for the share of the host it occupies (its largest
            # share of any dimension); what nobody occupies is idle capacity
            shares = [
                max(it.demand[i] / p.capacity[i] if p.capacity[i] else 0.0 for i in range(3))
                for it in h.items
            ]
            scale = max(1.0, sum(shares))
            for it, s in zip(h.items, shares, strict=True):
                service_cost[it.service] += per_host_cost * s / scale
            idle += per_host_cost * (1.0 - sum(shares) / scale)
    licences = vms * prices.vm_licence_monthly
    services: dict[str, ServiceFigures] = {}
    for svc, rows in sorted(by_service.items()):
        profile = rows[0][2]
        d = _max_demand(r[1] for r in rows)
        shared = max(shared_gib(r[0], ov) for r in rows)
        direct = sum(
            r[1].cpu * prices.per_vcpu_monthly
            + r[1].memory_mib / 1024.0 * prices.per_memory_gib_monthly
            + r[1].disk_gib * prices.per_disk_gib_monthly
            + (prices.vm_licence_monthly if r[0].runtime == "vm" else 0.0)
            for r in rows
        )
        runtimes = sorted({r[0].runtime for r in rows})
        services[svc] = ServiceFigures(
            service=svc,
            runtime="+".join(runtimes),
            profile=profile.name,
            instances=len(rows),
            demand=d,
            declared=_max_demand(declared_of(r[0]) for r in rows),
            shared_gib=shared,
            per_host=per_host(d, shared, profile),
            startup_seconds=max(startup_seconds(r[0], ov, r[2]) for r in rows),
            monthly_cost=service_cost.get(svc, 0.0) + direct,
        )
    unplaced = sorted({it.service for p in placements.values() for it in p.unplaced})
    return SideAnalysis(
        label=label or fp.source,
        source=fp.source,
        runtimes=fp.runtimes,
        services=services,
        placements=placements,
        cost=CostBreakdown(host_cost, power_cost, rates + image_rates, licences),
        idle_cost=idle,
        instances=len(fp.instances),
        unplaced=unplaced,
    )
