"""Benchmark: twinstack's offline plan against the bare-mocks floor.

    .venv/bin/python bench/floor.py [N ...]      (default: 1000)

The floor is a bare Pulumi program under the SDK's own mocks (``pulumi.runtime.set_mocks``
and its ``MockMonitor``, ``new_resource`` echoing the inputs) that registers the same
resources twinstack's plan recorded — same types, names, parents, providers, options,
dependencies (as ``depends_on``) and input values (plain: the values twinstack computes
from other resources' outputs are given as the recorded values), components with
``register_outputs`` — with the SDK settings twinstack's
plan runner uses (no source-position stack walks, rare GC, one executor thread). It does
none of twinstack's own work: no spec validation, no renderers, no components' logic, no
``Output`` plumbing between resources, no recording. The ratio twinstack ÷ floor is what
twinstack adds on top of the SDK's registration path.

For each N: a fresh process plans bench/plan_scale.py's stack (runtime both) with
``twinstack.plan.plan_stack`` and writes the plan; then a fresh process reads the plan
(untimed) and runs the floor program. Both times are in-process wall times of the
registration run only (no interpreter start or imports; the CLI figures are in
bench/cli_scale.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from plan_scale import generate  # noqa: E402


def run_twinstack(n: int, out: Path) -> float:
    from twinstack.plan import plan_stack

    stack_file = out.parent / "Pulumi.bench.yaml"
    stack_file.write_text(yaml.safe_dump(generate(n)), encoding="utf-8")
    t0 = time.perf_counter()
    doc = plan_stack("bench", root=ROOT, stack_file=stack_file)
    wall = time.perf_counter() - t0
    out.write_text(json.dumps(doc), encoding="utf-8")
    return wall


def run_floor(plan_file: Path) -> tuple[float, int]:
    import pulumi
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime import resource as presource
    from pulumi.runtime import settings as psettings
    from pulumi.runtime import stack as pstack
    from pulumi.runtime.proto import source_pb2
    from pulumi.runtime.sync_await import _sync_await

    records: list[dict[str, Any]] = json.loads(plan_file.read_text())["resources"]

    class EchoMocks(pmocks.Mocks):
        def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str, dict[Any, Any]]:
            return f"{args.name}-id", dict(args.inputs)

        def call(self, args: pmocks.MockCallArgs) -> tuple[dict[Any, Any], None]:
            return {}, None

    def program() -> None:
        made: dict[str, Any] = {}
        for rec in records:
            deps = [made[d] for d in rec.get("dependencies") or [] if d in made]
            opts = pulumi.ResourceOptions(
                parent=made.get(rec["parent"]) if rec["parent"] else None,
                depends_on=deps or None,
                provider=made.get((rec.get("provider") or "").rsplit("::", 1)[0]),
                protect=rec.get("protect") or None,
                delete_before_replace=rec.get("deleteBeforeReplace") or None,
            )
            typ, name, inputs = rec["type"], rec["name"], rec.get("inputs") or {}
            if typ.startswith("pulumi:providers:"):
                res: Any = pulumi.ProviderResource(
                    typ.removeprefix("pulumi:providers:"), name, inputs, opts
                )
            elif rec["custom"]:
                res = pulumi.CustomResource(typ, name, inputs, opts)
            else:
                res = pulumi.ComponentResource(typ, name, None, opts)
                res.register_outputs({})
            made[rec["urn"]] = res

    def go() -> None:
        psettings.set_root_resource(None)  # type: ignore[arg-type]
        pmocks.set_mocks(EchoMocks(), project="twinstack", stack="bench", preview=False)
        psettings.set_root_resource(None)  # type: ignore[arg-type]
        _sync_await(pstack.run_in_stack(program))

    # twinstack's SDK settings (twinstack/plan.py run_program)
    presource._get_stack_trace = lambda: source_pb2.StackTrace()
    gc.set_threshold(1_000_000, 1000, 1000)
    loop = asyncio.new_event_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    asyncio.set_event_loop(loop)
    t0 = time.perf_counter()
    contextvars.copy_context().run(go)
    wall = time.perf_counter() - t0
    with contextlib.suppress(RuntimeError):
        loop.close()
    return wall, len(records)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--twinstack":
        print(json.dumps({"wall": run_twinstack(int(sys.argv[2]), Path(sys.argv[3]))}))
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--floor":
        wall, count = run_floor(Path(sys.argv[2]))
        print(json.dumps({"wall": wall, "resources": count}))
        return
    sizes = [int(a) for a in sys.argv[1:]] or [1000]
    print(f"{'services':>9} {'resources':>10} {'twinstack s':>12} {'floor s':>8} {'ratio':>6}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            plan_file = Path(tmp) / "plan.json"

            def child(*args: str) -> dict[str, Any]:
                out = subprocess.run(
                    [sys.executable, __file__, *args],
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                )
                result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
                return result

            ours = child("--twinstack", str(n), str(plan_file))
            floor = child("--floor", str(plan_file))
        print(
            f"{n:>9} {floor['resources']:>10} {ours['wall']:>12.2f} {floor['wall']:>8.2f} "
            f"{ours['wall'] / floor['wall']:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
