"""``twinstack migrate``: move a service's volume contents between its container and its VM.

Per replica: stop the source, then the target (nothing writes during the copy); copy
every declared volume; check that the target's manifest equals the source's; start
both and wait until each is healthy. The source is only ever read. On any failure,
Ctrl-C or SIGTERM, the source is started again and the error says what state each side
is in; a journal in ``.twinstack/migrate/`` records what was stopped, so a run killed
outright (SIGKILL) is reported, and completed, by the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Any

from components import renderers
from components.spec import ServiceSpec
from twinstack.migrate import ext4, sides
from twinstack.migrate.manifest import Manifest, MigrateError, differences
from twinstack.migrate.sides import Twin, VolumePair

ESTIMATE_MB_S = 30.0
"""Copy rate used for ``--dry-run`` estimates (MB/s; measured here, BENCHMARKS.md)."""
READY_TIMEOUT_S = float(os.environ.get("TWINSTACK_VM_TIMEOUT_S", "600"))

Progress = Callable[[str, int | None], Callable[[int], None]]
"""(description, total bytes or None) → a callable that advances by n bytes."""


def _no_progress(_d: str, _t: int | None) -> Callable[[int], None]:
    return lambda _n: None


class Interrupted(BaseException):
    """SIGTERM, raised where the process is, so cleanup runs as for Ctrl-C."""


@dataclass
class VolumeResult:
    name: str
    mountPath: str
    dockerVolume: str
    vmDisk: str
    files: int
    bytes: int
    seconds: float = 0.0
    mbPerS: float = 0.0
    verified: bool = False
    skipped: list[str] = field(default_factory=list)


@dataclass
class ReplicaResult:
    replica: int
    source: str
    target: str
    volumes: list[VolumeResult] = field(default_factory=list)
    readySeconds: dict[str, float] = field(default_factory=dict)


@dataclass
class MigrateResult:
    stack: str
    service: str
    to: str
    dryRun: bool
    replicas: list[ReplicaResult] = field(default_factory=list)
    seconds: float = 0.0
    estimatedSeconds: float | None = None
    resumed: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------- the journal


class Journal:
    """``.twinstack/migrate/<stack>--<service>.json``: a lock, and what a run has stopped."""

    def __init__(self, root: Path, stack: str, service: str) -> None:
        self.path = root / ".twinstack" / "migrate" / f"{stack}--{service}.json"
        self.state: dict[str, Any] = {}

    def previous(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def acquire(self) -> str | None:
        """Take the lock; returns a note on an interrupted earlier run, if there was one."""
        prev = self.previous()
        note = None
        if prev is not None:
            pid = prev.get("pid")
            if isinstance(pid, int) and _alive(pid):
                raise MigrateError(
                    f"another twinstack migrate (pid {pid}) is running for this service "
                    f"({self.path})"
                )
            note = (
                f"an earlier migrate (to {prev.get('to')}) did not complete ({prev.get('phase')})"
                f"; stopped then: {', '.join(prev.get('stopped', [])) or 'none'}"
                f"; written then: {', '.join(prev.get('written', [])) or 'nothing'}"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.state = {"pid": os.getpid(), "stopped": [], "written": [], "phase": "start"}
        self.save()
        return note

    def update(self, **kw: Any) -> None:
        self.state.update(kw)
        self.save()

    def add(self, key: str, value: str) -> None:
        self.state.setdefault(key, []).append(value)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, sort_keys=True))
        tmp.replace(self.path)

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    def handler(_sig: int, _frame: FrameType | None) -> None:
        raise Interrupted("terminated (SIGTERM)")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# --------------------------------------------------------------------- copying


def _qemu_img_convert(src: Path, src_fmt: str, dst: Path, dst_fmt: str) -> None:
    ext4._run(
        ["qemu-img", "convert", "-f", src_fmt, "-O", dst_fmt, str(src), str(dst)],
        f"converting the disk image ({src_fmt} → {dst_fmt})",
    )


def container_to_vm(
    twin: Twin, pair: VolumePair, work: Path, conn: Any, progress: Progress,
    written: Callable[[], None],
) -> tuple[Manifest, Manifest]:  # fmt: skip
    """The volume's files → a fresh ext4 image with the disk's label → the VM's disk."""
    tree = work / "tree"
    tree.mkdir()
    src = sides.read_container_volume(
        twin.container, pair.mount_path, tree, progress(f"read {pair.docker_volume}", None)
    )
    _type, capacity, _alloc = pair.libvirt_volume.info()
    raw = work / "disk.raw"
    ext4.build_image(tree, raw, label=pair.label, size_bytes=capacity, root=src.entries["."])
    check = work / "check"
    check.mkdir()
    built, _paths = ext4.read_image(raw, check)
    diffs = differences(src, built)
    if diffs:
        raise MigrateError(
            f"the disk image built from Docker volume {pair.docker_volume} differs from it "
            f"({'; '.join(diffs)}); the VM's disk was not touched"
        )
    fmt = sides.volume_format(pair.libvirt_volume)
    upload = raw
    if fmt != "raw":
        upload = work / f"disk.{fmt}"
        _qemu_img_convert(raw, "raw", upload, fmt)
    size = upload.stat().st_size
    written()
    sent = sides.upload_volume(
        conn, pair.libvirt_volume, upload, progress(f"upload {pair.disk_name}", size)
    )
    got = sides.volume_digest(conn, pair.libvirt_volume, size, progress("verify", size))
    if got != sent:
        raise MigrateError(f"the VM disk {pair.libvirt_path} does not read back as uploaded")
    return src, built


def read_vm_disk(
    pair: VolumePair, work: Path, conn: Any, on_bytes: Callable[[int], None]
) -> tuple[Manifest, dict[str, Path]]:
    """The VM data disk's files (dumped under ``work``), once its label is the volume's."""
    fmt = sides.volume_format(pair.libvirt_volume)
    image = work / f"disk.{fmt}"
    sides.download_volume(conn, pair.libvirt_volume, image, on_bytes)
    raw = image
    if fmt != "raw":
        raw = work / "disk.raw"
        _qemu_img_convert(image, fmt, raw, "raw")
    try:
        label = ext4.image_label(raw)
    except MigrateError:
        raise MigrateError(
            f"the VM's data disk {pair.libvirt_path} holds no ext4 file system yet (the VM "
            "formats it on its first boot); nothing to migrate, the container was not touched"
        ) from None
    if label != pair.label:
        raise MigrateError(
            f"the VM's data disk {pair.libvirt_path} has file system label {label!r}, not the "
            f"volume's {pair.label!r}; refusing to copy it (the container was not touched)"
        )
    dump = work / "dump"
    dump.mkdir()
    return ext4.read_image(raw, dump)


def vm_to_container(
    twin: Twin, pair: VolumePair, work: Path, conn: Any, docker: Any, stack: str,
    progress: Progress, written: Callable[[], None],
) -> tuple[Manifest, Manifest]:  # fmt: skip
    """The VM's disk → its ext4 files (label checked) → the Docker volume, emptied first."""
    src, paths = read_vm_disk(pair, work, conn, progress(f"download {pair.disk_name}", None))
    top = PurePosixPath(pair.mount_path).name
    written()
    with sides.emptied_volume(docker, twin.container, pair, stack) as helper:
        sides.put_tar(helper, str(PurePosixPath(pair.mount_path).parent), src, paths, top,
                      progress(f"write {pair.docker_volume}", src.bytes))  # fmt: skip
        got = sides.read_container_volume(helper, pair.mount_path, None)
    return src, got


# --------------------------------------------------------------------- readiness


def wait_ready_container(docker: Any, twin: Twin) -> float:
    from twinstack.realize import wait_container

    h = wait_container(docker, twin.container_name, timeout_s=180)
    if not h.healthy:
        raise MigrateError(f"container {twin.container_name} did not become healthy: {h}")
    return h.seconds


def wait_ready_vm(svc: ServiceSpec, twin: Twin, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Guest agent up, then the service's own health unit passes (or the unit is active)."""
    from twinstack.realize.daemons import libvirt_module
    from twinstack.realize.guest import agent_ready, guest_exec

    libvirt = libvirt_module()
    probe = (
        ["/bin/systemctl", "start", renderers.health_unit_name(svc)]
        if svc.health_check is not None
        else ["/bin/systemctl", "is-active", "--quiet", f"{svc.name}.service"]
    )
    start = time.monotonic()
    last = "guest agent not connected"
    while time.monotonic() - start < timeout_s:
        if not twin.domain.isActive():
            raise MigrateError(f"domain {twin.domain_name} stopped while booting")
        if agent_ready(twin.domain):
            try:
                res = guest_exec(twin.domain, probe, timeout_s=30)
                if res.exit_code == 0:
                    return time.monotonic() - start
                last = (res.stderr or res.stdout).strip()[-200:] or f"exit {res.exit_code}"
            except libvirt.libvirtError as exc:
                last = exc.get_error_message()
        time.sleep(1.0)
    raise MigrateError(f"VM {twin.domain_name} was not healthy within {timeout_s:.0f} s ({last})")


# --------------------------------------------------------------------- the command


def migrate(
    *,
    docker: Any,
    conn: Any,
    root: Path,
    stack: str,
    svc: ServiceSpec,
    to: str,
    replicas: list[int] | None,
    dry_run: bool = False,
    progress: Progress = _no_progress,
    log: Callable[[str], None] = lambda _m: None,
) -> MigrateResult:
    if to not in ("vm", "container"):
        raise MigrateError(f"--to: {to!r} is not allowed; allowed: vm, container")
    if not svc.volumes:
        raise MigrateError(f"service {svc.name} declares no volumes: nothing to migrate")
    twins = sides.find_twins(docker, conn, stack, svc, replicas)
    result = MigrateResult(stack, svc.name, to, dry_run)
    start = time.monotonic()
    if dry_run:
        _dry_run(twins, to, conn, result)
        return result
    journal = Journal(root, stack, svc.name)
    result.resumed = journal.acquire()
    if result.resumed:
        log(f"note: {result.resumed}; running it again")
    try:
        with _sigterm_raises():
            for twin in twins:
                result.replicas.append(_migrate_twin(twin, to, svc, stack, docker, conn,
                                                     journal, progress, log))  # fmt: skip
    finally:
        if journal.state.get("phase") == "done" or journal.state.get("pid") == os.getpid():
            journal.release()
    result.seconds = round(time.monotonic() - start, 2)
    return result


def _dry_run(twins: list[Twin], to: str, conn: Any, result: MigrateResult) -> None:
    total = 0
    for twin in twins:
        rr = ReplicaResult(
            twin.replica,
            f"container {twin.container_name}" if to == "vm" else f"VM {twin.domain_name}",
            f"VM {twin.domain_name}" if to == "vm" else f"container {twin.container_name}",
        )
        for pair in twin.volumes:
            with tempfile.TemporaryDirectory(prefix="twinstack-migrate-") as tmp:
                if to == "vm":
                    m = sides.read_container_volume(twin.container, pair.mount_path, None)
                else:  # read the running VM's disk: an estimate, not a copy
                    m, _ = read_vm_disk(pair, Path(tmp), conn, lambda _n: None)
            rr.volumes.append(
                VolumeResult(
                    pair.name,
                    pair.mount_path,
                    pair.docker_volume,
                    pair.libvirt_path,
                    m.files,
                    m.bytes,
                    skipped=m.skipped,
                )
            )
            total += m.bytes
        result.replicas.append(rr)
    result.estimatedSeconds = round(total / (ESTIMATE_MB_S * 1e6) + 1.0, 1)


def _migrate_twin(
    twin: Twin, to: str, svc: ServiceSpec, stack: str, docker: Any, conn: Any,
    journal: Journal, progress: Progress, log: Callable[[str], None],
) -> ReplicaResult:  # fmt: skip
    to_vm = to == "vm"
    source = f"container {twin.container_name}" if to_vm else f"VM {twin.domain_name}"
    target = f"VM {twin.domain_name}" if to_vm else f"container {twin.container_name}"
    rr = ReplicaResult(twin.replica, source, target)

    def stop_src() -> None:
        if to_vm:
            sides.stop_container(twin.container)
        else:
            sides.stop_domain(twin.domain)

    def stop_tgt() -> None:
        if to_vm:
            sides.stop_domain(twin.domain)
        else:
            sides.stop_container(twin.container)

    src_running = (
        sides.container_running(twin.container) if to_vm else sides.domain_running(twin.domain)
    )
    tgt_running = (
        sides.domain_running(twin.domain) if to_vm else sides.container_running(twin.container)
    )
    written: list[str] = []
    phase = "stopping the source"
    try:
        journal.update(phase=phase, to=to, replica=twin.replica)
        log(f"replica {twin.replica}: stopping {source}")
        if src_running:
            journal.add("stopped", source)
            stop_src()
        phase = "stopping the target"
        log(f"replica {twin.replica}: stopping {target}")
        if tgt_running:
            journal.add("stopped", target)
            stop_tgt()
        for pair in twin.volumes:
            phase = f"copying volume {pair.name}"
            journal.update(phase=phase)
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory(prefix="twinstack-migrate-") as tmp:

                def mark(pair: VolumePair = pair) -> None:
                    written.append(pair.name)
                    journal.add("written", f"{target}: {pair.name}")

                if to_vm:
                    src, got = container_to_vm(twin, pair, Path(tmp), conn, progress, mark)
                else:
                    src, got = vm_to_container(twin, pair, Path(tmp), conn, docker, stack,
                                               progress, mark)  # fmt: skip
            diffs = differences(src, got)
            if diffs:
                raise MigrateError(f"volume {pair.name}: the target differs: {'; '.join(diffs)}")
            secs = time.monotonic() - t0
            rr.volumes.append(VolumeResult(
                pair.name, pair.mount_path, pair.docker_volume, pair.libvirt_path, src.files,
                src.bytes, round(secs, 2), round(src.bytes / 1e6 / secs, 1) if secs else 0.0,
                True, src.skipped,
            ))  # fmt: skip
            log(f"replica {twin.replica}: volume {pair.name}: {src.files} files, "
                f"{src.bytes} bytes, verified")  # fmt: skip
        written.clear()  # every volume is complete and verified
        phase = "starting both"
        journal.update(phase=phase, written=[])
        _start(twin, to_vm, src=True)
        _start(twin, to_vm, src=False)
        phase = "waiting for both to be healthy"
        rr.readySeconds["container"] = round(wait_ready_container(docker, twin), 1)
        rr.readySeconds["vm"] = round(wait_ready_vm(svc, twin), 1)
        journal.update(phase="done", stopped=[], written=[])
        return rr
    except (Exception, KeyboardInterrupt, Interrupted) as exc:
        err = _failed(exc, twin, to_vm, phase, source, target, written)
        left = [target] if written else []
        if left:  # the record stays for the next run; this run is over (no pid)
            journal.update(pid=None, stopped=left, written=[f"{target}: {w}" for w in written])
        else:
            journal.release()
        raise err from None


def _start(twin: Twin, to_vm: bool, *, src: bool) -> None:
    container = to_vm == src
    if container:
        if not sides.container_running(twin.container):
            twin.container.start()
    elif not twin.domain.isActive():
        twin.domain.create()


def _failed(
    exc: BaseException, twin: Twin, to_vm: bool, phase: str, source: str, target: str,
    written: list[str],
) -> MigrateError:  # fmt: skip
    what = (
        "interrupted (Ctrl-C)"
        if isinstance(exc, KeyboardInterrupt)
        else str(exc) or type(exc).__name__
    )
    states = []
    try:
        _start(twin, to_vm, src=True)
        states.append(f"the source, {source}, is untouched and started again")
    except Exception as err:
        states.append(f"the source, {source}, is untouched but could not be started ({err})")
    if written:
        states.append(
            f"the target, {target}, is left stopped: volume(s) {', '.join(written)} partly "
            "written; run the same twinstack migrate again to complete"
        )
    else:
        done = "holds the complete, verified copy" if phase.startswith(("starting", "waiting")) \
            else "was not written"  # fmt: skip
        try:
            _start(twin, to_vm, src=False)
            states.append(f"the target, {target}, {done} and is started again")
        except Exception as err:
            states.append(f"the target, {target}, {done} but could not be started ({err})")
    return MigrateError(f"replica {twin.replica}: {phase}: {what}; " + "; ".join(states))
