"""Feed a recorded plan to policy packs through the analyzer protocol.

The order of calls is the engine's during ``pulumi preview --policy-pack``: for every
resource registration, ``Remediate`` then ``Analyze`` (on the remediated inputs), and once
all resources are known, ``AnalyzeStack``. Diagnostics are attributed as the engine does:
``Analyze`` results to the analyzed resource, ``AnalyzeStack`` results to the URN the pack
named if it is in the stack, else to the root stack.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi.runtime.proto import analyzer_pb2

from components.spec import read_stack_file
from twinstack.errors import TwinstackError
from twinstack.policy import config as cfg
from twinstack.policy.host import (
    DEFAULT_STARTUP_TIMEOUT,
    AnalyzerProcess,
    StackContext,
)
from twinstack.policy.limits import DEFAULT_CALL_TIMEOUT
from twinstack.policy.report import PackResult, PolicyRemediation, PolicyReport, PolicyViolation
from twinstack.policy.wire import (
    analyze_request,
    analyzer_resource,
    stack_resource,
    struct_to_python,
)

_SEVERITY = {0: "", 1: "low", 2: "medium", 3: "high", 4: "critical"}


class PlanFormatError(TwinstackError):
    """The plan document does not follow docs/plan-format.md."""


def _check_resource(i: int, res: Any) -> dict[str, Any]:
    if not isinstance(res, Mapping):
        raise PlanFormatError(f"plan: resources[{i}] must be an object")
    for key in ("urn", "type", "name"):
        if not isinstance(res.get(key), str) or not res.get(key):
            raise PlanFormatError(f"plan: resources[{i}].{key} must be a non-empty string")
    if not isinstance(res.get("inputs", {}), Mapping):
        raise PlanFormatError(f"plan: resources[{i}].inputs must be an object")
    return dict(res)


def _resource_list(plan: Mapping[str, Any]) -> list[Any]:
    if not isinstance(plan, Mapping):
        raise PlanFormatError("plan: expected a JSON object (see docs/plan-format.md)")
    resources = plan.get("resources")
    if not isinstance(resources, list):
        raise PlanFormatError("plan: 'resources' must be a list (see docs/plan-format.md)")
    return resources


def check_plan(plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Validate the parts of a plan document the harness relies on; return its resources."""
    return [_check_resource(i, res) for i, res in enumerate(_resource_list(plan))]


def root_stack_urn(plan: Mapping[str, Any]) -> str:
    stack = str(plan.get("stack", "dev"))
    project = str(plan.get("project", "twinstack"))
    return f"urn:pulumi:{stack}::{project}::pulumi:pulumi:Stack::{project}-{stack}"


def stack_config(
    plan: Mapping[str, Any], root: Path | None, *, strict: bool = False
) -> dict[str, str]:
    """The stack file's ``config:`` block as the engine passes it (``PULUMI_CONFIG``).

    Values are strings; structured values are JSON-encoded, as the CLI does. A file that
    cannot be read gives no config (a recorded plan may outlive its stack file), or with
    ``strict`` (the stack is about to be planned from it) its error.
    """
    stack_file = plan.get("stackFile")
    if not isinstance(stack_file, str) or not stack_file:
        return {}
    path = Path(stack_file)
    if not path.is_absolute() and root is not None:
        path = root / path
    try:
        # the one bounded reader of stack files (size, aliases, encoding, tags)
        config = read_stack_file(path)
    except TwinstackError:
        if strict:
            raise
        return {}
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and "secure" in value:
            continue  # encrypted values cannot be decrypted offline
        out[str(key)] = value if isinstance(value, str) else json.dumps(value)
    return out


def _pack_path(pack_dir: Path, root: Path | None) -> str:
    pack_dir = pack_dir.resolve()
    if root is not None:
        try:
            return str(pack_dir.relative_to(root.resolve()))
        except ValueError:
            pass
    return str(pack_dir)


@dataclass(frozen=True)
class _End:
    """The plan is complete: its resources in the plan's order and their messages for
    ``AnalyzeStack`` (built once for every pack)."""

    resources: list[dict[str, Any]]
    stack: list[analyzer_pb2.AnalyzerResource]


_Item = tuple[dict[str, Any], analyzer_pb2.AnalyzeRequest] | _End | None


class _PackFailed(Exception):
    """Raised into the planner when a pack has failed; the pack's own error is reported."""


class _Feed:
    """What each pack's thread works through, in the order the plan makes it: every resource
    with its ``Analyze`` request (built once, sent by every pack as it is; a pack that
    remediates a resource builds that resource's messages anew), then :class:`_End`, or
    ``None`` if planning failed."""

    def __init__(self, packs: int) -> None:
        self.queues: list[queue.SimpleQueue[_Item]] = [queue.SimpleQueue() for _ in range(packs)]
        self.by_urn: dict[str, dict[str, Any]] = {}
        self.providers: dict[str, analyzer_pb2.AnalyzerProviderResource] = {}
        self.stack_entries: dict[str, bytes] = {}
        self.failed = threading.Event()  # a pack failed: planning on is for naught

    def add(self, record: Mapping[str, Any]) -> None:
        if self.failed.is_set():
            raise _PackFailed
        res = _check_resource(len(self.by_urn), record)
        self.by_urn[res["urn"]] = res
        request = analyze_request(res, self.by_urn, self.providers)
        # its AnalyzeStack entry, from the request's parts, kept as bytes (compact) until
        # the plan is complete: the stack's messages are not built all at its end
        self.stack_entries[res["urn"]] = stack_resource(request, res).SerializeToString()
        for q in self.queues:
            q.put((res, request))

    def end(self, plan: Mapping[str, Any]) -> None:
        # the complete plan's records, in its order: the ones fed (checked then) as they are
        resources: list[dict[str, Any]] = []
        for i, r in enumerate(_resource_list(plan)):
            fed = self.by_urn.get(str(r.get("urn"))) if isinstance(r, Mapping) else None
            resources.append(fed if fed is not None else _check_resource(i, r))
        by_urn = {r["urn"]: r for r in resources}
        entries = self.stack_entries
        stack = [
            analyzer_pb2.AnalyzerResource.FromString(entries.pop(r["urn"]))
            if r["urn"] in entries and self.by_urn.get(r["urn"]) is r
            else analyzer_resource(r, by_urn, self.providers)
            for r in resources
        ]
        for q in self.queues:
            q.put(_End(resources, stack))

    def abort(self) -> None:
        for q in self.queues:
            q.put(None)


SKIP_BY_TYPE = True
"""Whether the harness skips ``Analyze`` calls a pack can only answer with nothing (the
tests turn it off to compare the reports)."""


def _analyzed_types(pack_dir: Path, policies: Sequence[str]) -> frozenset[str] | None:
    """The resource types the pack's enabled resource ``policies`` answer, from the rule
    library next to the pack (``policies/twinstack_rules``: ``analyzed_types()``), or
    ``None`` (ask about every resource) when there is none or a policy is not in it."""
    library = pack_dir.resolve().parent / "twinstack_rules"
    if not SKIP_BY_TYPE or not (library / "__init__.py").is_file():
        return None
    try:
        rules = _rule_library(library)
        table = rules.analyzed_types()
    except Exception:  # a library that does not load is the pack's to report
        return None
    types: set[str] = set()
    for name in policies:
        if name not in table:
            return None
        types |= table[name]
    return frozenset(types)


_LIBRARIES: dict[Path, Any] = {}
_LIBRARY_LOCK = threading.Lock()


def _rule_library(library: Path) -> Any:
    """``twinstack_rules`` from ``library``, loaded once; a library of that name already
    loaded from elsewhere is an error (the caller then asks about every resource)."""
    import importlib.util
    import sys

    with _LIBRARY_LOCK:
        if library not in _LIBRARIES:
            name = "twinstack_rules"
            loaded = sys.modules.get(name)
            if loaded is not None and Path(loaded.__file__ or "").parent == library:
                _LIBRARIES[library] = loaded
            elif loaded is None:
                # the library imports itself by name (`from twinstack_rules import ...`)
                spec = importlib.util.spec_from_file_location(
                    name, library / "__init__.py", submodule_search_locations=[str(library)]
                )
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
                _LIBRARIES[library] = module
            else:
                raise ImportError(f"another twinstack_rules is loaded: {loaded.__file__}")
        return _LIBRARIES[library]


def _run_one(
    head: Mapping[str, Any],
    stack_cfg: dict[str, str],
    items: queue.SimpleQueue[_Item],
    pack_dir: Path,
    config: Mapping[str, Any] | None,
    *,
    root: Path | None,
    startup_timeout: float,
    call_timeout: float,
    config_source: str,
) -> tuple[PackResult, set[str]] | None:
    """One pack over the feed; None if planning failed before the plan was complete."""
    context = StackContext(
        project=str(head.get("project", "twinstack")),
        stack=str(head.get("stack", "dev")),
        dry_run=True,
        config=stack_cfg,
    )
    root_urn = root_stack_urn(head)
    with AnalyzerProcess(
        pack_dir, context, startup_timeout=startup_timeout, call_timeout=call_timeout
    ) as proc:
        proc.handshake()
        proc.configure_stack()
        info = proc.get_analyzer_info()
        entries = cfg.reconcile(info, config, config_source)
        proc.configure(cfg.to_proto(entries))
        proc.get_plugin_info()
        version = proc.project.version or info.version
        result = PackResult(
            name=info.name,
            version=version,
            path=_pack_path(pack_dir, root),
            levels={k: v.enforcement_level or "advisory" for k, v in entries.items()},
        )
        known_policies = {p.name for p in info.policies}
        # Remediate only where a policy can remediate (its effective level): a pack without
        # one answers every Remediate with nothing, one round trip per resource for naught.
        remediating = any(v.enforcement_level == "remediate" for v in entries.values())
        # Analyze only where a resource policy can answer: a pack whose enabled policies are
        # all stack policies answers every Analyze with nothing (a policy of unknown type,
        # from an SDK that does not say, is asked).
        kinds = {p.name: p.policy_type for p in info.policies}
        resource_policies = [
            name
            for name, v in entries.items()
            if kinds.get(name) != analyzer_pb2.POLICY_TYPE_STACK
            and v.enforcement_level != "disabled"
        ]
        analyzing = bool(resource_policies)
        # ...and only for the types those policies answer, where the pack's rule library
        # says which (twinstack's packs; any other pack is asked about every resource)
        only = _analyzed_types(pack_dir, resource_policies)

        def violation(diag: Any, urn: str, stack_policy: bool) -> PolicyViolation:
            level = cfg.level_name(diag.enforcementLevel)
            if level == "remediate":
                level = "mandatory"  # a remediation that still violates is mandatory
            return PolicyViolation(
                pack=diag.policyPackName or info.name,
                pack_version=version,
                policy=diag.policyName,
                level=level,
                description=diag.description,
                message=diag.message,
                urn=urn,
                stack_policy=stack_policy,
                severity=_SEVERITY.get(int(diag.severity), ""),
            )

        # What each resource's calls found, reported in the plan's order at the end (the
        # resources arrive in registration order, which varies between runs).
        found: dict[str, PackResult] = {}
        remediated: dict[str, dict[str, Any]] = {}
        while True:
            item = items.get()
            if item is None:
                return None
            if isinstance(item, _End):
                break
            res, request = item
            part = found[res["urn"]] = PackResult(info.name, version, "")
            remediations = proc.remediate(request).remediations if remediating else []
            for rem in remediations:
                if rem.diagnostic:
                    part.violations.append(
                        PolicyViolation(
                            pack=rem.policyPackName or info.name,
                            pack_version=version,
                            policy=rem.policyName,
                            level="advisory",
                            description=rem.description,
                            message=rem.diagnostic,
                            urn=res["urn"],
                        )
                    )
                    continue
                after = struct_to_python(rem.properties)
                part.remediations.append(
                    PolicyRemediation(
                        pack=rem.policyPackName or info.name,
                        pack_version=version,
                        policy=rem.policyName,
                        description=rem.description,
                        urn=res["urn"],
                        before=dict(res.get("inputs") or {}),
                        after=after,
                    )
                )
                res = {**res, "inputs": after}
                provider = request.provider if request.HasField("provider") else None
                request = analyze_request(res, {})
                if provider is not None:
                    request.provider.CopyFrom(provider)
                remediated[res["urn"]] = res
            if not analyzing or (only is not None and res["type"] not in only):
                continue
            response = proc.analyze(request)
            for diag in response.diagnostics:
                part.violations.append(violation(diag, res["urn"], False))
            for na in response.not_applicable:
                part.not_applicable.append((na.policy_name, na.reason))
        for res in item.resources:
            done = found.get(res["urn"])
            if done is not None:
                result.violations += done.violations
                result.remediations += done.remediations
                result.not_applicable += done.not_applicable
        if remediated:
            final = [remediated.get(r["urn"], r) for r in item.resources]
            final_by_urn = {r["urn"]: r for r in final}
            stack_resources = [analyzer_resource(r, final_by_urn) for r in final]
        else:
            stack_resources = item.stack
        stack_response = proc.analyze_stack(stack_resources)
        in_stack = {r["urn"] for r in item.resources}
        for diag in stack_response.diagnostics:
            urn = diag.urn if diag.urn in in_stack else root_urn
            result.violations.append(violation(diag, urn, True))
        proc.cancel()
    return result, known_policies


def run_packs(
    plan: Mapping[str, Any],
    pack_dirs: Sequence[Path],
    config: Mapping[str, Any] | None = None,
    *,
    produce: Callable[[Callable[[Mapping[str, Any]], None]], Mapping[str, Any]] | None = None,
    root: Path | None = None,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    call_timeout: float = DEFAULT_CALL_TIMEOUT,
    config_source: str = "policy config",
    parallel: bool = True,
    strict_config: bool = True,
) -> PolicyReport:
    """Run every pack in ``pack_dirs`` over ``plan``; one report for the plan.

    With ``produce``, the packs run while it plans, as under the engine: each resource is
    analyzed as soon as it is registered, and the stack once the plan is complete.
    ``plan`` then only names the plan to come (``project``, ``stack``, ``stackFile``);
    ``produce(feed)`` calls ``feed(record)`` for each resource record as it is made and
    returns the plan document. An error from ``produce`` stops the packs and is raised.

    With ``strict_config`` a config key that names no policy of any of the packs is an error
    (a typo would otherwise silently leave a policy at its default level).
    """
    head = plan
    planning = produce is not None
    if produce is None:
        check_plan(plan)

        def produce(feed: Callable[[Mapping[str, Any]], None]) -> Mapping[str, Any]:
            for res in head["resources"]:
                feed(res)
            return head

    # the stack file, read once for every pack; one the planner would refuse (not YAML,
    # over its bounds) is reported before any pack starts
    stack_cfg = stack_config(head, root, strict=planning)
    if not pack_dirs:
        raise TwinstackError("no policy packs to run (no --pack given and none under policies/)")
    cfg.parse_config(config, config_source)  # fail fast on malformed levels
    feed = _Feed(len(pack_dirs))

    def run(index: int) -> tuple[PackResult, set[str]] | None:
        try:
            return _run_one(
                head,
                stack_cfg,
                feed.queues[index],
                pack_dirs[index],
                config,
                root=root,
                startup_timeout=startup_timeout,
                call_timeout=call_timeout,
                config_source=config_source,
            )
        except BaseException:
            feed.failed.set()  # stops the planning at its next resource
            raise

    workers = len(pack_dirs) if parallel else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures: list[Future[tuple[PackResult, set[str]] | None]] = []

        def start() -> None:
            # the packs start once `produce` has forked its planning child (a fork while
            # threads are inside gRPC is unsafe): its `start()`, else the first resource
            if not futures:
                futures.extend(pool.submit(run, i) for i in range(len(pack_dirs)))

        def feed_one(record: Mapping[str, Any]) -> None:
            start()
            feed.add(record)

        feed_one.start = start  # type: ignore[attr-defined]

        try:
            done = produce(feed_one)
            if not futures:  # a plan without resources
                futures.extend(pool.submit(run, i) for i in range(len(pack_dirs)))
            feed.end(done)
        except BaseException as exc:
            feed.abort()
            for future in futures:
                future.cancel()
            if not feed.failed.is_set() or not isinstance(exc, Exception):
                raise
            # planning stopped because a pack failed (the planner may say so in its own
            # words): the pack's error is the one to report
            for future in futures:
                if not future.cancelled() and future.exception() is not None:
                    raise future.exception() from None  # type: ignore[misc]
            raise
        results = [future.result() for future in futures]
    outcomes = [r for r in results if r is not None]

    known: set[str] = {"all"}
    for _, names in outcomes:
        known |= names
    unknown = sorted(set(config or {}) - known - {"environments"})
    if unknown and strict_config:
        raise cfg.PolicyConfigError(
            f"{config_source}: no pack has a policy named "
            f"{', '.join(repr(u) for u in unknown)} (known: {', '.join(sorted(known - {'all'}))})"
        )
    return PolicyReport(
        stack=str(done.get("stack", "")),
        runtime=str(done.get("runtime", "")),
        resources=len(done["resources"]),
        packs=[r for r, _ in outcomes],
    )


def run_policy(
    plan: Mapping[str, Any],
    pack_dir: Path,
    config: Mapping[str, Any] | None = None,
    *,
    root: Path | None = None,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    call_timeout: float = DEFAULT_CALL_TIMEOUT,
) -> PolicyReport:
    """Run one policy pack over a recorded plan, through the analyzer protocol.

    ``config`` has the shape of ``pulumi preview --policy-pack-config``'s file. Raises
    :class:`~twinstack.errors.TwinstackError` (never passes silently) if the pack cannot be
    started, crashes, hangs past the timeouts, or the config does not match its schema.
    """
    return run_packs(
        plan,
        [pack_dir],
        config,
        root=root,
        startup_timeout=startup_timeout,
        call_timeout=call_timeout,
        parallel=False,
        strict_config=False,
    )
