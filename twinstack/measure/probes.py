"""Reading what the kernel and the daemons say about running instances (I/O only).

Each probe returns plain numbers; the arithmetic lives in :mod:`twinstack.measure.stats`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from twinstack.measure import stats

CGROUP_ROOT = Path("/sys/fs/cgroup")
KSM_DIR = Path("/sys/kernel/mm/ksm")
LIBVIRT_RUN = Path("/run/libvirt/qemu")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


# ------------------------------------------------------------------------- host


def ksm_state(root: Path = KSM_DIR) -> dict[str, int]:
    """``/sys/kernel/mm/ksm/*`` counters (empty when the kernel has no KSM)."""
    out: dict[str, int] = {}
    for key in ("run", "pages_shared", "pages_sharing", "pages_unshared", "full_scans"):
        with contextlib.suppress(OSError, ValueError):
            out[key] = int(_read(root / key).strip())
    return out


def host_facts() -> dict[str, Any]:
    """Hostname, CPU model, CPUs, memory, kernel, cgroup version, KSM, /dev/kvm."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in _read(Path("/proc/cpuinfo")).splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem = stats.parse_kb_table(_read(Path("/proc/meminfo"))).get("MemTotal", 0)
    cgv = 2 if (CGROUP_ROOT / "cgroup.controllers").is_file() else 1
    return {
        "hostname": socket.gethostname(),
        "cpuModel": cpu_model,
        "cpus": os.cpu_count() or 0,
        "memoryMib": round(stats.mib(mem)),
        "kernel": platform.release(),
        "cgroupVersion": cgv,
        "ksm": ksm_state(),
        "kvmDevice": os.path.exists("/dev/kvm"),
    }


# ------------------------------------------------------------------------- processes


def proc_memory(pid: int) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup`` in bytes (Rss, Pss, Shared_*, Private_*, KSM, ...)."""
    return stats.parse_kb_table(_read(Path(f"/proc/{pid}/smaps_rollup")))


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    ticks = stats.proc_stat_ticks(_read(Path(f"/proc/{pid}/stat")))
    return ticks / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------- containers


@dataclass
class ContainerProbe:
    """Where a container's numbers live: its init pid, cgroup dirs, shim pid."""

    name: str
    pid: int
    cgroup_version: int
    memory_dir: Path
    cpu_file: Path
    shim_pid: int | None
    size_rw: int = 0
    size_root_fs: int = 0
    image: str = ""
    image_size: int = 0
    created: float = 0.0
    started: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def memory(self) -> stats.CgroupMemory:
        if self.cgroup_version == 2:
            usage = _read(self.memory_dir / "memory.current")
        else:
            usage = _read(self.memory_dir / "memory.usage_in_bytes")
        return stats.cgroup_memory(
            self.cgroup_version, usage, _read(self.memory_dir / "memory.stat")
        )

    def cpu_seconds(self) -> float:
        return stats.cgroup_cpu_usec(self.cgroup_version, _read(self.cpu_file)) / 1e6


def docker_time(text: str) -> float:
    """Docker's RFC 3339 timestamps (nanoseconds, ``Z``) → epoch seconds."""
    if not text or text.startswith("0001-"):
        return 0.0
    main, _, frac = text.rstrip("Z").partition(".")
    tz = ""
    for sep in ("+", "-"):
        if sep in frac:
            frac, _, rest = frac.partition(sep)
            tz = sep + rest
    base = datetime.fromisoformat(main + (tz or "+00:00"))
    return base.timestamp() + (float("0." + frac) if frac else 0.0)


def first_healthy_at(state: dict[str, Any]) -> float | None:
    """Epoch seconds at which Docker's first passing health check ended."""
    health = state.get("Health") or {}
    for entry in health.get("Log") or []:
        if entry.get("ExitCode") == 0:
            return docker_time(str(entry.get("End", "")))
    return None


def container_sizes(client: Any, name: str) -> tuple[int, int]:
    """(SizeRw, SizeRootFs) of a container: its writable layer, and that plus its image."""
    for c in client.api.containers(all=True, size=True, filters={"name": f"^/{name}$"}):
        return int(c.get("SizeRw") or 0), int(c.get("SizeRootFs") or 0)
    return 0, 0


def container_probe(client: Any, name: str) -> ContainerProbe:
    """Locate a running container's cgroup, shim and disk figures."""
    import psutil

    info = client.api.inspect_container(name)
    sizes = container_sizes(client, name)
    pid = int(info["State"]["Pid"])
    text = _read(Path(f"/proc/{pid}/cgroup"))
    version, mem_path = stats.cgroup_path(text, "memory")
    if version == 2:
        mem_dir = CGROUP_ROOT / mem_path.lstrip("/")
        cpu_file = mem_dir / "cpu.stat"
    else:
        mem_dir = CGROUP_ROOT / "memory" / mem_path.lstrip("/")
        _, cpu_path = stats.cgroup_path(text, "cpuacct")
        cpu_file = next(
            (
                CGROUP_ROOT / d / cpu_path.lstrip("/") / "cpuacct.usage"
                for d in ("cpuacct", "cpu,cpuacct", "cpu")
                if (CGROUP_ROOT / d / cpu_path.lstrip("/") / "cpuacct.usage").is_file()
            ),
            CGROUP_ROOT / "cpuacct" / cpu_path.lstrip("/") / "cpuacct.usage",
        )
    shim: int | None = None
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(pid).parent()
        if parent is not None and parent.name().startswith("containerd-shim"):
            shim = parent.pid
    image_id = str(info.get("Image", ""))
    image_size = 0
    with contextlib.suppress(Exception):
        image_size = int(client.api.inspect_image(image_id)["Size"])
    return ContainerProbe(
        name=name,
        pid=pid,
        cgroup_version=version,
        memory_dir=mem_dir,
        cpu_file=cpu_file,
        shim_pid=shim,
        size_rw=sizes[0],
        size_root_fs=sizes[1],
        image=str(info["Config"].get("Image", "")),
        image_size=image_size,
        created=docker_time(str(info.get("Created", ""))),
        started=docker_time(str(info["State"].get("StartedAt", ""))),
    )


# ------------------------------------------------------------------------- VMs


def qemu_pid(name: str, run_dir: Path = LIBVIRT_RUN) -> int:
    """The qemu process of a running domain (libvirt's pid file)."""
    return int(_read(run_dir / f"{name}.pid").strip())


def guest_ram(pid: int, guest_bytes: int) -> stats.SmapsEntry | None:
    """QEMU's guest-RAM mapping (how much of the guest's RAM the host really backs)."""
    return stats.guest_ram_mapping(
        stats.parse_smaps(_read(Path(f"/proc/{pid}/smaps"))), guest_bytes
    )


def enable_balloon_stats(dom: Any, period_s: int = 2) -> bool:
    """Ask the virtio balloon driver to report guest memory stats every ``period_s``."""
    from twinstack.realize.daemons import libvirt_module

    libvirt = libvirt_module()
    try:
        dom.setMemoryStatsPeriod(period_s, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        return True
    except libvirt.libvirtError:
        return False


BALLOON_KIB = ("actual", "available", "unused", "usable", "rss", "disk_caches", "swap_in",
               "swap_out")  # fmt: skip
"""memoryStats keys in KiB (the others are event counts)."""


def balloon_stats(dom: Any) -> dict[str, int]:
    """``virsh dommemstat``: libvirt's memoryStats (KiB values) → bytes."""
    from twinstack.realize.daemons import libvirt_module

    libvirt = libvirt_module()
    try:
        raw = dom.memoryStats()
    except libvirt.libvirtError:
        return {}
    return {str(k): int(v) * 1024 for k, v in raw.items() if k in BALLOON_KIB}


def guest_meminfo(dom: Any) -> dict[str, int]:
    """The guest's own ``/proc/meminfo`` through the qemu guest agent (bytes)."""
    from twinstack.realize.daemons import libvirt_module
    from twinstack.realize.guest import agent_ready, guest_exec

    libvirt = libvirt_module()
    deadline = time.monotonic() + 60
    while not agent_ready(dom):
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.5)
    try:
        res = guest_exec(dom, ["/bin/cat", "/proc/meminfo"], timeout_s=30)
    except libvirt.libvirtError:
        return {}
    return stats.parse_kb_table(res.stdout) if res.exit_code == 0 else {}


def volume_allocation(conn: Any, pool: str, name: str) -> tuple[int, int, str] | None:
    """(capacity, allocation, path) of a libvirt volume, ``None`` when it is missing."""
    from twinstack.realize.daemons import libvirt_module

    libvirt = libvirt_module()
    try:
        vol = conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
        _t, cap, alloc = vol.info()
        return int(cap), int(alloc), str(vol.path())
    except libvirt.libvirtError:
        return None


def file_allocation(path: Path) -> int:
    """Bytes a file really occupies on disk (allocated blocks, not its apparent size)."""
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0
