"""`pulumi preview` through the engine and the provider plugins vs `twinstack plan`, same stack.

A generated stack of N services (bench/plan_scale.py's generator, services in service files),
realized as VMs (`--runtime vm`, the default), containers or both on this machine's libvirtd
(`qemu:///system`) and dockerd. Both commands run as child processes and are timed by wall
clock; peak tree RSS is sampled as in bench/cli_scale.py:

* `twinstack plan --stack bench` (Pulumi's mocks, the offline path);
* `preview` of the same program through the Pulumi CLI and the plugins built by
  tools/engine/build.sh, inline through the Automation API (no language host here),
  optionally with the three policy packs (`--packs`).

    .venv/bin/python bench/engine_preview.py --services 100,1000 [--runtime container] [--packs]

Needs the daemons running (`bash scripts/daemons.sh start`): the providers connect at
configure time. Nothing is created; the state lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import yaml  # noqa: E402
from cli_scale import measure, project  # noqa: E402

from twinstack.engine import offline_engine  # noqa: E402


def engine_project(tmp: Path, n: int, runtime: str) -> Path:
    root = project(ROOT, tmp, n, per_file=100)
    path = root / "stacks" / "Pulumi.bench.yaml"
    doc = yaml.safe_load(path.read_text())
    config = doc["config"]
    config["twinstack:runtime"] = runtime
    config["twinstack:hosts"] = {h: {"domainType": "qemu"} for h in config["twinstack:hosts"]}
    for storage in config.get("twinstack:storage", []):
        storage["path"] = str(tmp / "pools" / storage["name"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


def child(root: Path, bindir: Path, state: Path, with_packs: bool, skip: bool) -> None:
    """Run one preview (in this process, as a child of the benchmark)."""
    from twinstack.engine import offline_engine

    os.chdir(root)  # service files are read relative to the project
    engine = offline_engine(bindir, state, install=False)  # the parent installed the plugin
    if skip:
        engine.env["PULUMI_SKIP_CHECKPOINTS"] = "true"
    stack = engine.stack("bench", root)
    result = stack.preview(policy_packs=engine.packs if with_packs else None)
    print(f"preview: {result.change_summary}", file=sys.stderr)


def run(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak tree RSS MiB) of argv; exits with its stderr's tail if it fails."""
    wall, code, tree, _, err = measure(argv, cwd)
    if code != 0:
        tail = " | ".join(err.strip().splitlines()[-5:])
        raise SystemExit(f"{argv[1:3]} exited {code} after {wall:.1f} s: {tail}")
    return wall, tree


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", default="100")
    ap.add_argument("--packs", action="store_true", help="preview with the three policy packs")
    ap.add_argument(
        "--skip-checkpoints", action="store_true",
        help="preview with PULUMI_SKIP_CHECKPOINTS=true (see BENCHMARKS.md)",
    )  # fmt: skip
    ap.add_argument(
        "--runtime", default="vm", choices=["vm", "container", "both"],
        help="the stack's twinstack:runtime (default vm)",
    )  # fmt: skip
    ap.add_argument("--bin", help="bin dir of tools/engine/build.sh (default: run it)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        root, bindir, state = map(Path, args.child[:3])
        child(root, bindir, state, args.packs, args.skip_checkpoints)
        return
    bindir = Path(
        args.bin
        or subprocess.run(
            ["bash", str(ROOT / "tools" / "engine" / "build.sh")],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
    )  # fmt: skip
    print(
        "| services | resources | twinstack plan | peak RSS | engine preview | peak RSS | ÷ plan |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in (int(x) for x in args.services.split(",")):
        with tempfile.TemporaryDirectory(prefix="engine-preview-") as t:
            tmp = Path(t)
            root = engine_project(tmp, n, args.runtime)
            state = tmp / "state"
            offline_engine(bindir, state)  # installs the plugin (not timed)
            twinstack = str(Path(sys.executable).parent / "twinstack")
            plan_s, plan_mib = run(
                [twinstack, "plan", "--stack", "bench", "--format", "json", "-o", "plan.json"],
                root,
            )
            count = len(__import__("json").loads((root / "plan.json").read_text())["resources"])
            me = [sys.executable, __file__, "--child", str(root), str(bindir), str(state)]
            flags = ["--packs"] if args.packs else []
            flags += ["--skip-checkpoints"] if args.skip_checkpoints else []
            prev_s, prev_mib = run(me + flags, root)
            print(
                f"| {n:,} | {count:,} | {plan_s:.1f} s | {plan_mib:,.0f} MiB | {prev_s:.1f} s"
                f" | {prev_mib:,.0f} MiB | {prev_s / plan_s:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
