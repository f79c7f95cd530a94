"""Benchmark: twinstack's offline plan against the bare-mocks floor.

    .venv/bin/python bench/floor.py [--baseline DIR] [N ...]      (default: 1000)

The floor is a bare Pulumi program under the SDK's own mocks (``pulumi.runtime.set_mocks``
and its ``MockMonitor``, ``new_resource`` echoing the inputs) that registers the same
resources twinstack's plan recorded — same types, names, parents, providers, options and
input values, components with ``register_outputs`` — with the SDK settings twinstack's plan
runs with (no source-position stack walks, one executor thread, no cyclic collector). Four
floors, one column each:

* **typed**: the program a Pulumi user writes — each resource through its provider SDK's
  own class (``pulumi_docker.Container(name, ContainerArgs(...), opts)``), nested values as
  the SDK's ``…Args`` classes (made before the timing, from the recorded wire values), and
  where a top-level input value carries a dependency's id or name, it is given as an
  ``Output`` of that dependency (``dep.id.apply(lambda _: value)``), as a program computes it
  from the dependency's outputs; other dependencies are ``depends_on``. twinstack registers
  through these same classes, so twinstack ÷ typed floor is what twinstack itself adds.
* **typed plain**: the same classes, every input its plain value, every dependency
  ``depends_on``.
* **untyped** and **untyped plain**: the same two, but through the SDK's base classes
  (``pulumi.CustomResource(type_token, name, props)``), which skip the provider SDKs'
  typed translation of every property: a lower bound no program that uses the providers'
  published classes reaches.

Each floor checks, after its timing, that the mocks saw the plan's inputs for every custom
resource (a floor that registered other values would say so). None does twinstack's own
work: no spec validation, no renderers, no components' logic, no recording.

For each N: a fresh process plans bench/plan_scale.py's stack (runtime both) with
``twinstack.plan.plan_stack`` and writes the plan; then a fresh process reads the plan
(untimed) and runs each floor program. With ``--baseline DIR`` (another checkout, e.g. a
``git archive`` of an earlier commit), that checkout's twinstack plans the same stack in a
fresh process too, measured against the same floors. All times are in-process wall times
of the registration run only (no interpreter start or imports: the provider SDKs' modules
are imported before the timing in every program; the CLI figures are in
bench/cli_scale.py). ``FLOOR_CHILD_PREFIX`` (a script to run each child through) is for
profiling.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import gc
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import typing
from collections import abc
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHILD_PREFIX: list[str] = [p for p in os.environ.get("FLOOR_CHILD_PREFIX", "").split() if p]
sys.path.insert(0, str(ROOT / "bench"))

from plan_scale import generate  # noqa: E402


def run_twinstack(n: int, out: Path, root: Path = ROOT) -> float:
    """Plan n services with the twinstack found first on sys.path (``--baseline`` puts
    another checkout there), from project root ``root``."""
    from twinstack.plan import plan_stack

    stack_file = out.parent / "Pulumi.bench.yaml"
    stack_file.write_text(yaml.safe_dump(generate(n)), encoding="utf-8")
    gc.disable()  # as the CLI runs (twinstack/cli.py main)
    import pulumi_docker
    import pulumi_libvirt

    import components.service  # noqa: F401

    # the provider SDKs' lazily imported modules, as the floor has them before it runs
    for sdk in (pulumi_docker, pulumi_libvirt):
        for attr in dir(sdk):
            getattr(sdk, attr)
    t0 = time.perf_counter()
    doc = plan_stack("bench", root=root, stack_file=stack_file)
    wall = time.perf_counter() - t0
    out.write_text(json.dumps(doc), encoding="utf-8")
    return wall


def run_floor(plan_file: Path, with_outputs: bool, typed: bool = False) -> tuple[float, int, int]:
    import pulumi
    from pulumi import _types as ptypes
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime import resource as presource
    from pulumi.runtime import settings as psettings
    from pulumi.runtime import stack as pstack
    from pulumi.runtime.proto import source_pb2
    from pulumi.runtime.sync_await import _sync_await

    records: list[dict[str, Any]] = json.loads(plan_file.read_text())["resources"]

    class EchoMocks(pmocks.Mocks):
        def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str, dict[Any, Any]]:
            registered[(args.typ, args.name)] = args.inputs
            return f"{args.name}-id", dict(args.inputs)

        def call(self, args: pmocks.MockCallArgs) -> tuple[dict[Any, Any], None]:
            return {}, None

    by_urn = {r["urn"]: r for r in records}
    registered: dict[tuple[str, str], Any] = {}

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
        if rec["urn"] in typed_inputs:
            inputs = dict(typed_inputs[rec["urn"]])
        if not with_outputs:
            return inputs, [made[d] for d in rec.get("dependencies") or [] if d in made]
        text = {k: json.dumps(v) for k, v in (rec.get("inputs") or {}).items()}
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

    classes: dict[str, Any] = {}

    def typed_class(token: str) -> Any:
        """The provider SDK's own class for a type token (``docker:index/container:Container``
        -> ``pulumi_docker.Container``, ``pulumi:providers:libvirt`` ->
        ``pulumi_libvirt.Provider``), or None for a component."""
        if token not in classes:
            pkg, _, name = token.rpartition(":")
            if token.startswith("pulumi:providers:"):
                pkg, name = name, "Provider"
            module = {"docker": "pulumi_docker", "libvirt": "pulumi_libvirt"}.get(pkg.split(":")[0])
            classes[token] = getattr(importlib.import_module(module), name) if module else None
        return classes[token]

    def typed_value(value: Any, hint: Any) -> Any:
        """A recorded wire value as the typed SDK takes it: an object of an input type
        becomes that ``…Args`` class, with its Python names; lists and maps element-wise."""
        if isinstance(value, pulumi.Output) or value is None:
            return value
        t = ptypes.unwrap_type(hint)
        origin = typing.get_origin(t)
        if isinstance(value, list) and origin in (list, abc.Sequence, typing.Sequence):
            (elem,) = typing.get_args(t) or (Any,)
            return [typed_value(v, elem) for v in value]
        if isinstance(value, dict) and origin in (dict, abc.Mapping, typing.Mapping):
            elem = (typing.get_args(t) or (Any, Any))[-1]
            return {k: typed_value(v, elem) for k, v in value.items()}
        if isinstance(value, dict) and isinstance(t, type) and ptypes.is_input_type(t):
            return t(**typed_kwargs(t, value))
        return value

    names: dict[Any, tuple[dict[str, str], dict[str, Any]]] = {}

    def typed_kwargs(args_cls: Any, wire: dict[str, Any]) -> dict[str, Any]:
        py, hints = typed_names(args_cls)
        return {py[k]: typed_value(v, hints.get(k, Any)) for k, v in wire.items() if k in py}

    def typed_names(args_cls: Any) -> tuple[dict[str, str], dict[str, Any]]:
        """An input type's wire -> Python names and its wire name -> type hint (looked up
        once per class, as a program has them written in its source)."""
        if args_cls not in names:
            py = {p: n for n, p in ptypes.input_type_py_to_pulumi_names(args_cls).items()}
            names[args_cls] = (py, ptypes.input_type_types(args_cls))
        return names[args_cls]

    def args_class(cls: Any) -> Any:
        return getattr(sys.modules[cls.__module__], cls.__name__ + "Args")

    def typed_args(cls: Any, inputs: dict[str, Any]) -> Any:
        """``inputs`` (already typed values, or Outputs of them, by wire name) as the
        resource's ``…Args`` object."""
        args_cls = args_class(cls)
        py = typed_names(args_cls)[0]
        return args_cls(**{py[k]: v for k, v in inputs.items() if k in py})

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
            cls = typed_class(typ) if typed else None
            if cls is not None:
                res = cls(name, typed_args(cls, inputs), opts)
            elif typ.startswith("pulumi:providers:"):
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

    # Typed: the provider SDKs' classes and each resource's values as the typed SDK takes
    # them (…Args objects, keyed by wire name until typed_args) are made before the timing,
    # so the floor does not count converting the plan back into a program.
    typed_inputs: dict[str, dict[str, Any]] = {}
    for rec in records if typed else ():
        cls = typed_class(rec["type"])
        if cls is not None:
            hints = typed_names(args_class(cls))[1]
            typed_inputs[rec["urn"]] = {
                k: typed_value(v, hints.get(k, Any)) for k, v in (rec.get("inputs") or {}).items()
            }
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
    # The floor must register what twinstack recorded: count the custom resources whose
    # registered inputs differ from the plan's (after the timing; mocks see wire values).
    differ = sum(
        1
        for r in records
        if r["custom"]
        and not r["type"].startswith("pulumi:providers:")
        and json.loads(json.dumps(registered.get((r["type"], r["name"])), default=str))
        != (r.get("inputs") or {})
    )
    return wall, len(records), differ


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--twinstack":
        root = Path(sys.argv[4]) if len(sys.argv) > 4 else ROOT
        print(json.dumps({"wall": run_twinstack(int(sys.argv[2]), Path(sys.argv[3]), root)}))
        return
    if len(sys.argv) > 3 and sys.argv[1] == "--floor":
        mode = sys.argv[3]
        wall, count, differ = run_floor(
            Path(sys.argv[2]), mode in ("outputs", "typed"), typed=mode.startswith("typed")
        )
        print(json.dumps({"wall": wall, "resources": count, "differ": differ}))
        return
    args = sys.argv[1:]
    baseline: Path | None = None
    if "--baseline" in args:  # another checkout's twinstack, planned in the same run
        at = args.index("--baseline")
        baseline = Path(args[at + 1]).resolve()
        del args[at : at + 2]
    repeat = 1
    if "--repeat" in args:  # rounds; each column's median is reported
        at = args.index("--repeat")
        repeat = int(args[at + 1])
        del args[at : at + 2]
    sizes = [int(a) for a in args] or [1000]
    modes = {
        "typed": "typed",
        "typed-plain": "typed plain",
        "outputs": "untyped",
        "plain": "untyped plain",
    }
    print(
        f"{'services':>9} {'resources':>10} {'twinstack s':>12} "
        + " ".join(f"{label + ' s':>16} {'ratio':>6}" for label in modes.values())
    )
    for n in sizes:
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                plan_file = Path(tmp) / "plan.json"

                def child(*args: str, code: Path = ROOT) -> dict[str, Any]:
                    env = dict(os.environ, PYTHONPATH=str(code)) if code != ROOT else None
                    out = subprocess.run(
                        [sys.executable, *CHILD_PREFIX, __file__, *args],
                        check=True,
                        capture_output=True,
                        text=True,
                        cwd=code,
                        env=env,
                    )
                    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
                    return result

                runs.setdefault("", []).append(child("--twinstack", str(n), str(plan_file)))
                for m in modes:
                    runs.setdefault(m, []).append(child("--floor", str(plan_file), m))
                if baseline is not None:
                    base_plan = str(Path(tmp) / "base.json")
                    base = child("--twinstack", str(n), base_plan, str(baseline), code=baseline)
                    runs.setdefault("baseline", []).append(base)
        if repeat > 1:
            for key, got in runs.items():
                walls = " / ".join(f"{r['wall']:.2f}" for r in got)
                print(f"  {key or 'twinstack'}: {walls} s")
        median = {
            k: {
                **v[0],
                "wall": statistics.median(r["wall"] for r in v),
                "differ": max(r.get("differ", 0) for r in v),
            }
            for k, v in runs.items()
        }
        ours = median[""]
        floors = {m: median[m] for m in modes}
        rows = [("", ours)] + ([("baseline", median["baseline"])] if baseline is not None else [])
        for m, f in floors.items():
            if f["differ"]:
                print(
                    f"  {modes[m]} floor: {f['differ']} resource(s) registered other inputs than the plan's"
                )
        for label, row in rows:
            cells = " ".join(
                f"{floors[m]['wall']:>16.2f} {row['wall'] / floors[m]['wall']:>6.2f}" for m in modes
            )
            first = f"{n:>9} {floors['typed']['resources']:>10}" if not label else f"{label:>20}"
            print(f"{first} {row['wall']:>12.2f} {cells}", flush=True)


if __name__ == "__main__":
    main()
