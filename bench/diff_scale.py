"""Benchmark: `twinstack diff` on 1,000 services spread over 50 host profiles.

Builds two recorded plans (the same services as VMs and as containers, in the plan JSON
format of docs/plan-format.md), then times what ``twinstack diff`` does after planning:
read both footprints, analyse (demand, per-host density, placement, cost), build the
report and render it as JSON, text and markdown. Prints wall time and peak memory.

    .venv/bin/python bench/diff_scale.py [--services 1000] [--profiles 50] [--hosts-per-profile 1]

Target: <= 5 s and <= 1 GiB on top of planning.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.cost import CostSpec
from twinstack.density.footprint import read_footprint
from twinstack.density.overhead import OverheadModel
from twinstack.density.report import compare, render_markdown, render_text

GIB = 1024**3
STACK = "bench"
P = f"urn:pulumi:{STACK}::twinstack::"


def cost_spec(profiles: int, hosts_per_profile: int) -> CostSpec:
    rng = random.Random(7)
    profs, prices, mapping = [], {}, {}
    for p in range(profiles):
        cores = rng.choice([16, 32, 48, 64, 96, 128])
        mem = rng.choice([64, 128, 256, 384, 512, 1024])
        name = f"p{p:02d}"
        profs.append(
            {
                "name": name,
                "cores": cores,
                "memoryGib": mem,
                "diskGib": rng.choice([500, 1000, 2000, 4000]),
                "cpuOvercommit": rng.choice([1, 2, 4, 8]),
                "memoryOvercommit": rng.choice([1.0, 1.0, 1.2]),
            }
        )
        prices[name] = {"monthly": 40 + cores * 4 + mem * 0.5, "powerWatts": 100 + cores * 4}
        for h in range(hosts_per_profile):
            mapping[f"h{p:02d}-{h}"] = name
    return CostSpec.model_validate(
        {
            "profiles": profs,
            "hostProfile": mapping,
            "prices": {"hosts": prices, "vmLicenceMonthly": 3},
        }
    )


def plans(services: int, hosts: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = random.Random(11)
    vm: list[dict[str, Any]] = []
    ctr: list[dict[str, Any]] = []
    bases: set[str] = set()
    for s in range(services):
        name = f"svc{s:04d}"
        host = hosts[s % len(hosts)]
        vcpus = rng.choice([0.25, 0.5, 1, 2, 4])
        mem = rng.choice([128, 256, 512, 1024, 2048, 4096])
        disk = rng.choice([2, 4, 8, 20, 50])
        replicas = rng.choice([1, 1, 2, 3])
        svc_urn = f"{P}twinstack:service:Service::{name}"
        for doc in (vm, ctr):
            doc.append(
                {
                    "urn": svc_urn,
                    "type": "twinstack:service:Service",
                    "name": name,
                    "custom": False,
                    "parent": None,
                    "inputs": {},
                }
            )
        vr = f"{P}twinstack:service:Service$twinstack:service:VmRealization::{name}-vm"
        cr = (
            f"{P}twinstack:service:Service$twinstack:service:ContainerRealization::{name}-container"
        )
        vm.append(
            {
                "urn": vr,
                "type": "twinstack:service:VmRealization",
                "name": f"{name}-vm",
                "custom": False,
                "parent": svc_urn,
                "inputs": {},
            }
        )
        ctr.append(
            {
                "urn": cr,
                "type": "twinstack:service:ContainerRealization",
                "name": f"{name}-container",
                "custom": False,
                "parent": svc_urn,
                "inputs": {},
            }
        )
        pool = f"{STACK}-data-{host}"
        base = f"{pool}/{STACK}-base-img.qcow2"
        if base not in bases:
            bases.add(base)
            vm.append(
                {
                    "urn": f"{P}libvirt:index/volume:Volume::base-{host}",
                    "type": "libvirt:index/volume:Volume",
                    "name": f"base-{host}",
                    "custom": True,
                    "parent": None,
                    "inputs": {
                        "name": f"{STACK}-base-img.qcow2",
                        "pool": pool,
                        "source": "/var/lib/twinstack/images/debian.qcow2",
                        "format": "qcow2",
                    },
                }
            )
        image = f"twinstack/{STACK}-{name}:abc123"
        ctr.append(
            {
                "urn": f"{cr}$docker:index/remoteImage:RemoteImage::{name}-container-image",
                "type": "docker:index/remoteImage:RemoteImage",
                "name": f"{name}-container-image",
                "custom": True,
                "parent": cr,
                "inputs": {"name": image, "build": {"context": f".twinstack/build/{name}"}},
            }
        )
        for i in range(replicas):
            inst = f"{STACK}-{name}-{i}"
            root = f"{inst}-root.qcow2"
            vm.append(
                {
                    "urn": f"{vr}$libvirt:index/volume:Volume::{name}-vm-{i}-root",
                    "type": "libvirt:index/volume:Volume",
                    "name": f"{name}-vm-{i}-root",
                    "custom": True,
                    "parent": vr,
                    "inputs": {
                        "name": root,
                        "pool": pool,
                        "size": disk * GIB,
                        "baseVolumeId": base,
                        "format": "qcow2",
                    },
                }
            )
            facts = {
                "twinstack": {
                    "stack": STACK,
                    "service": name,
                    "runtime": "vm",
                    "replica": i,
                    "host": host,
                    "vcpus": vcpus,
                    "memoryMib": mem,
                    "diskGib": disk,
                }
            }
            vm.append(
                {
                    "urn": f"{vr}$libvirt:index/domain:Domain::{name}-vm-{i}",
                    "type": "libvirt:index/domain:Domain",
                    "name": f"{name}-vm-{i}",
                    "custom": True,
                    "parent": vr,
                    "inputs": {
                        "name": inst,
                        "type": "kvm",
                        "memory": mem,
                        "vcpu": max(1, int(-(-vcpus // 1))),
                        "disks": [{"volumeId": f"{pool}/{root}"}],
                        "description": json.dumps(facts, sort_keys=True),
                    },
                }
            )
            labels = {
                "twinstack.stack": STACK,
                "twinstack.service": name,
                "twinstack.runtime": "container",
                "twinstack.replica": str(i),
                "twinstack.host": host,
                "twinstack.vcpus": str(vcpus),
                "twinstack.memory-mib": str(mem),
                "twinstack.disk-gib": str(disk),
            }
            ctr.append(
                {
                    "urn": f"{cr}$docker:index/container:Container::{name}-container-{i}",
                    "type": "docker:index/container:Container",
                    "name": f"{name}-container-{i}",
                    "custom": True,
                    "parent": cr,
                    "inputs": {
                        "name": inst,
                        "image": image,
                        "memory": mem,
                        "cpus": f"{vcpus:g}",
                        "logDriver": "json-file",
                        "logOpts": {"max-size": "10m", "max-file": "3"},
                        "labels": [{"label": k, "value": v} for k, v in labels.items()],
                    },
                }
            )
    return (
        {"version": 1, "stack": STACK, "runtime": "vm", "resources": vm},
        {"version": 1, "stack": STACK, "runtime": "container", "resources": ctr},
    )


def run(services: int, profiles: int, hosts_per_profile: int) -> dict[str, Any]:
    cost = cost_spec(profiles, hosts_per_profile)
    vm_plan, ctr_plan = plans(services, sorted(cost.host_profile))
    gc.collect()
    phases: dict[str, float] = {}
    t0 = last = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        phases[name] = now - last
        last = now

    a = read_footprint(vm_plan, "vm")
    b = read_footprint(ctr_plan, "container")
    lap("read")
    report = compare(a, b, cost, OverheadModel.from_cost(cost), labels=("vm", "container"))
    lap("model")
    doc = report.to_json()
    text = json.dumps(doc)
    lap("json")
    render_text(doc)
    lap("text")
    render_markdown(doc)
    lap("markdown")
    wall = time.perf_counter() - t0
    return {
        "services": services,
        "profiles": profiles,
        "instances": len(a.instances) + len(b.instances),
        "resources": len(vm_plan["resources"]) + len(ctr_plan["resources"]),
        "hostsNeeded": {"vm": report.a.hosts_needed, "container": report.b.hosts_needed},
        "wallSeconds": wall,
        "phases": phases,
        "jsonBytes": len(text),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--profiles", type=int, default=50)
    ap.add_argument("--hosts-per-profile", type=int, default=1)
    args = ap.parse_args()
    res = run(args.services, args.profiles, args.hosts_per_profile)
    # a second run under tracemalloc for the peak of Python allocations by the diff itself
    tracemalloc.start()
    run(args.services, args.profiles, args.hosts_per_profile)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(
        f"diff of {res['services']} services ({res['instances']} instances, "
        f"{res['resources']} resources) on {res['profiles']} host profiles: "
        f"hosts needed vm={res['hostsNeeded']['vm']} container={res['hostsNeeded']['container']}"
    )
    print(f"wall time: {res['wallSeconds']:.2f} s (target <= 5 s)")
    print("  " + ", ".join(f"{k} {v:.2f} s" for k, v in res["phases"].items()))
    print(
        f"peak memory: {peak / 2**20:.1f} MiB traced Python allocations; "
        f"{rss_mib:.0f} MiB peak RSS of the whole process (target <= 1 GiB)"
    )
    ok = res["wallSeconds"] <= 5.0 and rss_mib <= 1024
    print("within target" if ok else "OVER TARGET")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
