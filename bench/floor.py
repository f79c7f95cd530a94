"""Benchmark: twinstack's offline plan against the bare-mocks floor.

    .venv/bin/python bench/floor.py [N ...]      (default: 1000)

The floor is a bare Pulumi program under the SDK's own mocks (``pulumi.runtime.set_mocks``
and its ``MockMonitor``, ``new_resource`` echoing the inputs) that registers the same
resources twinstack's plan recorded — same types, names, parents, providers, options and
input values, components with ``register_outputs`` — with the SDK settings twinstack's plan
runs with (no source-position stack walks, one executor thread, no cyclic collector). Two
floors, one column each:

* **floor** (with outputs): where a top-level input value carries a dependency's id or name,
  it is given as an ``Output`` of that dependency (``dep.id.apply(lambda _: value)``), as a
  program computes it from the dependency's outputs; other dependencies are ``depends_on``.
  The SDK's output tracking between resources is then in the floor too.
* **plain floor**: every input as its recorded plain value, every dependency ``depends_on``.

Neither does twinstack's own work: no spec validation, no renderers, no components' logic,
no recording. twinstack ÷ floor is what twinstack adds on top of the SDK's registration
path for the same resource graph.

For each N: a fresh process plans bench/plan_scale.py's stack (runtime both) with
``twinstack.plan.plan_stack`` and writes the plan; then a fresh process reads the plan
(untimed) and runs each floor program. All times are in-process wall times of the
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
    gc.disable()  # as the CLI runs (twinstack/cli.py main)
    t0 = time.perf_counter()
    doc = plan_stack("bench", root=ROOT, stack_file=stack_file)
    wall = time.perf_counter() - t0
    out.write_text(json.dumps(doc), encoding="utf-8")
    return wall


def run_floor(plan_file: Path, with_outputs: bool) -> tuple[float, int]:
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

    by_urn = {r["urn"]: r for r in records}

    def markers(dep: dict[str, Any]) -> list[str]:
        """Strings of ``dep``'s outputs a dependent's inputs may carry: its id, its name."""
        name = (dep.get("inputs") or {}).get("name")
        found = [dep.get("id"), name if isinstance(name, str) else None]
        return [m for m in found if isinstance(m, str) and len(m) > 3]

    def wired(rec: dict[str, Any], made: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        """The inputs with each top-level value that carries a dependency's id or name
        given as an ``Output`` of that dependency (as a program computes it from the
        dependency's outputs); the dependencies no value carries, for ``depends_on``."""
        inputs = dict(rec.get("inputs") or {})
        if not with_outputs:
            return inputs, [made[d] for d in rec.get("dependencies") or [] if d in made]
        text = {k: json.dumps(v) for k, v in inputs.items()}
        wrapped: set[str] = set()
        rest: list[Any] = []
        for d in rec.get("dependencies") or []:
            if d not in made:
                continue
            dep, used = made[d], False
            for key in inputs:
                if key in wrapped or not any(m in text[key] for m in markers(by_urn[d])):
                    continue
                source = dep.id if isinstance(dep, pulumi.CustomResource) else dep.urn
                inputs[key] = source.apply(lambda _, v=inputs[key]: v)
                wrapped.add(key)
                used = True
            if not used:
                rest.append(dep)
        return inputs, rest

    def program() -> None:
        made: dict[str, Any] = {}
        for rec in records:
            inputs, deps = wired(rec, made)
            opts = pulumi.ResourceOptions(
                parent=made.get(rec["parent"]) if rec["parent"] else None,
                depends_on=deps or None,
                provider=made.get((rec.get("provider") or "").rsplit("::", 1)[0]),
                protect=rec.get("protect") or None,
                delete_before_replace=rec.get("deleteBeforeReplace") or None,
            )
            typ, name = rec["type"], rec["name"]
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

    # twinstack's SDK settings (twinstack/plan.py run_program; the CLI runs without the
    # cyclic collector, twinstack/cli.py main)
    presource._get_stack_trace = lambda: source_pb2.StackTrace()
    gc.disable()
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
    if len(sys.argv) > 3 and sys.argv[1] == "--floor":
        wall, count = run_floor(Path(sys.argv[2]), sys.argv[3] == "outputs")
        print(json.dumps({"wall": wall, "resources": count}))
        return
    sizes = [int(a) for a in sys.argv[1:]] or [1000]
    print(
        f"{'services':>9} {'resources':>10} {'twinstack s':>12} {'floor s':>8} {'ratio':>6} "
        f"{'plain floor s':>14} {'ratio':>6}"
    )
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
            floor = child("--floor", str(plan_file), "outputs")
            plain = child("--floor", str(plan_file), "plain")
        print(
            f"{n:>9} {floor['resources']:>10} {ours['wall']:>12.2f} {floor['wall']:>8.2f} "
            f"{ours['wall'] / floor['wall']:>6.2f} {plain['wall']:>14.2f} "
            f"{ours['wall'] / plain['wall']:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
