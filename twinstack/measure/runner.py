"""Run a measurement: plan, apply, time, sample, baseline, tear down (real daemons).

One runtime at a time (containers first), so a booting VM does not steal CPU from a
container being timed. Per runtime:

1. plan the derived stack (:mod:`twinstack.measure.stackfile`) with
   :func:`twinstack.plan.plan_stack` and apply it with :func:`twinstack.realize.apply_plan`;
   an instance's clock starts when the harness issues its create (``apply_plan``'s
   ``on_create`` callback, right before ``docker create`` / ``virsh define+start``) and stops at its first healthy signal
   (Docker's first passing health check, read from Docker's own health log; the
   ``twinstack-ready <svc>`` line on the VM's serial console), with every instance
   waited for in parallel;
2. sample steady state: CPU time over ``window`` seconds, then memory and disk;
3. remove the tool's instances and time the bare baseline the same way (a ``docker run``
   of the same image with the same health command; ``virsh define`` + ``virsh start`` of
   the same domain XML with its own disks);
4. tear everything down (also on Ctrl-C / SIGTERM and on errors).

The result is the *raw* record (bytes, seconds) that :mod:`twinstack.measure.report`
turns into the report and the calibration file.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol
from xml.etree import ElementTree as ET

import yaml

from twinstack.errors import TwinstackError
from twinstack.measure import probes
from twinstack.measure.stackfile import POOL_ROOT, derive_config

VM_TIMEOUT_S = float(os.environ.get("TWINSTACK_VM_TIMEOUT_S", "600"))
TOOL_VERSION = "0.1.0"


def tool_name() -> str:
    try:
        from importlib.metadata import version

        return f"twinstack measure {version('twinstack')}"
    except Exception:
        return f"twinstack measure {TOOL_VERSION}"


class Ui(Protocol):
    """What the runner tells the user (the CLI draws it with rich)."""

    def log(self, message: str) -> None: ...
    def phase(self, title: str, total: int) -> None: ...
    def advance(self, detail: str = "") -> None: ...


class NullUi:
    def log(self, message: str) -> None:
        pass

    def phase(self, title: str, total: int) -> None:
        pass

    def advance(self, detail: str = "") -> None:
        pass


@dataclass
class Options:
    stack: str
    service: str
    runtimes: list[str]
    count: int = 2
    window_s: float = 10.0
    as_stack: str = "measure"
    cidr: str = "10.213.96.0/24"
    baseline: bool = True
    root: Path | None = None


@dataclass
class _Waiter:
    name: str
    started: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    ended_at: float = 0.0
    error: str = ""


# ------------------------------------------------------------------------ signals


class Interrupted(KeyboardInterrupt):
    """SIGTERM turned into the same path as Ctrl-C: tear down, then stop."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Teardown must finish: hold Ctrl-C/SIGTERM until it has."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        pending.append(signum)

    old_int = signal.signal(signal.SIGINT, hold)
    old_term = signal.signal(signal.SIGTERM, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    if pending:
        raise Interrupted(f"signal {pending[0]}")


# ------------------------------------------------------------------------ waiting


def _wait_all(names: list[str], fn: Callable[[str], Any], ui: Ui, what: str) -> dict[str, _Waiter]:
    """Run ``fn(name)`` for every instance in parallel threads; return when all ended.

    The main thread joins with a short timeout so Ctrl-C/SIGTERM reach it at once.
    """
    waiters = {n: _Waiter(n) for n in names}

    def run(w: _Waiter) -> None:
        try:
            w.result = fn(w.name)
        except Exception as exc:  # reported per instance, not lost in a thread
            w.error = f"{type(exc).__name__}: {exc}"
        finally:
            w.ended_at = time.time()
            w.done.set()

    threads = [
        threading.Thread(target=run, args=(w,), name=f"wait-{w.name}", daemon=True)
        for w in waiters.values()
    ]
    for t in threads:
        t.start()
    reported: set[str] = set()
    while len(reported) < len(waiters):
        for w in waiters.values():
            if w.name not in reported and w.done.wait(0.1):
                reported.add(w.name)
                ok = w.result is not None and getattr(w.result, "healthy", False)
                ui.advance(f"{w.name} {'healthy' if ok else 'NOT healthy'}")
                ui.log(f"{what} {w.name}: {w.result if w.result is not None else w.error}")
    return waiters


# ------------------------------------------------------------------------ the run


class Runner:
    """One measurement run. Use :meth:`run`; everything it creates is removed at the end."""

    def __init__(self, opts: Options, ui: Ui | None = None) -> None:
        from twinstack.plan import project_root

        self.opts = opts
        self.ui: Ui = ui or NullUi()
        self.root = opts.root or project_root()
        self.stack_file = self.root / "stacks" / f"Pulumi.{opts.stack}.yaml"
        self.docker: Any = None
        self.virt: Any = None
        self.tmp = Path(tempfile.mkdtemp(prefix="twinstack-measure-"))
        self.bare_dir = POOL_ROOT / f"{opts.as_stack}-bare"
        self.plans: dict[str, dict[str, Any]] = {}
        """The measurement's own plan documents, per runtime."""

    # -- setup ----------------------------------------------------------------------

    def _spec(self) -> Any:
        from components.spec import load_stack

        spec = load_stack(self.stack_file)
        svc = next((s for s in spec.services if s.name == self.opts.service), None)
        if svc is None:
            names = ", ".join(s.name for s in spec.services)
            raise TwinstackError(
                f"{self.stack_file}: twinstack:services: no service {self.opts.service!r}; "
                f"services: {names}"
            )
        return spec, svc

    def _plan(self, runtime: str, domain_type: str) -> tuple[dict[str, Any], list[str]]:
        from components.spec import read_stack_file
        from twinstack.plan import plan_stack

        config, notes = derive_config(
            read_stack_file(self.stack_file), self.opts.service, runtime=runtime,
            count=self.opts.count, domain_type=domain_type, cidr=self.opts.cidr,
            stack=self.opts.as_stack, source=str(self.stack_file),
        )  # fmt: skip
        path = self.tmp / f"Pulumi.{self.opts.as_stack}.yaml"
        path.write_text(yaml.safe_dump({"config": config}, sort_keys=False), encoding="utf-8")
        cwd = Path.cwd()
        os.chdir(self.root)  # plan writes build contexts relative to the project
        try:
            doc = plan_stack(self.opts.as_stack, runtime, root=self.root, stack_file=path)
        finally:
            os.chdir(cwd)
        return doc, notes

    def _original_refs(self) -> dict[str, str]:
        """Image references of the service in the user's own stack (what `diff` reads)."""
        from twinstack.plan import plan_stack
        from twinstack.realize.records import DOCKER_CONTAINER, LIBVIRT_VOLUME, Plan, labels_of

        refs: dict[str, str] = {}
        cwd = Path.cwd()
        os.chdir(self.root)
        try:
            if "container" in self.opts.runtimes:
                plan = Plan(plan_stack(self.opts.stack, "container", root=self.root))
                for rec in plan.of_type(DOCKER_CONTAINER):
                    if labels_of(rec.inputs).get("twinstack.service") == self.opts.service:
                        refs["container"] = str(rec.inputs["image"])
                        break
            if "vm" in self.opts.runtimes:
                plan = Plan(plan_stack(self.opts.stack, "vm", root=self.root))
                for rec in plan.of_type(LIBVIRT_VOLUME):
                    if "source" in rec.inputs:
                        refs["vm"] = str(rec.inputs["source"])
                        break
        finally:
            os.chdir(cwd)
        return refs

    def _teardown(self) -> None:
        from twinstack.realize import teardown_docker, teardown_libvirt

        with _no_interrupts():
            stack = self.opts.as_stack
            if self.docker is not None:
                for r in teardown_docker(self.docker, stack):
                    self.ui.log(f"removed {r}")
            if self.virt is not None:
                for r in teardown_libvirt(self.virt, stack):
                    self.ui.log(f"removed {r}")
            shutil.rmtree(self.bare_dir, ignore_errors=True)
            shutil.rmtree(self.root / ".twinstack" / "build" / stack, ignore_errors=True)

    # -- main -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from twinstack.realize import detect_domain_type, docker_client, libvirt_conn

        opts = self.opts
        spec, svc = self._spec()
        raw: dict[str, Any] = {
            "version": 1,
            "tool": tool_name(),
            "measuredAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "host": probes.host_facts(),
            "stack": opts.stack,
            "stackFile": str(self.stack_file.relative_to(self.root)),
            "service": opts.service,
            "asStack": opts.as_stack,
            "count": opts.count,
            "windowS": opts.window_s,
            "declared": {
                "vcpus": svc.resources.vcpus,
                "memoryMib": svc.resources.memory_mib,
                "diskGib": svc.resources.disk_gib,
            },
            "notes": [],
            "runtimes": {},
        }
        with _sigterm_as_interrupt():
            try:
                if "container" in opts.runtimes:
                    self.docker = docker_client()
                if "vm" in opts.runtimes:
                    self.virt = libvirt_conn()
                self._teardown()  # leftovers of an interrupted run
                raw["calibrationRefs"] = self._original_refs()
                for runtime in opts.runtimes:
                    if runtime == "container":
                        doc, notes = self._plan("container", "kvm")
                        self.plans["container"] = doc
                        self._note(raw, notes)
                        raw["runtimes"]["container"] = self._containers(doc)
                    else:
                        image = spec.vm_image_of(svc)
                        kernel = Path(str(image.kernel)) if image and image.kernel else None
                        self.ui.phase("probing KVM", 1)
                        dtype = detect_domain_type(kernel) if kernel else "qemu"
                        self.ui.advance(f"domain type {dtype}")
                        doc, notes = self._plan("vm", dtype)
                        self.plans["vm"] = doc
                        self._note(raw, notes)
                        raw["runtimes"]["vm"] = self._vms(doc, dtype)
                    self._teardown()
            finally:
                self.ui.phase("teardown", 1)
                self._teardown()
                self.ui.advance("done")
                shutil.rmtree(self.tmp, ignore_errors=True)
                for client in (self.docker,):
                    with contextlib.suppress(Exception):
                        if client is not None:
                            client.close()
                with contextlib.suppress(Exception):
                    if self.virt is not None:
                        self.virt.close()
        raw["host"]["ksmAfter"] = probes.ksm_state()
        return raw

    @staticmethod
    def _note(raw: dict[str, Any], notes: list[str]) -> None:
        for n in notes:
            if n not in raw["notes"]:
                raw["notes"].append(n)

    # -- containers -----------------------------------------------------------------

    def _containers(self, doc: dict[str, Any]) -> dict[str, Any]:
        from twinstack.realize import apply_plan, wait_container
        from twinstack.realize.docker_apply import container_deadline_s
        from twinstack.realize.records import DOCKER_CONTAINER, Plan

        plan = Plan(doc)
        recs = {str(r.inputs["name"]): r for r in plan.of_type(DOCKER_CONTAINER)}
        created: dict[str, float] = {}

        def mark(name: str) -> None:
            created[name] = time.time()

        self.ui.phase(f"containers: apply {len(recs)}", 1)
        t0 = time.time()
        applied = apply_plan(
            doc, root=self.root, docker=self.docker, log=self.ui.log, on_create=mark
        )
        assert applied.docker is not None
        self.ui.advance("applied")
        names = list(applied.docker.containers)
        deadline = max(container_deadline_s(r) for r in recs.values())
        self.ui.phase("containers: create → healthy", len(names))
        waiters = _wait_all(
            names, lambda n: wait_container(self.docker, n, timeout_s=deadline), self.ui,
            "container",
        )  # fmt: skip
        apply_s = max(w.ended_at for w in waiters.values()) - t0
        instances = [self._container_timing(n, created.get(n, t0), waiters[n]) for n in names]
        self._container_steady(instances)
        out: dict[str, Any] = {
            "acceleration": None,
            "applyToAllHealthyS": round(apply_s, 3),
            "instances": instances,
        }
        if instances:
            probe = instances[0].get("_probe")
            out["image"] = {
                "ref": probe.image if probe else "",
                "sizeBytes": probe.image_size if probe else 0,
            }
        for inst in instances:
            inst.pop("_probe", None)
        # the baseline: same image, same health command, bare `docker run`
        for n in names:
            with contextlib.suppress(Exception):
                self.docker.containers.get(n).remove(force=True)
        if self.opts.baseline:
            out["baseline"] = self._container_baseline(recs[names[0]] if names else None)
        return out

    def _container_timing(self, name: str, created_at: float, w: _Waiter) -> dict[str, Any]:
        inst: dict[str, Any] = {"name": name, "status": "error", "detail": w.error}
        health = w.result
        if health is not None:
            inst["status"] = health.status
            inst["detail"] = health.detail
        try:
            state = self.docker.api.inspect_container(name)["State"]
        except Exception as exc:
            inst["detail"] = inst["detail"] or str(exc)
            return inst
        healthy_at = probes.first_healthy_at(state)
        started = probes.docker_time(str(state.get("StartedAt", "")))
        if healthy_at is not None and health is not None and health.healthy:
            inst["createToHealthyS"] = round(healthy_at - created_at, 3)
        if started:
            inst["createToRunningS"] = round(started - created_at, 3)
        return inst

    def _container_steady(self, instances: list[dict[str, Any]]) -> None:
        live = [i for i in instances if i["status"] in ("healthy", "running")]
        if not live:
            return
        self.ui.phase(f"containers: idle CPU over {self.opts.window_s:g}s, memory, disk", 1)
        for inst in live:
            inst["_probe"] = probes.container_probe(self.docker, inst["name"])
        t0 = time.monotonic()
        before = {i["name"]: self._container_cpu(i["_probe"]) for i in live}
        time.sleep(self.opts.window_s)  # the measurement window itself, not a readiness wait
        window = time.monotonic() - t0
        for inst in live:
            p: probes.ContainerProbe = inst["_probe"]
            cpu0, shim0 = before[inst["name"]]
            cpu1, shim1 = self._container_cpu(p)
            inst["cpu"] = {"windowS": round(window, 3), "cgroupCpuS": round(cpu1 - cpu0, 6)}
            if shim0 is not None and shim1 is not None:
                inst["cpu"]["shimCpuS"] = round(shim1 - shim0, 6)
            mem = p.memory()
            inst["memory"] = {
                "cgroup": {
                    "version": mem.version, "usage": mem.usage, "anon": mem.anon,
                    "file": mem.file, "inactiveFile": mem.inactive_file, "shmem": mem.shmem,
                },
            }  # fmt: skip
            if p.shim_pid is not None:
                with contextlib.suppress(OSError):
                    sm = probes.proc_memory(p.shim_pid)
                    inst["memory"]["shim"] = {"rss": sm.get("Rss", 0), "pss": sm.get("Pss", 0)}
            info = self.docker.api.inspect_container(inst["name"])
            size_rw, size_root = probes.container_sizes(self.docker, inst["name"])
            log_path = Path(str(info.get("LogPath") or ""))
            inst["disk"] = {
                "sizeRw": size_rw,
                "sizeRootFs": size_root,
                "log": probes.file_allocation(log_path) if str(log_path) != "." else 0,
            }

    @staticmethod
    def _container_cpu(p: probes.ContainerProbe) -> tuple[float, float | None]:
        shim = None
        if p.shim_pid is not None:
            with contextlib.suppress(OSError):
                shim = probes.proc_cpu_seconds(p.shim_pid)
        return p.cpu_seconds(), shim

    def _container_baseline(self, rec: Any) -> dict[str, Any]:
        from twinstack.realize import wait_container
        from twinstack.realize.docker_apply import container_deadline_s

        if rec is None:
            return {}
        i = rec.inputs
        hc = i.get("healthcheck") or {}
        image = str(i["image"])
        label = ["--label", f"twinstack.stack={self.opts.as_stack}"]  # for teardown
        cmd: str | None = None
        timing: list[str] = []
        if hc:
            tests = list(hc["tests"])
            cmd = tests[1] if tests[0] == "CMD-SHELL" else shlex.join(tests[1:])
            timing = [
                "--health-interval", str(hc.get("interval", "30s")),
                "--health-timeout", str(hc.get("timeout", "30s")),
                "--health-retries", str(hc.get("retries", 3)),
                "--health-start-period", str(hc.get("startPeriod", "0s")),
            ]  # fmt: skip
        health = ["--health-cmd", cmd, *timing] if cmd is not None else []
        names = [
            f"{self.opts.as_stack}-bare-{self.opts.service}-{k}" for k in range(self.opts.count)
        ]
        self.ui.phase(f"baseline: bare docker run x{len(names)}", len(names))
        created: dict[str, float] = {}
        for n in names:
            argv = ["docker", "run", "-d", "--name", n, *label, *health, image]
            created[n] = time.time()
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise TwinstackError(f"baseline `docker run` failed: {proc.stderr.strip()}")
            self.ui.log(f"docker run -d --name {n} … {image}")
        deadline = container_deadline_s(rec)
        waiters = _wait_all(
            names, lambda n: wait_container(self.docker, n, timeout_s=deadline), self.ui,
            "bare container",
        )  # fmt: skip
        instances = [self._container_timing(n, created[n], waiters[n]) for n in names]
        shown = " ".join(
            ["docker run -d --name NAME", *(["--health-cmd CMD", *timing] if cmd else []), image]
        )
        return {"method": shown, "healthCmd": cmd, "instances": instances}

    # -- VMs ------------------------------------------------------------------------

    def _vms(self, doc: dict[str, Any], domain_type: str) -> dict[str, Any]:
        from twinstack.realize import apply_plan
        from twinstack.realize.guest import wait_vm
        from twinstack.realize.records import LIBVIRT_DOMAIN, Plan

        plan = Plan(doc)
        recs = {str(r.inputs["name"]): r for r in plan.of_type(LIBVIRT_DOMAIN)}
        created: dict[str, float] = {}

        def mark(name: str) -> None:
            created[name] = time.time()

        self.ui.phase(f"VMs: apply {len(recs)} (base upload, clones, seeds, domains)", 1)
        t0 = time.time()
        applied = apply_plan(
            doc, root=self.root, libvirt=self.virt, log=self.ui.log, on_create=mark
        )
        assert applied.libvirt is not None
        applied_at = time.time()
        self.ui.advance("applied")
        names = list(applied.libvirt.domains)
        consoles = dict(applied.libvirt.consoles)
        svc = self.opts.service
        self.ui.phase(f"VMs ({domain_type}): create → healthy", len(names))
        waiters = _wait_all(
            names,
            lambda n: wait_vm(self.virt, n, svc, consoles[n], timeout_s=VM_TIMEOUT_S),
            self.ui,
            "vm",
        )
        apply_s = max(w.ended_at for w in waiters.values()) - t0
        instances = [self._vm_timing(n, created.get(n, t0), applied_at, waiters[n]) for n in names]
        self._vm_steady(plan, recs, instances)
        out: dict[str, Any] = {
            "acceleration": "kvm" if domain_type == "kvm" else "tcg",
            "domainType": domain_type,
            "applyToAllHealthyS": round(apply_s, 3),
            "instances": instances,
            "baseImage": self._base_image(plan),
        }
        if self.opts.baseline and names:
            from twinstack.realize.libvirt_apply import remove_domain

            xml_src = {n: self._bare_xml_inputs(plan, recs[n]) for n in names}
            for n in names:
                with contextlib.suppress(Exception):
                    remove_domain(self.virt.lookupByName(n))
            out["baseline"] = self._vm_baseline(plan, recs, xml_src)
        return out

    @staticmethod
    def _vm_timing(name: str, created_at: float, applied_at: float, w: _Waiter) -> dict[str, Any]:
        inst: dict[str, Any] = {"name": name, "status": "error", "detail": w.error}
        health = w.result
        if health is not None:
            inst["status"] = health.status
            inst["detail"] = f"{health.step}: {health.detail}" if health.step else health.detail
            if health.healthy:
                inst["createToHealthyS"] = round(w.ended_at - created_at, 3)
                # healthy already at the first look: the true time is at most this
                inst["upperBound"] = health.seconds < 1.0 and w.ended_at - applied_at < 1.5
        return inst

    def _base_image(self, plan: Any) -> dict[str, Any]:
        from twinstack.realize.records import LIBVIRT_VOLUME

        for rec in plan.of_type(LIBVIRT_VOLUME):
            if "source" in rec.inputs:
                got = probes.volume_allocation(
                    self.virt, str(rec.inputs.get("pool", "default")), str(rec.inputs["name"])
                )
                return {
                    "source": str(rec.inputs["source"]),
                    "allocation": got[1] if got else probes.file_allocation(
                        Path(str(rec.inputs["source"]))
                    ),
                    "volume": got[2] if got else "",
                }  # fmt: skip
        return {}

    def _vm_steady(self, plan: Any, recs: dict[str, Any], instances: list[dict[str, Any]]) -> None:
        from twinstack.realize.records import LIBVIRT_CLOUDINIT, LIBVIRT_VOLUME

        live = [i for i in instances if i["status"] == "healthy"]
        if not live:
            return
        self.ui.phase(f"VMs: idle CPU over {self.opts.window_s:g}s, memory, disk", 1)
        doms = {i["name"]: self.virt.lookupByName(i["name"]) for i in live}
        for dom in doms.values():
            probes.enable_balloon_stats(dom)
        pids = {n: probes.qemu_pid(n) for n in doms}
        t0 = time.monotonic()
        before = {n: probes.proc_cpu_seconds(p) for n, p in pids.items()}
        time.sleep(self.opts.window_s)  # the measurement window itself, not a readiness wait
        window = time.monotonic() - t0
        for inst in live:
            n = inst["name"]
            rec = recs[n]
            pid = pids[n]
            inst["cpu"] = {
                "windowS": round(window, 3),
                "qemuCpuS": round(probes.proc_cpu_seconds(pid) - before[n], 6),
            }
            roll = probes.proc_memory(pid)
            guest_bytes = int(rec.inputs.get("memory", 512)) * 1024 * 1024
            ram = probes.guest_ram(pid, guest_bytes)
            inst["memory"] = {
                "guestBytes": guest_bytes,
                "qemu": {
                    k: roll.get(k, 0)
                    for k in (
                        "Rss",
                        "Pss",
                        "Shared_Clean",
                        "Shared_Dirty",
                        "Private_Clean",
                        "Private_Dirty",
                        "Anonymous",
                        "AnonHugePages",
                        "KSM",
                    )
                },
                "guestRamRss": ram.rss if ram is not None else None,
                "balloon": probes.balloon_stats(doms[n]),
                "guestMeminfo": {
                    k: v
                    for k, v in probes.guest_meminfo(doms[n]).items()
                    if k in ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached")
                },
            }
            disk: dict[str, Any] = {"clone": 0, "cloneCapacity": 0, "data": 0, "cloudInit": 0}
            for k, d in enumerate(rec.inputs.get("disks", [])):
                vrec = plan.by_id(str(d["volumeId"]), LIBVIRT_VOLUME)
                got = probes.volume_allocation(
                    self.virt, str(vrec.inputs.get("pool", "default")), str(vrec.inputs["name"])
                )
                if got is None:
                    continue
                if k == 0:
                    disk["cloneCapacity"], disk["clone"] = got[0], got[1]
                else:
                    disk["data"] += got[1]
            if rec.inputs.get("cloudinit"):
                crec = plan.by_id(str(rec.inputs["cloudinit"]), LIBVIRT_CLOUDINIT)
                got = probes.volume_allocation(
                    self.virt, str(crec.inputs.get("pool", "default")), str(crec.inputs["name"])
                )
                disk["cloudInit"] = got[1] if got else 0
            inst["disk"] = disk

    def _bare_xml_inputs(self, plan: Any, rec: Any) -> dict[str, Any]:
        """What the bare baseline needs from the tool's domain before it is removed."""
        from twinstack.realize.libvirt_apply import domain_xml
        from twinstack.realize.records import LIBVIRT_CLOUDINIT, LIBVIRT_VOLUME

        xml = domain_xml(self.virt, plan, rec, None)
        disks = []
        for d in rec.inputs.get("disks", []):
            vrec = plan.by_id(str(d["volumeId"]), LIBVIRT_VOLUME)
            base = None
            if "baseVolumeId" in vrec.inputs:
                brec = plan.by_id(str(vrec.inputs["baseVolumeId"]), LIBVIRT_VOLUME)
                got = probes.volume_allocation(
                    self.virt, str(brec.inputs.get("pool", "default")), str(brec.inputs["name"])
                )
                base = (got[2], str(brec.inputs.get("format", "qcow2"))) if got else None
            disks.append(
                {"size": int(vrec.inputs.get("size", 0)), "base": base,
                 "format": str(vrec.inputs.get("format", "qcow2"))}
            )  # fmt: skip
        seed = ""
        if rec.inputs.get("cloudinit"):
            crec = plan.by_id(str(rec.inputs["cloudinit"]), LIBVIRT_CLOUDINIT)
            got = probes.volume_allocation(
                self.virt, str(crec.inputs.get("pool", "default")), str(crec.inputs["name"])
            )
            seed = got[2] if got else ""
        return {"xml": xml, "disks": disks, "seed": seed}

    def _vm_baseline(
        self, plan: Any, recs: dict[str, Any], xml_src: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        from twinstack.realize.guest import wait_vm
        from twinstack.realize.libvirt_apply import CONSOLE_DIR

        uri = "qemu:///system"
        with contextlib.suppress(Exception):
            uri = str(self.virt.getURI())
        self.bare_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.bare_dir, 0o755)
        prepared: dict[str, tuple[Path, Path]] = {}
        for k, (tool_name_, src) in enumerate(xml_src.items()):
            name = f"{self.opts.as_stack}-bare-{self.opts.service}-{k}"
            xml_path = self.bare_dir / f"{name}.xml"
            console = CONSOLE_DIR / f"{name}.log"
            console.unlink(missing_ok=True)
            xml_path.write_text(bare_domain_xml(src, name, self.bare_dir, console), "utf-8")
            self._bare_disks(src, name)
            prepared[name] = (xml_path, console)
            del tool_name_
        self.ui.phase(f"baseline: bare virsh define + start x{len(prepared)}", len(prepared))
        created: dict[str, float] = {}
        for name, (xml_path, _console) in prepared.items():
            created[name] = time.time()
            for argv in (["virsh", "-c", uri, "define", str(xml_path)],
                         ["virsh", "-c", uri, "start", name]):  # fmt: skip
                proc = subprocess.run(argv, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise TwinstackError(
                        f"baseline `{shlex.join(argv)}` failed: {proc.stderr.strip()}"
                    )
            self.ui.log(f"virsh define {xml_path.name} && virsh start {name}")
        applied_at = time.time()
        svc = self.opts.service
        waiters = _wait_all(
            list(prepared),
            lambda n: wait_vm(self.virt, n, svc, prepared[n][1], timeout_s=VM_TIMEOUT_S),
            self.ui,
            "bare vm",
        )
        instances = [self._vm_timing(n, created[n], applied_at, waiters[n]) for n in prepared]
        return {
            "method": "qemu-img create -b <base> (own overlay) + own copy of the seed ISO; "
            "virsh define DOMAIN.xml && virsh start NAME (the tool's domain XML, own disks)",
            "instances": instances,
        }

    def _bare_disks(self, src: dict[str, Any], name: str) -> None:
        for k, d in enumerate(src["disks"]):
            path = self.bare_dir / f"{name}-vd{chr(ord('a') + k)}.{d['format']}"
            argv = ["qemu-img", "create", "-q", "-f", d["format"]]
            if d["base"] is not None:
                argv += ["-b", d["base"][0], "-F", d["base"][1]]
            argv += [str(path), str(d["size"])]
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise TwinstackError(f"baseline `{shlex.join(argv)}` failed: {proc.stderr}")
        if src["seed"]:
            shutil.copyfile(src["seed"], self.bare_dir / f"{name}-seed.iso")


def bare_domain_xml(src: dict[str, Any], name: str, bare_dir: Path, console: Path) -> str:
    """The tool's domain XML with a new name and its own disk files (pure)."""
    root = ET.fromstring(src["xml"])
    name_el = root.find("name")
    assert name_el is not None
    name_el.text = name
    for tag in ("uuid", "metadata"):
        for el in root.findall(tag):
            root.remove(el)
    devices = root.find("devices")
    assert devices is not None
    k = 0
    for disk in devices.findall("disk"):
        source = disk.find("source")
        if source is None:
            continue
        if disk.get("device") == "disk":
            fmt = src["disks"][k]["format"]
            disk.set("type", "file")
            source.attrib.clear()
            source.set("file", str(bare_dir / f"{name}-vd{chr(ord('a') + k)}.{fmt}"))
            k += 1
        elif disk.get("device") == "cdrom":
            source.attrib.clear()
            source.set("file", str(bare_dir / f"{name}-seed.iso"))
    for con in devices.findall("console"):
        target = con.find("target")
        if target is None or target.get("port", "0") != "0":
            continue
        for old in con.findall("log"):
            con.remove(old)
        con.insert(0, ET.Element("log", {"file": str(console), "append": "off"}))
    return ET.tostring(root, encoding="unicode")
