"""Benchmark: how fast short `twinstack` commands answer (best and median of N runs).

    .venv/bin/python bench/startup.py [--runs 10] [--baseline DIR]

Runs each command N times as a user would (the ``.venv/bin/twinstack`` console script, in
the checkout's folder) and prints the best and the median wall time. With ``--baseline
DIR`` (a plain copy of another commit, e.g. ``git archive <rev> | tar -x -C DIR``) the same
commands run from that copy too, alternating with this checkout's runs so that both see
the same machine load; the copy uses this checkout's ``.venv`` with ``PYTHONPATH=DIR``, so
only the code differs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXE = ROOT / ".venv" / "bin" / "twinstack"

COMMANDS: dict[str, list[str]] = {
    "validate stacks/Pulumi.dev.yaml": ["validate", "stacks/Pulumi.dev.yaml"],
    "validate (all 3 example stacks)": [
        "validate",
        "stacks/Pulumi.dev.yaml",
        "stacks/Pulumi.dev-vm.yaml",
        "stacks/Pulumi.compare.yaml",
    ],
    "--help": ["--help"],
}


def once(checkout: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    t0 = time.perf_counter()
    subprocess.run([str(EXE), *args], cwd=checkout, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--baseline", type=Path, help="a plain copy of another commit")
    ns = ap.parse_args()
    checkouts = [ROOT] + ([ns.baseline.resolve()] if ns.baseline else [])
    head = f"{'command':<34} {'best':>7} {'median':>7}"
    if ns.baseline:
        head += f" {'base best':>10} {'base med':>9} {'ratio':>6}"
    print(f"wall seconds over {ns.runs} runs")
    print(head)
    for name, args in COMMANDS.items():
        times: dict[Path, list[float]] = {c: [] for c in checkouts}
        for c in checkouts:
            once(c, args)  # warm the page cache and bytecode
        for _ in range(ns.runs):
            for c in checkouts:
                times[c].append(once(c, args))
        this = times[ROOT]
        line = f"{name:<34} {min(this):>7.3f} {statistics.median(this):>7.3f}"
        if ns.baseline:
            base = times[checkouts[1]]
            line += (
                f" {min(base):>10.3f} {statistics.median(base):>9.3f} {min(this) / min(base):>6.2f}"
            )
        print(line, flush=True)


if __name__ == "__main__":
    main()
