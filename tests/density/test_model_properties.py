"""Invariants of the density model, checked with hypothesis."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from components.cost import HostProfile, Reserved
from twinstack.density.footprint import Instance
from twinstack.density.model import (
    DIMENSIONS,
    Item,
    capacity,
    counterpart,
    demand,
    lower_bound,
    per_host,
    place,
    shared_gib,
)
from twinstack.density.overhead import OverheadModel

OV = OverheadModel()  # built-in defaults only


@st.composite
def profiles(draw: st.DrawFn) -> HostProfile:
    cores = draw(st.integers(2, 256))
    mem = draw(st.floats(8, 4096))
    disk = draw(st.floats(100, 20000))
    return HostProfile(
        name="p",
        cores=cores,
        memory_gib=mem,
        disk_gib=disk,
        reserved=Reserved(
            cores=draw(st.floats(0, cores / 2)),
            memory_gib=draw(st.floats(0, mem / 2)),
            disk_gib=draw(st.floats(0, disk / 2)),
        ),
        cpu_overcommit=draw(st.floats(0.5, 16)),
        memory_overcommit=draw(st.floats(0.5, 2)),
        accelerator=draw(st.sampled_from(["kvm", "tcg"])),
    )


@st.composite
def containers(draw: st.DrawFn) -> Instance:
    """A container as the components declare it, from a spec's resources."""
    vcpus = draw(st.floats(0.05, 32))
    mem = draw(st.integers(16, 65536))
    disk = draw(st.integers(1, 2000))
    log = draw(st.one_of(st.none(), st.floats(0, 2)))
    return Instance(
        name="c-0",
        urn="urn:c-0",
        service="svc",
        runtime="container",
        replica=0,
        host="h",
        vcpus=vcpus,
        memory_mib=float(mem),
        disk_gib=0.0,
        declared_vcpus=vcpus,
        declared_memory_mib=float(mem),
        declared_disk_gib=float(disk),
        image=draw(st.sampled_from([None, "img:a", "img:b"])),
        log_cap_gib=log,
    )


instances = st.one_of(containers(), containers().map(lambda c: counterpart(c, "vm")))


def count(n: int | None) -> float:
    return math.inf if n is None else n


@settings(max_examples=300)
@given(instances, profiles(), st.floats(1, 65536))
def test_more_memory_never_raises_density(
    inst: Instance, profile: HostProfile, extra: float
) -> None:
    bigger = replace(
        inst,
        memory_mib=inst.memory_mib + extra,
        declared_memory_mib=(inst.declared_memory_mib or 0) + extra,
    )
    small = per_host(demand(inst, OV, profile), shared_gib(inst, OV), profile)
    large = per_host(demand(bigger, OV, profile), shared_gib(bigger, OV), profile)
    assert count(large.count) <= count(small.count)


@settings(max_examples=300)
@given(containers(), profiles())
def test_vm_never_packs_denser_than_container_with_default_overheads(
    ctr: Instance, profile: HostProfile
) -> None:
    vm = counterpart(ctr, "vm")
    # the container in this property runs the same spec with the default log bound
    ctr = replace(ctr, log_cap_gib=None, image=None)
    as_vm = per_host(demand(vm, OV, profile), shared_gib(vm, OV), profile)
    as_ctr = per_host(demand(ctr, OV, profile), shared_gib(ctr, OV), profile)
    assert count(as_vm.count) <= count(as_ctr.count)
    for dim, a, b in zip(
        DIMENSIONS, demand(vm, OV, profile).vector, demand(ctr, OV, profile).vector, strict=True
    ):
        assert a >= b, dim


items = st.lists(
    st.builds(
        lambda i, c, m, d, img: Item(f"i{i}", f"s{i % 7}", (c, m, d), img, 0.5 if img else 0.0),
        st.integers(0, 10_000),
        st.floats(0, 64),
        st.floats(0, 300_000),
        st.floats(0, 3000),
        st.sampled_from([None, "a", "b", "c"]),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(items, profiles())
def test_placement_never_overfills_a_host(its: list[Item], profile: HostProfile) -> None:
    p = place(its, profile)
    cap = capacity(profile)
    placed = [it for h in p.hosts for it in h.items]
    assert len(placed) + len(p.unplaced) == len(its)
    for h in p.hosts:
        images = {it.image: it.image_gib for it in h.items if it.image is not None}
        used = [sum(it.demand[i] for it in h.items) for i in range(3)]
        used[2] += sum(images.values())
        for i in range(3):
            assert used[i] <= cap[i] * (1 + 1e-9) + 1e-6
            assert math.isclose(used[i], h.used[i], rel_tol=1e-9, abs_tol=1e-6)
        assert h.items, "no empty hosts"


@settings(max_examples=200, deadline=None)
@given(items, profiles())
def test_hosts_needed_at_least_the_lower_bound(its: list[Item], profile: HostProfile) -> None:
    p = place(its, profile)
    placed = [it for h in p.hosts for it in h.items]
    for dim, bound in lower_bound(placed, capacity(profile)).items():
        assert len(p.hosts) >= bound, dim


@settings(max_examples=200, deadline=None)
@given(instances, profiles(), st.integers(1, 40))
def test_per_host_count_agrees_with_placement(
    inst: Instance, profile: HostProfile, extra: int
) -> None:
    d = demand(inst, OV, profile)
    shared = shared_gib(inst, OV)
    n = per_host(d, shared, profile).count
    if n is None or n == 0 or n > 2000:
        return
    copies = [Item(f"i{k}", "s", d.vector, "img", shared) for k in range(n + extra)]
    p = place(copies, profile)
    assert len(p.hosts[0].items) == n  # exactly n fit on one host ...
    assert len(p.hosts) >= 2  # ... and one more needs a second host
