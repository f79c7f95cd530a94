"""Benchmark: wall time and peak memory of whole `twinstack` commands on a generated stack.

Times what a user waits for (process start, imports, planning, output, exit), for this
checkout and, with ``--baseline DIR``, for another checkout with its own ``.venv`` (e.g. a
clone of an earlier commit; a ``.venv`` symlink to this one's runs the clone's code through
``PYTHONPATH``), each of its runs right after this checkout's, and prints each ratio.

    .venv/bin/python bench/cli_scale.py [--services 1000 ...] [--baseline /tmp/old-clone]
        [--service-files [PER_FILE]] [--commands validate,plan,policy,diff,help] [--repeat N]

The stack is bench/plan_scale.py's (runtime both, 2 hosts, 4 networks); each command runs
in a throwaway project folder (Pulumi.yaml, __main__.py, stacks/Pulumi.bench.yaml). With
``--service-files`` the services go to ``services/bench-NNN.yaml`` files of PER_FILE
services each (default 500) that the stack file names with one pattern
(``twinstack:serviceFiles: [services/bench-*.yaml]``): what a stack past the config-size
wall looks like (the inline form stops at 100,000 YAML nodes, ≈ 1,700 services, and
`policy` at ≈ 229 services, where ``PULUMI_CONFIG`` passes 128 KiB).

Memory: "peak tree RSS" is the largest sum of the resident sets of the command and all its
descendants (the policy packs run as child processes), sampled from /proc every 50 ms;
"peak process RSS" is the largest single process (``wait4``'s ``ru_maxrss``). ``policy``
runs every pack in ``policies/``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from plan_scale import generate  # noqa: E402

COMMANDS: dict[str, tuple[str, list[str]]] = {
    "validate": ("validate", ["validate", "stacks/Pulumi.bench.yaml"]),
    "plan": ("plan (json)", ["plan", "--stack", "bench", "--format", "json", "-o", "plan.json"]),
    # every pack of the checkout that runs (`{packs}`: its policies/*/)
    "policy": ("policy (all packs)", ["policy", "--stack", "bench", "{packs}"]),
    "diff": ("diff (json)", ["diff", "--stack", "bench", "--format", "json", "-o", "diff.json"]),
    "help": ("--help", ["--help"]),
}
DEFAULT_COMMANDS = "validate,plan,diff,help"


def project(checkout: Path, tmp: Path, n: int, per_file: int | None) -> Path:
    root = tmp / checkout.name
    (root / "stacks").mkdir(parents=True)
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(checkout / name, root / name)
    doc = generate(n)
    if per_file:
        config = doc["config"]
        assert isinstance(config, dict)
        services = config.pop("twinstack:services")
        (root / "services").mkdir()
        for k in range(0, n, per_file):
            (root / "services" / f"bench-{k // per_file:03d}.yaml").write_text(
                yaml.safe_dump({"services": services[k : k + per_file]}, sort_keys=False),
                encoding="utf-8",
            )
        config["twinstack:serviceFiles"] = ["services/bench-*.yaml"]
    (root / "stacks" / "Pulumi.bench.yaml").write_text(
        yaml.safe_dump(doc, sort_keys=False), encoding="utf-8"
    )
    return root


def _tree_rss(pid: int) -> int:
    """Sum of VmRSS (bytes) of ``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid, pages = int(fields[1]), int(fields[21])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def measure(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, int, float, int, str]:
    """Run argv: (wall seconds, exit code, peak tree RSS MiB, peak process RSS MiB, stderr)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, _tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stderr is not None
    err = proc.stderr.read()  # drained while it runs (a full pipe would block it)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    return wall, code, peak / 2**20, usage.ru_maxrss // 1024, err.decode(errors="replace")


def timed(checkout: Path, root: Path, args: list[str]) -> tuple[float, int, float, int]:
    """(wall seconds, exit code, peak tree RSS MiB, peak process RSS MiB)."""
    exe = checkout / ".venv" / "bin" / "twinstack"
    packs = sorted(str(p.parent) for p in (checkout / "policies").glob("*/PulumiPolicy.yaml"))
    argv = [str(exe)]
    for arg in args:
        argv += [a for p in packs for a in ("--pack", p)] if arg == "{packs}" else [arg]
    env = None
    if (checkout / ".venv").is_symlink():  # a clone sharing a venv: its own code first
        env = {**os.environ, "PYTHONPATH": str(checkout)}
    wall, code, tree, proc_rss, err = measure(argv, root, env)
    if code not in (0, 1):  # 1: policy found a mandatory violation
        tail = err.strip().splitlines()[-3:]
        raise SystemExit(f"{' '.join(args)} exited {code}: {' | '.join(tail)}")
    return wall, code, tree, proc_rss


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--services", type=int, nargs="+", default=[1000])
    ap.add_argument("--baseline", type=Path, help="another checkout with its own .venv")
    ap.add_argument(
        "--service-files",
        type=int,
        nargs="?",
        const=500,
        default=None,
        metavar="PER_FILE",
        help="put the services in service files of PER_FILE services (default 500)",
    )
    ap.add_argument("--commands", default=DEFAULT_COMMANDS, help=f"of {','.join(COMMANDS)}")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each command, in rounds (plan, policy, ... then again); the median",
    )
    ns = ap.parse_args()
    checkouts = [ROOT] + ([ns.baseline.resolve()] if ns.baseline else [])
    wanted = [c.strip() for c in ns.commands.split(",") if c.strip()]
    for n in ns.services:
        with tempfile.TemporaryDirectory() as tmp:
            roots = {
                c: project(c, Path(tmp) / str(i), n, ns.service_files)
                for i, c in enumerate(checkouts)
            }
            layout = (
                f"service files of {ns.service_files}" if ns.service_files else "inline services"
            )
            print(f"{n} services, runtime both, {layout}; wall seconds, peak RSS MiB")
            head = f"{'command':<20} {'wall':>8} {'exit':>4} {'tree RSS':>9} {'proc RSS':>9}"
            if ns.repeat > 1:
                head += f" {'runs (s)':>24}"
            if "plan" in wanted:
                head += f" {'÷ plan':>7}"
            if ns.baseline:
                head += f" {'baseline':>9} {'ratio':>6}"
            print(head, flush=True)
            runs: dict[str, list[tuple[float, int, float, int]]] = {k: [] for k in wanted}
            base_runs: dict[str, list[float]] = {k: [] for k in wanted}
            for _ in range(ns.repeat):  # rounds, so that a slow spell hits every command
                for key in wanted:
                    runs[key].append(timed(ROOT, roots[ROOT], COMMANDS[key][1]))
                    if ns.baseline:  # right after: both see the same spell
                        b = checkouts[1]
                        base_runs[key].append(timed(b, roots[b], COMMANDS[key][1])[0])
            median = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
            for key in wanted:
                name = COMMANDS[key][0]
                code = runs[key][-1][1]
                tree = max(r[2] for r in runs[key])
                single = max(r[3] for r in runs[key])
                line = f"{name:<20} {median[key]:>8.2f} {code:>4} {tree:>9.0f} {single:>9}"
                if ns.repeat > 1:
                    line += f" {' '.join(f'{r[0]:.1f}' for r in runs[key]):>24}"
                if "plan" in wanted:
                    line += f" {median[key] / median['plan']:>7.2f}"
                if ns.baseline:
                    base = statistics.median(base_runs[key])
                    line += f" {base:>9.2f} {median[key] / base:>6.2f}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
