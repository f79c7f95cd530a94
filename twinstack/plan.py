"""Offline plan: run the Pulumi program under Pulumi's mocks and record every resource.

No Pulumi CLI, no daemons. The recorder sits where the engine would: it subclasses
Pulumi's ``MockMonitor`` and keeps each ``RegisterResource`` request (type, name,
parent, provider, options and the wire-format inputs) and the stack's outputs. The
document it returns is specified in ``docs/plan-format.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import gc
import json
import os
import runpy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import resource as presource
from pulumi.runtime import settings as psettings
from pulumi.runtime import stack as pstack
from pulumi.runtime.config import set_all_config
from pulumi.runtime.proto import resource_pb2, source_pb2
from pulumi.runtime.sync_await import _sync_await

from components.spec import PROJECT, RUNTIMES, read_stack_file
from twinstack import wire
from twinstack.errors import SpecError, TwinstackError
from twinstack.program import STACK_FILE_ENV

PLAN_VERSION = 1
SECRET_SIG, SIG_KEY, UNKNOWN = wire.SECRET_SIG, wire.SIG_KEY, wire.UNKNOWN


def project_root(start: Path | None = None) -> Path:
    """The directory holding ``Pulumi.yaml`` (searching upward from ``start`` or the CWD)."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "Pulumi.yaml").is_file() and (d / "__main__.py").is_file():
            return d
    pkg_root = Path(__file__).resolve().parent.parent
    if (pkg_root / "Pulumi.yaml").is_file():
        return pkg_root
    raise TwinstackError(f"no Pulumi.yaml found in {here} or its parents; run from the project")


def stack_names(root: Path) -> list[str]:
    """Stacks with a file in ``stacks/``, sorted."""
    return sorted(
        p.name.removeprefix("Pulumi.").removesuffix(".yaml")
        for p in (root / "stacks").glob("Pulumi.*.yaml")
    )


def stack_file_of(stack: str, root: Path) -> Path:
    """``stacks/Pulumi.<stack>.yaml`` under ``root``; a clear error if there is none."""
    path = root / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = ", ".join(stack_names(root)) or "none"
        raise SpecError(
            f"{path}: no such stack file; stacks in {root / 'stacks'}: {known} "
            f"(create one with `pulumi stack init {stack}` and a config block)"
        )
    return path


def _plain(value: Any) -> Any:
    """Wire JSON with integral floats back to ints (Struct numbers are doubles)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _mock_id(typ: str, name: str, inputs: Mapping[str, Any]) -> str:
    """Stable, readable ids; libvirt volume ids are their pool paths, as for real."""
    if typ == "libvirt:index/volume:Volume" and "pool" in inputs:
        return f"{inputs['pool']}/{inputs.get('name', name)}"
    return f"{name}-id"


class _Mocks(pmocks.Mocks):
    """Resources echo their inputs as state (see ``RecordingMonitor.RegisterResource``)."""

    def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        return _mock_id(args.typ, args.name, args.inputs), dict(args.inputs)

    def call(
        self, args: pmocks.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(pmocks.MockMonitor):
    """A mock resource monitor that records what the engine would receive."""

    def __init__(
        self,
        mocks: pmocks.Mocks,
        *,
        preview: bool = False,
        sink: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(mocks)
        self.preview = preview
        self.sink = sink  # told of each record as it is made (registration order)
        self.records: list[dict[str, Any]] = []
        self.stack_outputs: dict[str, Any] = {}
        self.stack_urn = ""

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """The engine's URN: the full chain of parent types, without the root stack's."""
        qualified = type_
        if parent and parent != self.stack_urn:
            qualified = parent.split("::")[2] + "$" + type_
        return "urn:pulumi:" + "::".join(
            [pulumi.get_stack(), pulumi.get_project(), qualified, name]
        )

    def RegisterResource(self, request: Any) -> Any:
        """Record the request and answer as ``_Mocks.new_resource`` would (state = inputs).

        Echoing the request's own wire struct back as the state is what the base class
        does after a deserialize/serialize round trip; doing it directly keeps a
        thousand-service plan within seconds.
        """
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            self.stack_urn = urn
            return resource_pb2.RegisterResourceResponse(urn=urn)
        inputs = _plain(json_format.MessageToDict(request.object))
        # Under a preview the engine knows no ids of resources still to be created: an
        # empty id makes the SDK resolve `id` as unknown, so inputs that reference it
        # (volumeId, networkId, cloudinit) are recorded as unknown, as the engine sends them.
        id_ = _mock_id(request.type, request.name, inputs) if request.custom else ""
        if self.preview:
            id_ = ""
        self.resources[urn] = pmocks.MockMonitor.ResourceRegistration(urn, id_, inputs)
        record = {
            "urn": urn,
            "id": id_ or (UNKNOWN if self.preview and request.custom else None),
            "type": request.type,
            "name": request.name,
            "custom": bool(request.custom),
            "parent": request.parent if request.parent != self.stack_urn else None,
            "provider": request.provider or None,
            "protect": bool(request.protect),
            "deleteBeforeReplace": bool(request.deleteBeforeReplace),
            "dependencies": sorted(set(request.dependencies)),
            "aliases": [json_format.MessageToDict(a) for a in request.aliases],
            "inputs": inputs,
        }
        self.records.append(record)
        if self.sink is not None:
            self.sink(record)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=request.object)

    def RegisterResourceOutputs(self, request: Any) -> Any:
        if request.urn == self.stack_urn:
            self.stack_outputs = _plain(json_format.MessageToDict(request.outputs))
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


def _mock_config(
    config: Mapping[str, Any], runtime: str | None
) -> tuple[dict[str, str], list[str]]:
    """Stack-file config as the engine passes it: strings, JSON for objects; secrets as
    ``[secret:<key>]`` placeholders (the offline plan never decrypts).

    Only the program's own keys (``twinstack:*``, and bare keys, which are its too) are
    JSON-encoded: they are all it reads (``spec_from_config`` skips other namespaces and
    components never read config). Keys of other namespaces (``docker:host``) are passed
    as they are when they are strings or scalars; their lists and mappings are left out
    rather than encoded for no reader.
    """
    out: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in config.items():
        ns = key.rpartition(":")[0]  # as spec_from_config splits keys
        full = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            out[full] = f"[secret:{full.split(':', 1)[1]}]"
            secret_keys.append(full)
        elif isinstance(value, str):
            out[full] = value
        elif ns in ("", PROJECT) or not isinstance(value, dict | list):
            out[full] = json.dumps(value)
    if runtime is not None:
        out[f"{PROJECT}:runtime"] = runtime
    return out, secret_keys


def _no_stack_trace() -> Any:
    return source_pb2.StackTrace()


def run_program(
    root: Path,
    stack: str,
    config: dict[str, str],
    secret_keys: list[str],
    *,
    preview: bool = False,
    sink: Callable[[dict[str, Any]], None] | None = None,
) -> RecordingMonitor:
    """Run ``root/__main__.py`` under mocks in an isolated context; return the recorder."""
    monitor = RecordingMonitor(_Mocks(), preview=preview, sink=sink)
    main = root / "__main__.py"

    def _go() -> None:
        # a fresh root per run: set_mocks only creates one when none is set
        psettings.set_root_resource(None)  # type: ignore[arg-type]
        pmocks.set_mocks(_Mocks(), project=PROJECT, stack=stack, preview=preview, monitor=monitor)
        psettings.set_root_resource(None)  # type: ignore[arg-type]
        set_all_config(config, secret_keys)

        def program() -> None:
            runpy.run_path(str(main), run_name="__main__")

        _sync_await(pstack.run_in_stack(program))

    # Source positions only matter to the engine's diagnostics; computing them walks the
    # whole Python stack per resource and is most of the cost of a large offline plan.
    saved_trace = presource._get_stack_trace
    presource._get_stack_trace = _no_stack_trace
    # A plan allocates millions of short-lived futures; the default GC thresholds make
    # collections grow with the heap (quadratic in services). Collect rarely while planning.
    thresholds = gc.get_threshold()
    gc.set_threshold(1_000_000, 1000, 1000)
    loop = asyncio.new_event_loop()
    # the mock monitor answers in microseconds: one worker thread, no GIL contention
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    previous = None
    with contextlib.suppress(RuntimeError):
        previous = asyncio.get_event_loop_policy().get_event_loop()
    asyncio.set_event_loop(loop)
    cwd = Path.cwd()
    os.chdir(root)  # the engine runs a program in its project directory
    try:
        contextvars.copy_context().run(_go)
    except pulumi.RunError as exc:
        raise TwinstackError(str(exc)) from None
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(previous)
        presource._get_stack_trace = saved_trace
        gc.set_threshold(*thresholds)
        os.chdir(cwd)
    return monitor


def tree_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records in a fixed order whatever order the SDK registered them in (it resolves
    outputs concurrently): the resource tree depth first, siblings by (type, name), so the
    same stack always gives the same plan document."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    for rec in records:
        children.setdefault(rec["parent"], []).append(rec)
    for kids in children.values():
        kids.sort(key=lambda r: (r["type"], r["name"]))
    out: list[dict[str, Any]] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        rec = stack.pop()
        out.append(rec)
        stack.extend(reversed(children.get(rec["urn"], [])))
    if len(out) != len(records):  # a parent that was never registered: keep the rest too
        seen = {id(r) for r in out}
        out += sorted((r for r in records if id(r) not in seen), key=lambda r: r["urn"])
    return out


def plan_stack(
    stack: str,
    runtime: str | None = None,
    *,
    root: Path | None = None,
    preview: bool = False,
    stack_file: Path | None = None,
    sink: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Plan one stack (optionally with another runtime) and return the plan document.

    ``sink`` is told of each resource record as the program registers it (the engine's
    order, which varies between runs; the document's order is fixed).
    """
    root = project_root() if root is None else root
    if runtime is not None and runtime not in RUNTIMES:
        raise SpecError(f"--runtime: {runtime!r} is not allowed; allowed: {', '.join(RUNTIMES)}")
    path = stack_file or stack_file_of(stack, root)
    raw = read_stack_file(path)
    config, secret_keys = _mock_config(raw, runtime)
    try:
        shown = str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        shown = str(path)
    saved = os.environ.get(STACK_FILE_ENV)
    os.environ[STACK_FILE_ENV] = shown
    try:
        monitor = run_program(root, stack, config, secret_keys, preview=preview, sink=sink)
    finally:
        if saved is None:
            os.environ.pop(STACK_FILE_ENV, None)
        else:
            os.environ[STACK_FILE_ENV] = saved
    return {
        "version": PLAN_VERSION,
        "project": PROJECT,
        "stack": stack,
        "stackFile": shown,
        "runtime": monitor.stack_outputs.get("runtime", runtime),
        "preview": preview,
        "resources": tree_order(monitor.records),
        "outputs": monitor.stack_outputs,
    }


def plan_stack_apart(
    stack: str,
    runtime: str | None = None,
    *,
    root: Path | None = None,
    preview: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_forked: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """:func:`plan_stack` in a forked child process; the same plan document.

    For commands that go on working with a plan (``policy``, ``diff``): the SDK's objects
    of a plan — most of a large plan's memory (5,000 services: ≈ 3.4 GiB, against ≈ 0.1
    GiB for the document) — stay in the child and go with it, so the command's peak is
    the plan's own rather than the plan's plus what comes after (policy packs).

    The child sends each resource record as the program registers it, one JSON line
    each, then the document with the resources' URNs in its order. ``on_record`` is
    called (in this process, in registration order) with each record as it arrives, so a
    caller can work on a resource while the rest of the stack is still being planned, as
    the engine's analyzers do; ``on_forked`` is called once the child runs (a caller may
    start threads from then on). Where ``fork`` is unavailable this is :func:`plan_stack`.
    """
    if not hasattr(os, "fork"):
        if on_forked is not None:
            on_forked()
        return plan_stack(stack, runtime, root=root, preview=preview, sink=on_record)
    import signal

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: plan, send the records and the document (or the error)
        os.close(read_fd)
        code = 0
        try:
            with os.fdopen(write_fd, "w", encoding="utf-8") as pipe:

                def send(record: dict[str, Any]) -> None:
                    pipe.write(json.dumps({"record": record}) + "\n")

                try:
                    doc = plan_stack(stack, runtime, root=root, preview=preview, sink=send)
                    doc["resources"] = [r["urn"] for r in doc["resources"]]
                    out: dict[str, Any] = {"plan": doc}
                except TwinstackError as exc:
                    out = {"error": str(exc)}
                except Exception as exc:  # a bug: the parent reports it as one
                    out = {"internal": f"{type(exc).__name__}: {exc}"}
                pipe.write(json.dumps(out) + "\n")
        except KeyboardInterrupt:
            code = 130
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    records: dict[str, dict[str, Any]] = {}
    if on_forked is not None:
        try:
            on_forked()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
    last: dict[str, Any] = {}
    try:
        with os.fdopen(read_fd, "rb", buffering=1 << 20) as lines:
            for line in lines:
                message = json.loads(line)
                record = message.get("record")
                if record is None:
                    last = message
                    continue
                records[record["urn"]] = record
                if on_record is not None:
                    on_record(record)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # nobody wants the rest of this plan
        raise
    finally:
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        raise TwinstackError(f"planning stack {stack!r} failed: the planning process got {sig}")
    if os.waitstatus_to_exitcode(status) == 130:
        raise KeyboardInterrupt
    if not last:
        raise TwinstackError(f"planning stack {stack!r} failed: the planning process said nothing")
    if "error" in last:
        raise TwinstackError(last["error"])
    if "internal" in last:
        raise RuntimeError(last["internal"])
    result: dict[str, Any] = last["plan"]
    result["resources"] = [records[urn] for urn in result["resources"]]
    return result


def load_plan(path: Path) -> dict[str, Any]:
    """Read a plan document written by ``twinstack plan --format json``."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TwinstackError(f"{path}: no such plan file") from None
    except ValueError as exc:
        raise TwinstackError(f"{path}: not a JSON plan: {exc}") from None
    if not isinstance(doc, dict) or "resources" not in doc:
        raise TwinstackError(f"{path}: not a twinstack plan (no `resources` list)")
    return doc
