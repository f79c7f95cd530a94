"""From a raw measurement to the report (JSON, markdown, chart) and the calibration file.

Pure except for :func:`render_chart` (matplotlib, Agg) and :func:`write_outputs`. The raw
record is what :class:`twinstack.measure.runner.Runner` returns: per runtime, per instance,
bytes and seconds as the kernel and the daemons reported them.

Definitions used throughout (also printed in the report):

* **create → healthy**: from the harness issuing an instance's create (container create /
  domain define+start) to its first healthy signal (Docker's first passing health check,
  timestamped by Docker; the VM's ``twinstack-ready <svc>`` console line);
* **memory per instance** (host view): container = cgroup working set (usage - inactive
  file) + its shim's RSS; VM = the qemu process's RSS (PSS alongside);
* **VM overhead** = qemu RSS - RSS of the guest-RAM mapping (what the guest really
  touched), i.e. the VMM's own memory;
* **disk per instance**: container = writable layer (``SizeRw``) + log file; VM = root
  clone + data volumes + cloud-init seed (allocated bytes); the image / base is shared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from components.cost import Calibration
from twinstack.charts import chart_format, pyplot, save_figure
from twinstack.measure import stats
from twinstack.measure.stats import GIB

TARGET_RATIO = 1.10
TCG_LABEL = (
    "TCG (software emulation, libvirt domain type `qemu`): VM figures are NOT representative "
    "of a KVM host; expect much faster boots and less QEMU memory under KVM"
)


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(float(x), nd)


def _summ(values: Iterable[float | None]) -> dict[str, Any] | None:
    s = stats.summarize(v for v in values if v is not None)
    return s.to_json() if s else None


def _get(d: Mapping[str, Any] | None, *keys: str) -> Any:
    cur: Any = d
    for k in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(k)
    return cur


# ---------------------------------------------------------------- per instance


def container_instance(inst: Mapping[str, Any]) -> dict[str, Any]:
    """Derived per-instance figures of one container (MiB, GiB, cores, seconds)."""
    out: dict[str, Any] = {
        "name": inst["name"],
        "status": inst.get("status"),
        "createToHealthyS": inst.get("createToHealthyS"),
        "createToRunningS": inst.get("createToRunningS"),
    }
    cg = _get(inst, "memory", "cgroup")
    if cg:
        mem = stats.CgroupMemory(
            int(cg["version"]), int(cg["usage"]), int(cg["anon"]), int(cg["file"]),
            int(cg["inactiveFile"]), int(cg["shmem"]),
        )  # fmt: skip
        shim = _get(inst, "memory", "shim") or {}
        out["memory"] = {
            **mem.to_json(),
            "shimRssMib": _r(stats.mib(shim["rss"])) if "rss" in shim else None,
            "shimPssMib": _r(stats.mib(shim["pss"])) if "pss" in shim else None,
            "hostMib": _r(stats.mib(mem.working_set + int(shim.get("rss", 0)))),
            "privateMib": _r(stats.mib(mem.anon)),
        }
    cpu = inst.get("cpu")
    if cpu:
        w = float(cpu["windowS"])
        out["cpu"] = {
            "windowS": w,
            "cores": _r(stats.cores(float(cpu["cgroupCpuS"]), w), 5),
            "shimCores": _r(stats.cores(float(cpu["shimCpuS"]), w), 5)
            if "shimCpuS" in cpu
            else None,
        }
    disk = inst.get("disk")
    if disk:
        out["disk"] = {
            "sizeRwMib": _r(stats.mib(disk["sizeRw"]), 3),
            "sizeRootFsMib": _r(stats.mib(disk["sizeRootFs"]), 2),
            "logMib": _r(stats.mib(disk["log"]), 3),
            "perInstanceMib": _r(stats.mib(disk["sizeRw"] + disk["log"]), 3),
        }
    return out


def vm_instance(inst: Mapping[str, Any]) -> dict[str, Any]:
    """Derived per-instance figures of one VM (MiB, GiB, cores, seconds)."""
    out: dict[str, Any] = {
        "name": inst["name"],
        "status": inst.get("status"),
        "createToHealthyS": inst.get("createToHealthyS"),
        "upperBound": bool(inst.get("upperBound", False)),
    }
    mem = inst.get("memory")
    if mem:
        q = mem.get("qemu") or {}
        ram = mem.get("guestRamRss")
        gm = mem.get("guestMeminfo") or {}
        bal = mem.get("balloon") or {}
        rss = int(q.get("Rss", 0))
        out["memory"] = {
            "guestMib": _r(stats.mib(mem["guestBytes"])),
            "qemuRssMib": _r(stats.mib(rss)),
            "qemuPssMib": _r(stats.mib(q.get("Pss", 0))),
            "sharedMib": _r(stats.mib(q.get("Shared_Clean", 0) + q.get("Shared_Dirty", 0))),
            "privateMib": _r(stats.mib(q.get("Private_Clean", 0) + q.get("Private_Dirty", 0))),
            "anonHugePagesMib": _r(stats.mib(q.get("AnonHugePages", 0))),
            "ksmMib": _r(stats.mib(q.get("KSM", 0))),
            "guestRamTouchedMib": _r(stats.mib(ram)) if ram is not None else None,
            "vmmOverheadMib": _r(stats.mib(rss - ram)) if ram is not None else None,
            "guestUsedMib": _r(stats.mib(stats.meminfo_used(gm)))
            if "MemTotal" in gm and "MemAvailable" in gm
            else None,
            "guestMemTotalMib": _r(stats.mib(gm["MemTotal"])) if "MemTotal" in gm else None,
            "balloon": {k: _r(stats.mib(v)) for k, v in sorted(bal.items())} or None,
            "hostMib": _r(stats.mib(rss)),
        }
    cpu = inst.get("cpu")
    if cpu:
        w = float(cpu["windowS"])
        out["cpu"] = {"windowS": w, "cores": _r(stats.cores(float(cpu["qemuCpuS"]), w), 5)}
    disk = inst.get("disk")
    if disk:
        per = int(disk["clone"]) + int(disk["data"]) + int(disk["cloudInit"])
        out["disk"] = {
            "cloneMib": _r(stats.mib(disk["clone"]), 2),
            "cloneCapacityGib": _r(stats.gib(disk["cloneCapacity"]), 2),
            "dataMib": _r(stats.mib(disk["data"]), 2),
            "cloudInitMib": _r(stats.mib(disk["cloudInit"]), 3),
            "perInstanceMib": _r(stats.mib(per), 2),
        }
    return out


def _col(instances: list[dict[str, Any]], *keys: str) -> list[float]:
    out = []
    for i in instances:
        v = _get(i, *keys)
        if v is not None:
            out.append(float(v))
    return out


# ---------------------------------------------------------------- runtimes


def runtime_section(runtime: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Summaries of one runtime (tool instances, baseline and ratio)."""
    derive = vm_instance if runtime == "vm" else container_instance
    insts = [derive(i) for i in raw.get("instances", [])]
    healthy = [i for i in insts if i.get("createToHealthyS") is not None]
    acc = raw.get("acceleration")
    sec: dict[str, Any] = {
        "runtime": runtime,
        "acceleration": acc,
        "representative": acc != "tcg",
        "applyToAllHealthyS": raw.get("applyToAllHealthyS"),
        "instances": insts,
        "healthy": len(healthy),
        "createToHealthyS": _summ(_col(insts, "createToHealthyS")),
        "memoryPerInstanceMib": {
            k: _summ(_col(insts, "memory", k))
            for k in (
                (
                    "hostMib",
                    "usageMib",
                    "workingSetMib",
                    "privateMib",
                    "fileMib",
                    "shimRssMib",
                    "shimPssMib",
                )
                if runtime == "container"
                else (
                    "hostMib",
                    "qemuRssMib",
                    "qemuPssMib",
                    "privateMib",
                    "sharedMib",
                    "guestRamTouchedMib",
                    "vmmOverheadMib",
                    "guestUsedMib",
                    "ksmMib",
                )
            )
        },
        "idleCpuCores": _summ(_col(insts, "cpu", "cores")),
        "diskPerInstanceMib": _summ(_col(insts, "disk", "perInstanceMib")),
    }
    if runtime == "container":
        sec["createToRunningS"] = _summ(_col(insts, "createToRunningS"))
        sec["shimIdleCpuCores"] = _summ(_col(insts, "cpu", "shimCores"))
        img = raw.get("image") or {}
        sec["shared"] = {
            "image": img.get("ref"),
            "imageMib": _r(stats.mib(img.get("sizeBytes", 0)), 1),
            "note": "image layers are stored once and shared by every container of the "
            "image; each container adds only its writable layer (SizeRw) and its log",
        }
    else:
        base = raw.get("baseImage") or {}
        sec["shared"] = {
            "image": base.get("source"),
            "imageMib": _r(stats.mib(base.get("allocation", 0)), 1),
            "note": "each VM's root disk is a qcow2 clone backed by one shared base volume; "
            "the clone holds only what the guest wrote",
        }
    bl = raw.get("baseline")
    if bl:
        bins = [derive(i) for i in bl.get("instances", [])]
        tool_s = stats.summarize(_col(insts, "createToHealthyS"))
        bare_s = stats.summarize(_col(bins, "createToHealthyS"))
        rt = stats.ratio(tool_s, bare_s, TARGET_RATIO)
        sec["baseline"] = {
            "method": bl.get("method"),
            "instances": [
                {
                    k: i.get(k)
                    for k in (
                        "name",
                        "status",
                        "createToHealthyS",
                        "createToRunningS",
                        "upperBound",
                    )
                    if k in i
                }
                for i in bins
            ],
            "createToHealthyS": bare_s.to_json() if bare_s else None,
            "ratio": rt.to_json() if rt else None,
        }
    return sec


# ---------------------------------------------------------------- calibration


def _median(values: list[float]) -> float | None:
    return stats.median(values)


def calibration_doc(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The calibration file (valid per :class:`components.cost.Calibration`)."""
    host = raw.get("host") or {}
    overheads: dict[str, Any] = {"vm": {}, "container": {}}
    samples: dict[str, int] = {}
    refs = raw.get("calibrationRefs") or {}

    def put(runtime: str, path: tuple[str, ...], values: list[float], nd: int = 3) -> None:
        med = _median(values)
        if med is None:
            return
        cur = overheads[runtime]
        for p in path[:-1]:
            cur = cur.setdefault(p, {})
        cur[path[-1]] = round(max(0.0, med), nd)
        samples[".".join((runtime, *path))] = len(values)

    rts = raw.get("runtimes") or {}
    c = rts.get("container")
    if c:
        insts = [container_instance(i) for i in c.get("instances", [])]
        put("container", ("shimMemoryMib",), _col(insts, "memory", "shimRssMib"), 2)
        put("container", ("cpuCores",), _col(insts, "cpu", "shimCores"), 4)
        put("container", ("startupSeconds",), _col(insts, "createToRunningS"), 3)
        img = c.get("image") or {}
        if img.get("sizeBytes"):
            ref = refs.get("container") or img.get("ref")
            overheads["container"]["images"] = {ref: round(img["sizeBytes"] / GIB, 4)}
            samples["container.images"] = 1
    v = rts.get("vm")
    if v:
        acc = "kvm" if v.get("acceleration") == "kvm" else "tcg"
        insts = [vm_instance(i) for i in v.get("instances", [])]
        put("vm", (acc, "memoryMib"), _col(insts, "memory", "vmmOverheadMib"), 1)
        put("vm", (acc, "cpuCores"), _col(insts, "cpu", "cores"), 4)
        put("vm", (acc, "startupSeconds"), _col(insts, "createToHealthyS"), 2)
        put("vm", ("guestOsMemoryMib",), _col(insts, "memory", "guestUsedMib"), 1)
        put("vm", ("guestOsDiskGib",), [x / 1024 for x in _col(insts, "disk", "cloneMib")], 4)
        put("vm", ("cloudInitDiskMib",), _col(insts, "disk", "cloudInitMib"), 3)
        base = v.get("baseImage") or {}
        if base.get("allocation"):
            ref = refs.get("vm") or base.get("source")
            overheads["vm"]["images"] = {ref: round(base["allocation"] / GIB, 4)}
            samples["vm.images"] = 1
    machine = (
        f"{host.get('hostname', '?')} ({host.get('cpuModel') or 'unknown CPU'}, "
        f"{host.get('cpus', '?')} CPUs, {round(host.get('memoryMib', 0) / 1024, 1)} GiB RAM, "
        f"Linux {host.get('kernel', '?')}, cgroup v{host.get('cgroupVersion', '?')}"
    )
    if v:
        machine += f", VMs under {'KVM' if v.get('acceleration') == 'kvm' else 'TCG'}"
    machine += ")"
    notes = [
        f"twinstack measure of service {raw.get('service')!r} of stack {raw.get('stack')!r}, "
        f"{raw.get('count')} instances per runtime; figures are medians over instances.",
        "container.shimMemoryMib = containerd-shim RSS; container.cpuCores = shim idle CPU; "
        "container.startupSeconds = create → running; vm.<acc>.memoryMib = qemu RSS - RSS of "
        "its guest-RAM mapping; vm.<acc>.cpuCores = qemu idle CPU (guest idle included); "
        "vm.<acc>.startupSeconds = create → twinstack-ready; vm.guestOsMemoryMib = guest "
        "MemTotal - MemAvailable with the service running; vm.guestOsDiskGib = root clone "
        "allocation after boot.",
    ]
    if v and v.get("acceleration") != "kvm":
        notes.append(
            "VM figures were measured under TCG (software emulation) and are written as "
            "vm.tcg.*: they are not representative of KVM hosts."
        )
    doc: dict[str, Any] = {
        "version": 1,
        "measuredAt": raw.get("measuredAt"),
        "machine": machine,
        "tool": raw.get("tool"),
        "overheads": {k: val for k, val in overheads.items() if val},
        "samples": samples,
        "notes": " ".join(notes),
    }
    Calibration.model_validate(doc)  # what `twinstack diff --calibration` will accept
    return doc


# ---------------------------------------------------------------- model comparison


def model_comparison(
    plans: Mapping[str, Mapping[str, Any]],
    calibration: Mapping[str, Any],
    measured: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Per runtime: the density model's figures and per-instance memory demand with its
    built-in defaults vs with this calibration, next to the measured host memory.

    ``plans`` are the measurement's own plan documents (one per runtime); ``measured`` the
    runtime sections of the report.
    """
    from components.cost import CostSpec
    from twinstack.density.footprint import read_footprint
    from twinstack.density.model import demand
    from twinstack.density.overhead import DEFAULTS, OverheadModel

    cal = Calibration.model_validate(calibration)
    profile = CostSpec.model_validate({}).profiles[0]
    out: dict[str, Any] = {}
    for runtime, doc in plans.items():
        fp = read_footprint(dict(doc), f"measure plan ({runtime})")
        insts = [i for i in fp.instances if i.runtime == runtime]
        if not insts:
            continue
        inst = insts[0]
        d_def = demand(inst, OverheadModel(), profile)
        cal_model = OverheadModel(calibration=cal, calibration_source="calibration")
        d_cal = demand(inst, cal_model, profile)
        figs = []
        for key, fig in cal_model.figures.items():
            if not key.startswith(runtime + ".") or not fig.measured:
                continue
            if key in DEFAULTS and fig.source.startswith("measured ("):
                default = DEFAULTS[key].value
                figs.append(
                    {
                        "figure": key,
                        "unit": fig.unit,
                        "default": default,
                        "measured": round(fig.value, 4),
                        "deltaPercent": _r((default - fig.value) / fig.value * 100, 1)
                        if fig.value
                        else None,
                    }
                )
        host = _get(measured.get(runtime), "memoryPerInstanceMib", "hostMib", "p50")
        out[runtime] = {
            "accelerator": inst.accelerator or (profile.accelerator if runtime == "vm" else None),
            "declaredMemoryMib": inst.declared_memory_mib,
            "demandMemoryMib": {
                "defaults": _r(d_def.memory_mib, 1),
                "calibrated": _r(d_cal.memory_mib, 1),
            },
            "measuredHostMemoryMib": host,
            "defaultVsMeasuredPercent": _r((d_def.memory_mib - host) / host * 100, 1)
            if host
            else None,
            "figures": figs,
        }
    return out


# ---------------------------------------------------------------- the report


def build_report(
    raw: Mapping[str, Any],
    calibration: Mapping[str, Any],
    *,
    model: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON report."""
    rts = raw.get("runtimes") or {}
    sections = {rt: runtime_section(rt, rts[rt]) for rt in ("container", "vm") if rt in rts}
    return {
        "version": 1,
        "tool": raw.get("tool"),
        "measuredAt": raw.get("measuredAt"),
        "stack": raw.get("stack"),
        "service": raw.get("service"),
        "count": raw.get("count"),
        "windowS": raw.get("windowS"),
        "declared": raw.get("declared"),
        "host": raw.get("host"),
        "notes": list(raw.get("notes") or []),
        "runtimes": sections,
        "model": dict(model or {}),
        "calibration": dict(calibration),
        "files": dict(files or {}),
    }


def _fmt(x: Any, nd: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The markdown report."""
    host = doc.get("host") or {}
    secs: dict[str, Any] = doc.get("runtimes") or {}
    lines = [
        f"# twinstack measure: `{doc.get('service')}` of stack `{doc.get('stack')}`",
        "",
        f"{doc.get('count')} instances per runtime, measured {doc.get('measuredAt')} by "
        f"{doc.get('tool')}.",
        "",
        f"Host: {host.get('hostname')} — {host.get('cpuModel')}, {host.get('cpus')} CPUs, "
        f"{host.get('memoryMib')} MiB RAM, Linux {host.get('kernel')}, cgroup "
        f"v{host.get('cgroupVersion')}, KSM run={_get(host, 'ksm', 'run')}.",
        "",
    ]
    vm = secs.get("vm")
    if vm:
        acc = vm.get("acceleration")
        lines += (
            [f"> **Acceleration: {TCG_LABEL}.**", ""]
            if acc == "tcg"
            else ["> Acceleration: KVM (hardware virtualization).", ""]
        )
    decl = doc.get("declared") or {}
    lines += [
        f"Declared per instance: {decl.get('vcpus')} vCPU, {decl.get('memoryMib')} MiB, "
        f"{decl.get('diskGib')} GiB.",
        "",
        "## Create → healthy (seconds)",
        "",
        _row(["", "n", "min", "p50", "p95", "max", "bare p50", "tool / bare (p50)", "≤ 1.10x"]),
        _row(["---"] + ["---:"] * 8),
    ]
    for rt, sec in secs.items():
        s = sec.get("createToHealthyS") or {}
        bl = sec.get("baseline") or {}
        b = bl.get("createToHealthyS") or {}
        ratio = bl.get("ratio") or {}
        label = rt + (" (TCG)" if sec.get("acceleration") == "tcg" else "")
        lines.append(
            _row(
                [
                    label,
                    s.get("n", 0),
                    _fmt(s.get("min")),
                    _fmt(s.get("p50")),
                    _fmt(s.get("p95")),
                    _fmt(s.get("max")),
                    _fmt(b.get("p50")),
                    _fmt(ratio.get("p50"), 3),
                    ("yes" if ratio.get("withinTarget") else "no") if ratio else "-",
                ]
            )
        )
    lines.append("")
    for rt, sec in secs.items():
        bl = sec.get("baseline")
        if bl:
            per = ", ".join(
                f"{i['name']} {_fmt(i.get('createToHealthyS'))} s" for i in bl["instances"]
            )
            lines.append(f"* {rt} baseline: `{bl.get('method')}` — {per}")
        per = ", ".join(
            f"{i['name']} {_fmt(i.get('createToHealthyS'))} s"
            + (" (upper bound)" if i.get("upperBound") else "")
            for i in sec["instances"]
        )
        lines.append(f"* {rt} tool instances: {per}")
        if rt == "container" and sec.get("createToRunningS"):
            lines.append(
                f"* container create → running p50 {_fmt(sec['createToRunningS']['p50'])} s "
                "(healthy waits for the first health check, `intervalS` after start)"
            )
    lines += [
        "",
        "Clock: from the create call to the first healthy signal (Docker's first passing "
        "health check; the `twinstack-ready` console line). The ratio is reported, not "
        "enforced.",
        "",
        "## Memory per instance (MiB, p50 over instances)",
        "",
        _row(["", "host view", "private", "shared", "detail"]),
        _row(["---", "---:", "---:", "---:", "---"]),
    ]
    c = secs.get("container")
    if c:
        m = c["memoryPerInstanceMib"]
        lines.append(
            _row(
                [
                    "container",
                    _fmt(_get(m, "hostMib", "p50")),
                    _fmt(_get(m, "privateMib", "p50")),
                    _fmt(_get(m, "fileMib", "p50")),
                    f"cgroup usage {_fmt(_get(m, 'usageMib', 'p50'))}, working set "
                    f"{_fmt(_get(m, 'workingSetMib', 'p50'))}, shim RSS "
                    f"{_fmt(_get(m, 'shimRssMib', 'p50'))} / PSS {_fmt(_get(m, 'shimPssMib', 'p50'))}",
                ]
            )
        )
    if vm:
        m = vm["memoryPerInstanceMib"]
        lines.append(
            _row(
                [
                    "vm" + (" (TCG)" if vm.get("acceleration") == "tcg" else ""),
                    _fmt(_get(m, "hostMib", "p50")),
                    _fmt(_get(m, "privateMib", "p50")),
                    _fmt(_get(m, "sharedMib", "p50")),
                    f"qemu RSS {_fmt(_get(m, 'qemuRssMib', 'p50'))} / PSS "
                    f"{_fmt(_get(m, 'qemuPssMib', 'p50'))}; guest RAM touched "
                    f"{_fmt(_get(m, 'guestRamTouchedMib', 'p50'))}; VMM overhead "
                    f"{_fmt(_get(m, 'vmmOverheadMib', 'p50'))}; guest's own view (MemTotal - "
                    f"MemAvailable) {_fmt(_get(m, 'guestUsedMib', 'p50'))}; KSM "
                    f"{_fmt(_get(m, 'ksmMib', 'p50'))}",
                ]
            )
        )
    lines += [
        "",
        "Host view: container = cgroup working set + shim RSS; VM = qemu RSS. Container "
        "*shared* is page cache charged to the cgroup (image-layer pages are shared between "
        "containers of one image); VM *shared* is qemu's Shared_Clean + Shared_Dirty. KSM "
        f"is {'on' if _get(host, 'ksm', 'run') == 1 else 'off'} on this host "
        f"(pages_sharing {_get(host, 'ksm', 'pages_sharing')}).",
        "",
        "## Disk and idle CPU per instance",
        "",
        _row(
            [
                "",
                "disk per instance (MiB, p50)",
                "shared image (MiB, once per host)",
                f"idle CPU (cores, p50 over {doc.get('windowS')} s)",
            ]
        ),
        _row(["---", "---:", "---:", "---:"]),
    ]
    for rt, sec in secs.items():
        lines.append(
            _row(
                [
                    rt,
                    _fmt(_get(sec, "diskPerInstanceMib", "p50")),
                    _fmt(_get(sec, "shared", "imageMib"), 1),
                    _fmt(_get(sec, "idleCpuCores", "p50"), 4),
                ]
            )
        )
    lines += [
        "",
        "Disk: container = writable layer (SizeRw) + json log; VM = root clone + data volumes "
        "+ cloud-init seed (allocated). Idle CPU: container cgroup CPU time (includes the "
        "periodic health check) / VM qemu utime+stime, over the window.",
        "",
    ]
    model = doc.get("model") or {}
    if model:
        lines += [
            "## Default model vs measurement",
            "",
            _row(
                [
                    "",
                    "model demand, defaults (MiB)",
                    "model demand, calibrated (MiB)",
                    "measured host memory (MiB)",
                    "defaults vs measured",
                ]
            ),
            _row(["---", "---:", "---:", "---:", "---:"]),
        ]
        for rt, mv in model.items():
            pct = mv.get("defaultVsMeasuredPercent")
            lines.append(
                _row(
                    [
                        rt,
                        _fmt(_get(mv, "demandMemoryMib", "defaults"), 1),
                        _fmt(_get(mv, "demandMemoryMib", "calibrated"), 1),
                        _fmt(mv.get("measuredHostMemoryMib"), 1),
                        f"{pct:+.0f}%" if pct is not None else "-",
                    ]
                )
            )
        lines += [
            "",
            "The model's demand reserves the declared memory (a limit) plus overheads; the "
            "measured figure is what an idle instance really holds.",
            "",
            _row(["figure", "default", "measured", "default vs measured"]),
            _row(["---", "---:", "---:", "---:"]),
        ]
        for rt, mv in model.items():
            for f in mv.get("figures", []):
                pct = f.get("deltaPercent")
                lines.append(
                    _row(
                        [
                            f"`{f['figure']}` ({f['unit']})",
                            _fmt(f["default"], 3),
                            _fmt(f["measured"], 3),
                            f"{pct:+.0f}%" if pct is not None else "-",
                        ]
                    )
                )
            del rt
        lines.append("")
    notes = doc.get("notes") or []
    if notes:
        lines += ["## Notes", ""] + [f"* {n}" for n in notes] + [""]
    files = doc.get("files") or {}
    if files:
        lines += ["## Files", ""] + [f"* {k}: `{v}`" for k, v in files.items()] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------- chart


def render_chart(doc: Mapping[str, Any], path: Path) -> None:
    """Boot-time distribution (tool and bare) and memory per instance, VM vs container."""
    fmt = chart_format(path, "chart")
    plt = pyplot()

    secs: dict[str, Any] = doc.get("runtimes") or {}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.8))
    groups: list[tuple[str, list[float]]] = []
    for rt, sec in secs.items():
        tag = " (TCG)" if sec.get("acceleration") == "tcg" else ""
        groups.append((f"{rt}{tag}\ntool", _col(sec["instances"], "createToHealthyS")))
        bl = sec.get("baseline")
        if bl:
            groups.append((f"{rt}{tag}\nbare", _col(bl["instances"], "createToHealthyS")))
    for k, (_label, vals) in enumerate(groups):
        if vals:
            ax1.plot([k] * len(vals), vals, "o", alpha=0.7)
            ax1.hlines(stats.percentile(vals, 50), k - 0.25, k + 0.25, colors="black")
    ax1.set_xticks(range(len(groups)))
    ax1.set_xticklabels([g[0] for g in groups])
    ax1.set_ylabel("create → healthy (s)")
    if any(v for _g, v in groups):
        ax1.set_yscale("log")
    ax1.set_title("Boot time per instance (line: median)")
    names: list[str] = []
    base: list[float] = []
    top: list[float] = []
    colors: list[str] = []
    for rt, sec in secs.items():
        for inst in sec["instances"]:
            m = inst.get("memory") or {}
            names.append(f"{rt}: {inst['name']}")
            if rt == "vm":
                base.append(float(m.get("guestRamTouchedMib") or 0))
                top.append(float(m.get("hostMib") or 0) - base[-1])
                colors.append("tab:blue")
            else:
                base.append(float(m.get("workingSetMib") or 0))
                top.append(float(m.get("shimRssMib") or 0))
                colors.append("tab:orange")
    x = list(range(len(names)))
    ax2.bar(x, base, color=colors, label="guest RAM touched / cgroup working set")
    ax2.bar(x, top, bottom=base, color=colors, alpha=0.45, hatch="//",
            label="qemu overhead / shim RSS")  # fmt: skip
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, rotation=30, ha="right")
    ax2.set_ylabel("host memory per instance (MiB)")
    ax2.set_title("Memory per instance (blue: VM, orange: container)")
    ax2.legend(fontsize=8)
    fig.suptitle(f"twinstack measure — {doc.get('service')} of {doc.get('stack')}")
    fig.tight_layout()
    save_figure(fig, path, fmt, "chart")


def write_outputs(
    out_dir: Path,
    raw: Mapping[str, Any],
    plans: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Write measure.json, measure.md, measure.png and calibration.json into ``out_dir``."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "report (JSON)": str(out_dir / "measure.json"),
        "report (markdown)": str(out_dir / "measure.md"),
        "chart": str(out_dir / "measure.png"),
        "calibration": str(out_dir / "calibration.json"),
        "raw samples": str(out_dir / "raw.json"),
    }
    cal = calibration_doc(raw)
    sections = {
        rt: runtime_section(rt, (raw.get("runtimes") or {})[rt])
        for rt in ("container", "vm")
        if rt in (raw.get("runtimes") or {})
    }
    model = model_comparison(plans, cal, sections)
    doc = build_report(raw, cal, model=model, files=files)
    (out_dir / "raw.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    (out_dir / "calibration.json").write_text(json.dumps(cal, indent=2) + "\n", encoding="utf-8")
    (out_dir / "measure.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (out_dir / "measure.md").write_text(render_markdown(doc), encoding="utf-8")
    render_chart(doc, out_dir / "measure.png")
    return doc
