"""Pure statistics and parsers for ``twinstack measure``: no I/O, no daemons.

Everything here takes text or numbers already read from ``/proc``, ``/sys`` or a daemon
and returns numbers, so the unit tests run it on recorded samples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * 1024 * 1024


# ------------------------------------------------------------------------ summaries


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks
    (numpy's default ``linear`` method), so p50 of two samples is their mean."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class Summary:
    """min, p50, p95, max (and mean, count) of a sample."""

    n: int
    min: float
    p50: float
    p95: float
    max: float
    mean: float

    def to_json(self, digits: int = 3) -> dict[str, float | int]:
        return {
            "n": self.n,
            "min": round(self.min, digits),
            "p50": round(self.p50, digits),
            "p95": round(self.p95, digits),
            "max": round(self.max, digits),
            "mean": round(self.mean, digits),
        }


def summarize(values: Iterable[float]) -> Summary | None:
    """Summary of ``values`` (``None`` when there are none)."""
    xs = [float(v) for v in values]
    if not xs:
        return None
    return Summary(
        n=len(xs),
        min=min(xs),
        p50=percentile(xs, 50),
        p95=percentile(xs, 95),
        max=max(xs),
        mean=sum(xs) / len(xs),
    )


def median(values: Iterable[float]) -> float | None:
    xs = list(values)
    return percentile(xs, 50) if xs else None


@dataclass(frozen=True, slots=True)
class Ratio:
    """Tool vs bare baseline on create → healthy."""

    p50: float
    mean: float
    max: float
    target: float

    @property
    def within_target(self) -> bool:
        return self.p50 <= self.target

    def to_json(self) -> dict[str, float | bool]:
        return {
            "p50": round(self.p50, 3),
            "mean": round(self.mean, 3),
            "max": round(self.max, 3),
            "target": self.target,
            "withinTarget": self.within_target,
        }


def ratio(tool: Summary | None, bare: Summary | None, target: float = 1.10) -> Ratio | None:
    """tool / bare per statistic; ``None`` when either side has no sample or a zero."""
    if tool is None or bare is None or min(bare.p50, bare.mean, bare.max) <= 0:
        return None
    return Ratio(tool.p50 / bare.p50, tool.mean / bare.mean, tool.max / bare.max, target)


def cores(delta_cpu_seconds: float, window_seconds: float) -> float:
    """Average CPU cores used over a window from a CPU-time delta."""
    if window_seconds <= 0:
        raise ValueError("window must be positive")
    return max(0.0, delta_cpu_seconds) / window_seconds


# -------------------------------------------------------------------------- parsers


_KV = re.compile(r"^([A-Za-z_()0-9]+):\s+(\d+)(?:\s+kB)?\s*$")


def parse_kb_table(text: str) -> dict[str, int]:
    """``Key:   123 kB`` lines (``/proc/<pid>/smaps_rollup``, ``/proc/meminfo``) → bytes."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _KV.match(line.strip())
        if m:
            scale = KIB if line.rstrip().endswith("kB") else 1
            out[m.group(1)] = int(m.group(2)) * scale
    return out


@dataclass(frozen=True, slots=True)
class SmapsEntry:
    """One mapping of ``/proc/<pid>/smaps``: its header and sizes in bytes."""

    header: str
    perms: str
    pathname: str
    size: int
    rss: int
    pss: int
    anonymous: int


_MAP_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+\S+\s+\S+\s+\d+\s*(.*)$")


def parse_smaps(text: str) -> list[SmapsEntry]:
    """``/proc/<pid>/smaps`` → mappings with Size, Rss, Pss, Anonymous (bytes)."""
    maps: list[SmapsEntry] = []
    header = ""
    perms = path = ""
    fields: dict[str, int] = {}

    def flush() -> None:
        if header:
            maps.append(
                SmapsEntry(header, perms, path, fields.get("Size", 0), fields.get("Rss", 0),
                         fields.get("Pss", 0), fields.get("Anonymous", 0))
            )  # fmt: skip

    for line in text.splitlines():
        m = _MAP_HEADER.match(line)
        if m:
            flush()
            header, perms, path = line, m.group(3), m.group(4).strip()
            fields = {}
            continue
        kv = _KV.match(line.strip())
        if kv:
            fields[kv.group(1)] = int(kv.group(2)) * KIB
    flush()
    return maps


def guest_ram_mapping(maps: Sequence[SmapsEntry], guest_bytes: int) -> SmapsEntry | None:
    """QEMU's guest-RAM block: the anonymous, non-executable mapping whose size is the
    guest's memory (QEMU maps ``-m`` as one block; under TCG a second, executable block
    is the translation cache). Falls back to the largest such mapping not smaller than
    the guest memory."""
    candidates = [
        m for m in maps if not m.pathname and "x" not in m.perms and m.perms.startswith("rw")
    ]
    exact = [m for m in candidates if m.size == guest_bytes]
    if exact:
        return max(exact, key=lambda m: m.rss)
    bigger = [m for m in candidates if m.size >= guest_bytes]
    return min(bigger, key=lambda m: m.size) if bigger else None


def proc_stat_ticks(text: str) -> int:
    """utime + stime (clock ticks) from ``/proc/<pid>/stat`` (the comm field may hold
    spaces and parentheses; fields count from the last ``)``)."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): utime is field 14, stime field 15
    return int(rest[11]) + int(rest[12])


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (cgroup ``memory.stat``, ``cpu.stat``) → ints."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


@dataclass(frozen=True, slots=True)
class CgroupMemory:
    """A container's memory as its cgroup reports it (bytes)."""

    version: int
    usage: int
    """memory.current (v2) / memory.usage_in_bytes (v1): everything charged, page cache too."""
    anon: int
    """Anonymous memory: private to the container."""
    file: int
    """Page cache charged to the container (image layers and written files; pages of a
    shared image layer are shared between containers through the page cache)."""
    inactive_file: int
    shmem: int

    @property
    def working_set(self) -> int:
        """usage - inactive file (what ``docker stats`` and the kubelet call working set)."""
        return max(0, self.usage - self.inactive_file)

    def to_json(self) -> dict[str, Any]:
        return {
            "cgroupVersion": self.version,
            "usageMib": round(self.usage / MIB, 2),
            "workingSetMib": round(self.working_set / MIB, 2),
            "anonMib": round(self.anon / MIB, 2),
            "fileMib": round(self.file / MIB, 2),
            "shmemMib": round(self.shmem / MIB, 2),
        }


def cgroup_memory(version: int, usage_text: str, stat_text: str) -> CgroupMemory:
    """From ``memory.current``/``memory.usage_in_bytes`` and ``memory.stat`` (v2 or v1)."""
    usage = int(usage_text.strip())
    st = parse_flat_keyed(stat_text)
    if version == 2:
        return CgroupMemory(2, usage, st.get("anon", 0), st.get("file", 0),
                            st.get("inactive_file", 0), st.get("shmem", 0))  # fmt: skip

    # v1: total_* include descendants; rss is anonymous, cache is page cache (incl. shmem)
    def g(key: str) -> int:
        return st.get(f"total_{key}", st.get(key, 0))

    return CgroupMemory(1, usage, g("rss"), g("cache"), g("inactive_file"), g("shmem"))


def cgroup_cpu_usec(version: int, text: str) -> int:
    """CPU time in µs: ``cpu.stat`` ``usage_usec`` (v2) or ``cpuacct.usage`` ns (v1)."""
    if version == 2:
        return parse_flat_keyed(text)["usage_usec"]
    return int(text.strip()) // 1000


def cgroup_path(proc_cgroup: str, controller: str) -> tuple[int, str]:
    """(version, path) of a process's cgroup for ``controller`` from ``/proc/<pid>/cgroup``:
    a v1 hierarchy naming the controller wins; else the unified (``0::``) one."""
    unified = None
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            unified = path
        elif controller in controllers.split(","):
            return 1, path
    if unified is None:
        raise ValueError(f"no cgroup for {controller!r} in {proc_cgroup!r}")
    return 2, unified


def meminfo_used(meminfo: Mapping[str, int]) -> int:
    """MemTotal - MemAvailable (bytes): what the guest OS and its services use."""
    return int(meminfo["MemTotal"]) - int(meminfo["MemAvailable"])


def mib(n_bytes: float) -> float:
    return n_bytes / MIB


def gib(n_bytes: float) -> float:
    return n_bytes / GIB
