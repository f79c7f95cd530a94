"""Benchmark: wall time of whole `twinstack` commands on a generated N-service stack.

Times what a user waits for (process start, imports, planning, output, exit), for this
checkout and, with ``--baseline DIR``, for another checkout with its own ``.venv`` (e.g. a
clone of an earlier commit), in the same run, and prints each ratio.

    .venv/bin/python bench/cli_scale.py [--services 1000] [--baseline /tmp/old-clone]

The stack is bench/plan_scale.py's (runtime both, 2 hosts, 4 networks); each command runs
in a throwaway project folder (Pulumi.yaml, __main__.py, stacks/Pulumi.bench.yaml).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from plan_scale import generate  # noqa: E402

COMMANDS: dict[str, list[str]] = {
    "validate": ["validate", "stacks/Pulumi.bench.yaml"],
    "plan (json)": ["plan", "--stack", "bench", "--format", "json", "-o", "plan.json"],
    "diff (json)": ["diff", "--stack", "bench", "--format", "json", "-o", "diff.json"],
    "--help": ["--help"],
}


def project(checkout: Path, tmp: Path, n: int) -> Path:
    root = tmp / checkout.name
    (root / "stacks").mkdir(parents=True)
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(checkout / name, root / name)
    (root / "stacks" / "Pulumi.bench.yaml").write_text(
        yaml.safe_dump(generate(n), sort_keys=False), encoding="utf-8"
    )
    return root


def timed(checkout: Path, root: Path, args: list[str]) -> float:
    exe = checkout / ".venv" / "bin" / "twinstack"
    t0 = time.perf_counter()
    subprocess.run([str(exe), *args], cwd=root, check=True, capture_output=True, timeout=900)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--baseline", type=Path, help="another checkout with its own .venv")
    ns = ap.parse_args()
    checkouts = [ROOT] + ([ns.baseline.resolve()] if ns.baseline else [])
    with tempfile.TemporaryDirectory() as tmp:
        roots = {c: project(c, Path(tmp) / str(i), ns.services) for i, c in enumerate(checkouts)}
        print(f"{ns.services} services, runtime both; wall seconds")
        head = f"{'command':<14} {'this':>8}"
        if ns.baseline:
            head += f" {'baseline':>9} {'ratio':>6}"
        print(head)
        for name, args in COMMANDS.items():
            this = timed(ROOT, roots[ROOT], args)
            line = f"{name:<14} {this:>8.2f}"
            if ns.baseline:
                base = timed(checkouts[1], roots[checkouts[1]], args)
                line += f" {base:>9.2f} {this / base:>6.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
