"""`pulumi up` of N generated container services through the engine, on this machine's dockerd.

A generated stack of N services (bench/plan_scale.py's generator: 4 networks, a volume on
every third service; services in service files of 100), `twinstack:runtime: container`, one
host `local` (the default Docker socket; `--hosts` below), and on each host as many networks
as the spec asks (a Linux bridge takes at most 1,023 containers). Each service is a prebuilt
`image:` service that costs next to nothing per container: `twinstack/<stack>-idle:1`, the
local base image `twinstack/debian-base:bookworm` (`.venv/bin/python -m twinstack.images build`) with
`CMD ["sleep", "infinity"]` (built here once, from no registry, and removed at the end: a
prebuilt container keeps its image's CMD, the base image's is `/bin/bash`, which would exit),
run as `nobody`, 64 MiB, 0.5 CPU, no published ports (`--ports`: plan_scale's host ports), and a
command health check every hour (the container-security pack requires one; each probe costs
Docker about 75 ms of CPU here, so 1,000 containers probing every minute would keep more than
a core busy). The interval is written in Go's duration form (`"1h0m0s"`), as the provider
reads it back; before twinstack did so, the second preview showed an update of every
container's `healthcheck` (a check this script fails on). Per N, each operation runs as a
child process through the Automation API with the CLI and plugins of tools/engine/build.sh,
as bench/engine_preview.py runs `preview`, with a file backend in a temporary folder:

* `up` with the three policy packs and `PULUMI_SKIP_CHECKPOINTS=true` (README, "Large
  stacks"; `--checkpoints` runs every operation without it);
* the containers Docker reports running with the stack's label must be exactly the declared
  replicas; dockerd + containerd + containerd-shim RSS (and PSS) is read from /proc;
* a second `preview` with the packs must show no changes;
* `pulumi state unprotect --all` (data volumes are protected), then `destroy`; afterwards no
  container, volume or network with the stack's label may remain.

Wall times are the child processes' (CLI start and stack selection included). Peak tree RSS
is the largest sum of the resident sets of the child and its descendants (program, CLI,
provider, packs), sampled from /proc every 50 ms as bench/cli_scale.py does (the set of
descendants is refreshed every second: a full /proc walk takes tens of milliseconds once
thousands of container processes run). Any failed check exits 1 after the teardown; on any
failure the stack is destroyed, and whatever still carries its label is removed through the
Docker API. `--max-up-minutes` / `--max-used-gib` stop an `up` that runs too long or fills
the machine: the CLI gets SIGINT (Ctrl-C), finishes the steps under way and writes the
state, then destroy and clean up.

    .venv/bin/python bench/engine_up.py --services 5,50,1000 [--checkpoints] [--ports]
        [--health-interval-s 3600] [--parallel P] [--max-up-minutes 35] [--max-used-gib 18]
        [--hosts H]

`--hosts H` makes the stack H hosts, each its own dockerd: the running one and H-1 that the
script starts (own socket, data and exec roots, managed containerd; no default bridge and
no iptables) and stops at the end, services spread round-robin, each host with networks of
its own. One dockerd holds about 8 open files per running container, and this machine's
hard limit for one process is 20,000 (the sandbox lacks CAP_SYS_RESOURCE to raise it), so
one daemon here takes about 2,400 containers: 5,000 services need `--hosts 3`. They also
need about 60,000 threads (a shim runs 10-11): `sysctl -w kernel.pid_max=4194304` first,
as systemd sets it on a 64-bit host. The script checks both before it starts anything.

Needs dockerd running (`bash scripts/daemons.sh start`) and the base image built.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import yaml  # noqa: E402
from plan_scale import generate  # noqa: E402

from components.spec import BRIDGE_MAX_PORTS  # noqa: E402
from twinstack.engine import offline_engine  # noqa: E402

BASE_IMAGE = "twinstack/debian-base:bookworm"
VM_IMAGE = "/var/lib/twinstack/images/debian-12-twinstack.qcow2"  # never used: container only
DOCKER_HOST = "unix:///var/run/docker.sock"
PER_FILE = 100
MIB = 2**20
PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------ the stack


def idle_image(stack: str) -> str:
    return f"twinstack/{stack}-idle:1"


def bench_service(
    svc: dict[str, Any], i: int, image: str, ports: bool, interval_s: int
) -> dict[str, Any]:
    """plan_scale's service ``svc`` as a cheap prebuilt one (same name, networks, volumes)."""
    build = svc["build"]
    out: dict[str, Any] = {
        "name": svc["name"],
        "image": {
            "container": image,
            "vm": {"source": VM_IMAGE},
            "command": ["sleep", "infinity"],  # the VM's unit; the container keeps the CMD
            "user": "nobody",
            "environment": build["environment"],
        },
        "resources": {"vcpus": 0.5, "memoryMib": 64, "diskGib": 4},
        "healthCheck": {"command": ["true"], "intervalS": interval_s, "timeoutS": 10},
        "networks": svc["networks"],
    }
    if ports:
        out["ports"] = [{"name": "p", "port": 8080, "hostPort": 20000 + i}]
    if "volumes" in svc:
        out["volumes"] = svc["volumes"]
    return out


def bench_project(
    tmp: Path, n: int, stack: str, ports: bool, interval_s: int, hosts: dict[str, str]
) -> tuple[Path, set[str]]:
    """The project folder and the names of the containers the stack declares. ``hosts``:
    twinstack host name → Docker host; service i runs on the (i mod H)th."""
    root = tmp / "project"
    (root / "stacks").mkdir(parents=True)
    (root / "services").mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, root / name)
    doc = generate(n)
    config = doc["config"]
    assert isinstance(config, dict)
    services = [
        bench_service(s, i, idle_image(stack), ports, interval_s)
        for i, s in enumerate(config.pop("twinstack:services"))
    ]
    # networks of their own on each host (the hosts of this machine share one kernel: a
    # subnet on two of them would be two bridges with one address), at least 4 in all, and
    # as many as the stack's validation asks (a Linux bridge takes at most 1,023 containers)
    host_names = list(hosts)
    per_host = -(-max(4, -(-n // BRIDGE_MAX_PORTS)) // len(host_names))
    nets: list[dict[str, str]] = []
    for h, name in enumerate(host_names):
        on_host = len(range(h, n, len(host_names)))
        count = max(per_host, -(-on_host // BRIDGE_MAX_PORTS))
        prefix = "" if len(host_names) == 1 else f"{name}-"
        mine = [f"{prefix}net{k}" for k in range(count)]
        nets += [
            {"name": net, "cidr": f"10.{100 + len(nets) + k}.0.0/20", "mode": "nat"}
            for k, net in enumerate(mine)
        ]
        for j, i in enumerate(range(h, n, len(host_names))):
            services[i]["host"] = name
            services[i]["networks"] = [mine[j % count]]
    config["twinstack:networks"] = nets
    for k in range(0, n, PER_FILE):
        (root / "services" / f"bench-{k // PER_FILE:03d}.yaml").write_text(
            yaml.safe_dump({"services": services[k : k + PER_FILE]}, sort_keys=False),
            encoding="utf-8",
        )
    config["twinstack:runtime"] = "container"
    config["twinstack:hosts"] = {name: {"dockerHost": url} for name, url in hosts.items()}
    config["twinstack:serviceFiles"] = ["services/bench-*.yaml"]
    for storage in config["twinstack:storage"]:
        storage["path"] = str(tmp / "pools" / storage["name"])  # no pool: no VM
    (root / "stacks" / f"Pulumi.{stack}.yaml").write_text(
        yaml.safe_dump(doc, sort_keys=False), encoding="utf-8"
    )
    names = {f"{stack}-{s['name']}-{r}" for s in services for r in range(s.get("replicas", 1))}
    return root, names


# ------------------------------------------------------------------------ docker


def docker_client(url: str = DOCKER_HOST) -> Any:
    import docker

    return docker.DockerClient(base_url=url, timeout=600)


EXTRA_RUN = Path("/run/twinstack-bench")
EXTRA_DATA = Path("/var/lib/twinstack-bench")


THREADS_PER_CONTAINER = 12
"""Measured here: a containerd-shim-runc-v2 runs 10-11 threads, the container's process one."""
DOCKERD_FDS_PER_CONTAINER = 8
"""Measured here: dockerd holds 7.7 descriptors per running container (the stdio FIFOs, the
json-file log, containerd streams)."""


def host_limits(n: int, hosts: int) -> None:
    """Refuse, before anything starts, a run the machine's limits would stop halfway."""
    with open("/proc/loadavg", encoding="ascii") as f:
        threads_now = int(f.read().split()[3].split("/")[1])  # the kernel's threads now
    with open("/proc/sys/kernel/pid_max", encoding="ascii") as f:
        pid_max = int(f.read())
    need = threads_now + n * THREADS_PER_CONTAINER
    if need > pid_max * 0.9:
        raise SystemExit(
            f"{n:,} containers need about {need:,} threads (containerd shims) and "
            f"kernel.pid_max is {pid_max:,}: raise it first (`sysctl -w kernel.pid_max=4194304`, "
            "what systemd sets on 64-bit hosts)"
        )
    per_daemon = -(-n // hosts)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # what a dockerd started here gets
    with contextlib.suppress(OSError, StopIteration, ValueError):
        pid = int(
            subprocess.run(["pgrep", "-xo", "dockerd"], capture_output=True, text=True).stdout
        )
        with open(f"/proc/{pid}/limits", encoding="ascii") as f:
            line = next(x for x in f if x.startswith("Max open files"))
        nofile = min(nofile, int(line.split()[3]))  # the running daemon's soft limit
    fds = per_daemon * DOCKERD_FDS_PER_CONTAINER + 1000
    if fds > nofile:
        raise SystemExit(
            f"{per_daemon:,} containers on one dockerd hold about {fds:,} open files and a "
            f"dockerd here may open {nofile:,}: spread them over more daemons (--hosts "
            f"{-(-n * DOCKERD_FDS_PER_CONTAINER // (nofile - 1000))})"
        )


class ExtraDaemons:
    """``k`` more dockerd, each its own host in the stack (socket, data root, exec root and
    managed containerd of its own; no default bridge, no iptables: the first daemon owns
    those chains); see ``--hosts`` above. Stopped, and their folders removed, on exit."""

    def __init__(self, k: int) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.hosts: dict[str, str] = {}
        for h in range(1, k + 1):
            run, data = EXTRA_RUN / f"h{h}", EXTRA_DATA / f"h{h}"
            run.mkdir(parents=True, exist_ok=True)
            url = f"unix://{run / 'docker.sock'}"
            argv = [
                "dockerd", "--data-root", str(data), "--exec-root", str(run / "exec"),
                "--pidfile", str(run / "dockerd.pid"), "-H", url,
                "--bridge=none", "--iptables=false", "--ip-masq=false",
            ]  # fmt: skip
            with open(run / "dockerd.log", "ab") as log:
                self.procs.append(
                    subprocess.Popen(
                        argv,
                        stdout=log,
                        stderr=log,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            self.hosts[f"h{h}"] = url
        for (name, url), proc in zip(self.hosts.items(), self.procs, strict=True):
            self._ready(name, url, proc)

    @staticmethod
    def _ready(name: str, url: str, proc: subprocess.Popen[bytes]) -> None:
        """The daemon answers its API (readiness, not a sleep: the ping is the signal)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"dockerd of host {name} exited {proc.returncode}")
            with contextlib.suppress(Exception):
                if docker_client(url).ping():
                    return
            time.sleep(0.2)
        raise SystemExit(f"dockerd of host {name} did not answer {url} within 60 s")

    def stop(self) -> None:
        """Stop the daemons, first removing every container they hold (a container outlives
        its stopped dockerd: its shim keeps running, its root stays mounted); a folder that
        still has anything mounted under it is left, and named."""
        for url, proc in zip(self.hosts.values(), self.procs, strict=True):
            if proc.poll() is None:
                with contextlib.suppress(Exception):
                    _remove_ours(docker_client(url), "twinstack.stack")  # all ours
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with open("/proc/mounts", encoding="utf-8") as f:
            mounts = [line.split()[1] for line in f]
        for h in range(1, len(self.procs) + 1):
            for folder in (EXTRA_RUN / f"h{h}", EXTRA_DATA / f"h{h}"):
                if any(m == str(folder) or m.startswith(f"{folder}/") for m in mounts):
                    print(f"left {folder}: something is still mounted under it", file=sys.stderr)
                    continue
                shutil.rmtree(folder, ignore_errors=True)
        for folder in (EXTRA_RUN, EXTRA_DATA):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: nothing of anyone else's


def copy_base_image(source: Any, target: Any) -> None:
    """The local base image onto another daemon (save and load: no registry)."""
    import docker.errors

    with contextlib.suppress(docker.errors.ImageNotFound):
        target.images.get(BASE_IMAGE)
        return
    data = b"".join(source.images.get(BASE_IMAGE).save(named=True))
    target.images.load(data)


def build_idle_image(client: Any, stack: str) -> bool:
    """Build the idle image from the local base unless it exists; True if built now."""
    import docker.errors

    tag = idle_image(stack)
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(tag)
        return False
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        raise SystemExit(
            f"{BASE_IMAGE} is not a local image: run `.venv/bin/python -m twinstack.images build`"
        ) from None
    dockerfile = f'FROM {BASE_IMAGE}\nCMD ["sleep", "infinity"]\n'
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, pull=False, rm=True)
    return True


def ours(clients: list[Any], stack: str) -> dict[str, list[str]]:
    """Containers (any state), volumes and networks carrying the stack's label, on every
    daemon."""
    label = {"label": f"twinstack.stack={stack}"}
    out: dict[str, list[str]] = {"containers": [], "volumes": [], "networks": []}
    for api in (client.api for client in clients):
        out["containers"] += [
            c["Names"][0].lstrip("/") for c in api.containers(all=True, filters=label)
        ]
        out["volumes"] += [v["Name"] for v in api.volumes(filters=label).get("Volumes") or []]
        out["networks"] += [n["Name"] for n in api.networks(filters=label)]
    return out


def running(clients: list[Any], stack: str) -> set[str]:
    label = {"label": f"twinstack.stack={stack}", "status": "running"}
    return {
        c["Names"][0].lstrip("/")
        for client in clients
        for c in client.api.containers(filters=label)
    }


def remove_ours(clients: list[Any], stack: str) -> list[str]:
    """Last resort: remove what carries the stack's label (and nothing else)."""
    label = f"twinstack.stack={stack}"
    return [what for client in clients for what in _remove_ours(client, label)]


def _remove_ours(client: Any, label: str) -> list[str]:
    """Containers with ``label`` (8 at a time: one at a time, thousands took hours under
    load), then networks and volumes; a removal the daemon refuses is reported, not raised,
    so the rest still goes."""
    import docker.errors

    api = client.api
    filters = {"label": label}

    def remove(kind: str, name: str, call: Any, *args: Any, **kwargs: Any) -> str:
        try:
            call(*args, **kwargs)
        except docker.errors.NotFound:
            return ""
        except docker.errors.APIError as exc:
            return f"{kind} {name} NOT removed: {exc.explanation or exc}"
        return f"{kind} {name}"

    with ThreadPoolExecutor(8) as pool:
        done = list(
            pool.map(
                lambda c: remove(
                    "container",
                    c["Names"][0].lstrip("/"),
                    api.remove_container,
                    c["Id"],
                    force=True,
                ),
                api.containers(all=True, filters=filters),
            )
        )
    for n in api.networks(filters=filters):
        done.append(remove("network", n["Name"], api.remove_network, n["Id"]))
    for v in api.volumes(filters=filters).get("Volumes") or []:
        done.append(remove("volume", v["Name"], api.remove_volume, v["Name"], force=True))
    return [d for d in done if d]


# ------------------------------------------------------------------------ /proc


def _processes() -> dict[int, tuple[int, str, int, int]]:
    """pid → (ppid, comm, RSS bytes, start time in clock ticks) of every process."""
    out: dict[int, tuple[int, str, int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                head, tail = f.read().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        comm = head.split("(", 1)[1]
        out[int(entry)] = (int(fields[1]), comm, int(fields[21]) * PAGE, int(fields[19]))
    return out


def _descendants(procs: dict[int, tuple[int, str, int, int]], roots: list[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(roots)
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return int(f.read().rsplit(")", 1)[1].split()[21]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def docker_memory() -> dict[str, float]:
    """RSS/PSS (MiB) of dockerd, containerd and the shims, of docker-proxy, and of the
    processes in the containers (the shims' descendants), with the shim count."""
    procs = _processes()
    comms = {pid: p[1] for pid, p in procs.items()}
    daemons = [p for p, comm in comms.items() if comm in ("dockerd", "containerd")]
    shims = [p for p, comm in comms.items() if comm.startswith("containerd-shim")]
    proxies = [p for p, comm in comms.items() if comm == "docker-proxy"]
    inside = [p for p in _descendants(procs, shims) if p not in set(shims)]
    both = daemons + shims
    return {
        "rss": sum(procs[p][2] for p in both) / MIB,
        "pss": sum(_pss(p) for p in both) / MIB,
        "shims": len(shims),
        "shims_rss": sum(procs[p][2] for p in shims) / MIB,
        "proxy_rss": sum(procs[p][2] for p in proxies) / MIB,
        "inside_rss": sum(procs[p][2] for p in inside) / MIB,
    }


def used_gib() -> float:
    """Memory in use on the machine (MemTotal - MemAvailable), GiB."""
    info: dict[str, int] = {}
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0])
    return (info["MemTotal"] - info["MemAvailable"]) / 2**20


# ------------------------------------------------------------------------ phases


class Stopped(RuntimeError):
    """A phase was stopped by a limit (time or memory)."""


def phase(
    argv: list[str], cwd: Path, *, limit_s: float | None = None, max_gib: float | None = None
) -> tuple[float, float]:
    """Run a child phase: (wall seconds, peak tree RSS MiB, peak machine memory in use GiB,
    sampled once a second). A failure raises RuntimeError with its stderr's tail; a limit
    reached stops the child's whole tree and raises Stopped."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    peak, tree, stop, used = 0, [proc.pid], "", 0.0
    started: dict[int, int] = {}  # pid → start time, of every process seen in the tree
    done = threading.Event()

    def kill() -> None:
        # first the CLI alone, with Ctrl-C's signal: it lets the steps under way finish and
        # writes the state, so `destroy` knows what was created (a signal to the whole group
        # ends the program's process at once, and with PULUMI_SKIP_CHECKPOINTS the CLI
        # then records nothing: seen at 5,000 services)
        procs = _processes()
        for pid in _descendants(procs, [proc.pid]):
            if procs.get(pid, (0, ""))[1] == "pulumi":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(600)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        procs = _processes()  # what is left of the tree (plugins may leave the group)
        for pid, start in started.items():
            if pid in procs and procs[pid][3] == start:  # the same process, not a reused pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def sample() -> None:
        nonlocal peak, tree, stop, used
        tick = 0
        while not done.wait(0.05):
            if tick % 20 == 0:
                procs = _processes()
                tree = _descendants(procs, [proc.pid])
                started.update((p, procs[p][3]) for p in tree if p in procs)
                elapsed = time.perf_counter() - t0
                used = max(used, used_gib())
                if limit_s is not None and elapsed > limit_s:
                    stop = f"over the limit of {limit_s:.0f} s"
                elif max_gib is not None and used > max_gib:
                    stop = f"machine memory in use over {max_gib:g} GiB"
                if stop:
                    kill()
                    return
            tick += 1
            peak = max(peak, sum(_rss(p) for p in tree))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stderr is not None
    try:
        err = proc.stderr.read().decode(errors="replace")  # drained while it runs
        code = proc.wait()
    except BaseException:  # Ctrl-C: stop the child's tree before the teardown
        kill()
        raise
    finally:
        done.set()
        sampler.join()
    wall = time.perf_counter() - t0
    if stop:
        raise Stopped(f"stopped after {wall:.0f} s (peak tree RSS {peak / MIB:,.0f} MiB): {stop}")
    if code != 0:
        tail = " | ".join(err.strip().splitlines()[-8:])
        raise RuntimeError(f"{argv[3]} exited {code} after {wall:.1f} s: {tail}")
    return wall, peak / MIB, used


def child(
    what: str, root: Path, bindir: Path, state: Path, out: Path, ns: argparse.Namespace
) -> None:
    """One operation (in this process, as a child of the benchmark); results to ``out``."""
    os.chdir(root)  # service files are read relative to the project
    engine = offline_engine(bindir, state, install=False)  # the parent installed the plugins
    if not ns.checkpoints:
        engine.env["PULUMI_SKIP_CHECKPOINTS"] = "true"
    stack = engine.stack(ns.stack, root)
    t0 = time.perf_counter()
    result: dict[str, Any] = {}
    if what == "up":
        up = stack.up(policy_packs=engine.packs, parallel=ns.parallel)
        result["changes"] = dict(up.summary.resource_changes or {})
        result["resources"] = len(stack.export_stack().deployment.get("resources") or [])
    elif what == "preview":
        ops: dict[str, str] = {}  # resource name → "op [changed properties]"

        def on_event(event: Any) -> None:
            if event.resource_pre_event is not None:
                meta = event.resource_pre_event.metadata
                op = str(getattr(meta.op, "value", meta.op))
                if op != "same":
                    ops[meta.urn.rsplit("::", 1)[-1]] = f"{op} {sorted(meta.diffs or [])}"

        pre = stack.preview(policy_packs=engine.packs, parallel=ns.parallel, on_event=on_event)
        result["changes"] = dict(pre.change_summary)
        result["not_same"] = [f"{name}: {op}" for name, op in sorted(ops.items())][:20]
    elif what == "destroy":
        engine.run("state", "unprotect", "--all", "--yes", "--stack", ns.stack, cwd=root)
        result["unprotect_s"] = time.perf_counter() - t0
        gone = stack.destroy(parallel=ns.parallel)
        result["changes"] = dict(gone.summary.resource_changes or {})
    result["op_s"] = time.perf_counter() - t0
    out.write_text(json.dumps(result))
    print(f"{what}: {result}", file=sys.stderr)


# ------------------------------------------------------------------------ one N


def mib(x: float) -> str:
    return f"{x:,.0f} MiB"


def one(
    n: int, bindir: Path, hosts: dict[str, str], clients: list[Any], ns: argparse.Namespace
) -> tuple[str, list[str], bool]:
    """Deploy, check and destroy N services: (the table row, failed checks, whether an
    operation itself failed or left something behind: then a larger N is pointless)."""
    stack = ns.stack
    failures: list[str] = []

    def log(message: str) -> None:
        print(f"[{n}] {message}", file=sys.stderr, flush=True)

    left = remove_ours(clients, stack)
    if left:
        log(f"removed leftovers of an earlier run: {len(left)} ({', '.join(left[:3])}, …)")
    cell: dict[str, str] = {}
    peaks: dict[str, float] = {}
    fatal = False
    with tempfile.TemporaryDirectory(prefix="engine-up-") as t:
        tmp = Path(t)
        root, names = bench_project(tmp, n, stack, ns.ports, ns.health_interval_s, hosts)
        state = tmp / "state"
        offline_engine(bindir, state)  # installs the plugins (not timed)
        flags = ["--stack", stack] + (["--checkpoints"] if ns.checkpoints else [])
        flags += ["--parallel", str(ns.parallel)] if ns.parallel else []

        def run(what: str, **limits: float | None) -> tuple[float, dict[str, Any]]:
            out = tmp / f"{what}.json"
            argv = [sys.executable, __file__, "--child", what, str(root), str(bindir)]
            wall, peak, used = phase([*argv, str(state), str(out), *flags], root, **limits)
            peaks[what] = peak
            log(f"{what}: {wall:.1f} s, machine memory in use at most {used:.1f} GiB")
            return wall, json.loads(out.read_text())

        idle = docker_memory()
        try:
            up_s, up = run("up", limit_s=ns.max_up_minutes * 60, max_gib=ns.max_used_gib)
            mem = docker_memory()  # at the end of `up`
            live = running(clients, stack)
            cell["resources"] = f"{up['resources']:,}"
            cell["running"] = f"{len(live):,} / {len(names):,}"
            cell["up"] = f"{up_s:.1f} s"
            cell["daemons"] = f"{mib(mem['rss'])} ({mib(mem['pss'])})"
            log(f"up: {up['changes']}, {up['op_s']:.1f} s in the CLI call")
            log(
                f"docker: {mem['shims']:.0f} shims, {mib(mem['shims_rss'])} of the RSS; "
                f"before up {mib(idle['rss'])} ({mib(idle['pss'])}); docker-proxy "
                f"{mib(mem['proxy_rss'])}; processes in containers {mib(mem['inside_rss'])}; "
                f"machine in use {used_gib():.1f} GiB"
            )
            if live != names:
                missing, extra = sorted(names - live), sorted(live - names)
                failures.append(
                    f"running containers {len(live)} != declared replicas {len(names)}"
                    f" (missing {missing[:5]}, unexpected {extra[:5]})"
                )
            pre_s, pre = run("preview", limit_s=ns.max_up_minutes * 60)
            changed = {k: v for k, v in pre["changes"].items() if k != "same" and v}
            cell["preview"] = f"{pre_s:.1f} s" + (" (**changes**)" if changed else "")
            if changed:
                failures.append(f"second preview shows changes {changed}: {pre['not_same'][:3]} …")
        except (RuntimeError, Stopped) as exc:
            fatal = True
            failures.append(f"up/preview: {exc}")
            log(str(exc))
        finally:
            for lock in (state / "backend" / ".pulumi" / "locks").glob("**/*.json"):
                lock.unlink()  # a stopped CLI leaves its lock; the state is ours alone
            try:
                down_s, down = run("destroy")
                cell["destroy"] = f"{down_s:.1f} s (unprotect {down['unprotect_s']:.1f} s)"
                log(f"destroy: {down['changes']}")
            except RuntimeError as exc:
                fatal = True
                failures.append(f"destroy: {exc}")
                log(str(exc))
            left_over = ours(clients, stack)
            if any(left_over.values()):
                fatal = True
                failures.append(f"left after destroy: { {k: v[:5] for k, v in left_over.items()} }")
                removed = remove_ours(clients, stack)
                log(f"removing through the Docker API: {len(removed)} objects")
    cell["peak"] = mib(max(peaks.values())) if peaks else "—"
    log("peak tree RSS: " + ", ".join(f"{k} {mib(v)}" for k, v in peaks.items()))
    skip = "no" if ns.checkpoints else "yes"
    keys = ("resources", "running", "up", "preview", "destroy", "peak", "daemons")
    row = f"| {n:,} | {skip} | " + " | ".join(cell.get(k, "—") for k in keys) + " |"
    return row, failures, fatal


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--services", default="5,50", help="comma-separated N (default 5,50)")
    ap.add_argument(
        "--checkpoints", action="store_true",
        help="run without PULUMI_SKIP_CHECKPOINTS=true (the CLI saves the state after each step)",
    )  # fmt: skip
    ap.add_argument("--ports", action="store_true", help="publish plan_scale's host ports")
    ap.add_argument(
        "--health-interval-s", type=int, default=3600,
        help="the services' healthCheck.intervalS (default 3600: no probe runs meanwhile)",
    )  # fmt: skip
    ap.add_argument("--parallel", type=int, help="the CLI's --parallel (default: its own)")
    ap.add_argument("--stack", default="benchup", help="stack name (the containers' label)")
    ap.add_argument("--max-up-minutes", type=float, default=35.0, help="stop `up` after this")
    ap.add_argument(
        "--max-used-gib", type=float, default=18.0,
        help="stop `up` when the machine's memory in use passes this (GiB)",
    )  # fmt: skip
    ap.add_argument(
        "--hosts", type=int, default=1,
        help="Docker daemons, each a host of the stack: the running one and H-1 started here",
    )  # fmt: skip
    ap.add_argument("--bin", help="bin dir of tools/engine/build.sh (default: run it)")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.child:
        what, *paths = ns.child
        root, bindir, state, out = map(Path, paths)
        child(what, root, bindir, state, out, ns)
        return
    bindir = Path(
        ns.bin
        or subprocess.run(
            ["bash", str(ROOT / "tools" / "engine" / "build.sh")],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
    )  # fmt: skip
    again, skip = [], False  # the command line, without --bin (a path of this machine)
    for a in sys.argv[1:]:
        if not skip and not a.startswith("--bin"):
            again.append(a)
        skip = a == "--bin"
    print("    " + shlex.join([".venv/bin/python", "bench/engine_up.py", *again]) + "\n")
    sizes = [int(x) for x in ns.services.split(",")]
    for n in sizes:
        host_limits(n, ns.hosts)  # before anything starts
    extra = ExtraDaemons(ns.hosts - 1)
    hosts = {"local": DOCKER_HOST, **extra.hosts}
    clients = [docker_client(url) for url in hosts.values()]
    built: list[Any] = []
    failures: list[str] = []
    print(
        "| services | skip checkpoints | resources | containers running / declared | `up` "
        "(packs) | 2nd `preview` (packs) | `destroy` | peak tree RSS "
        "| dockerd + containerd + shims RSS (PSS) |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    try:
        for client in clients[1:]:
            copy_base_image(clients[0], client)
        built = [client for client in clients if build_idle_image(client, ns.stack)]
        for n in sizes:
            row, failed, fatal = one(n, bindir, hosts, clients, ns)
            print(row, flush=True)
            failures += [f"{n} services: {f}" for f in failed]
            if fatal:
                break
    finally:
        for client in built:
            with contextlib.suppress(Exception):
                client.images.remove(idle_image(ns.stack))
        extra.stop()
    if failures:
        raise SystemExit("FAILED:\n" + "\n".join(failures))


if __name__ == "__main__":
    main()
