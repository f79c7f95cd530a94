"""What keeps `twinstack policy` fast on large stacks without changing a verdict: packs are
not asked what they cannot answer, each resource is decoded once per analyzer call, and the
packs analyze the resources while the stack is still being planned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import (
    EnforcementLevel,
    ResourceValidationPolicy,
    StackValidationPolicy,
    policy,
)
from typer.testing import CliRunner

from twinstack.cli import app
from twinstack.policy import run_policy
from twinstack.policy.host import AnalyzerProcess
from twinstack.policy.wire import analyze_request, analyzer_resource

from ._support import FIXTURES, POLICIES, ROOT
from .test_harness import make_pack

runner = CliRunner()

PACK = """
from pulumi_policy import (PolicyPack, ResourceValidationPolicy, StackValidationPolicy,
                           EnforcementLevel)
def on_resource(args, report):
    if args.props.get("privileged"):
        report("privileged")
def on_stack(args, report):
    report(f"{{len(args.resources)}} resources")
PolicyPack("fake", [{policies}], enforcement_level=EnforcementLevel.MANDATORY)
"""
RESOURCE = 'ResourceValidationPolicy("on-resource", "Resource.", on_resource)'
STACK = 'StackValidationPolicy("on-stack", "Stack.", on_stack)'


def _plan(n: int) -> dict[str, Any]:
    return {
        "version": 1,
        "project": "twinstack",
        "stack": "t",
        "resources": [
            {
                "urn": f"urn:pulumi:t::twinstack::docker:index/container:Container::c{i}",
                "type": "docker:index/container:Container",
                "name": f"c{i}",
                "custom": True,
                "inputs": {"privileged": i == 0},
            }
            for i in range(n)
        ],
    }


@pytest.fixture
def analyze_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = AnalyzerProcess.analyze

    def counted(self: AnalyzerProcess, request: Any) -> Any:
        calls.append(request.urn)
        return real(self, request)

    monkeypatch.setattr(AnalyzerProcess, "analyze", counted)
    return calls


def test_a_pack_of_stack_policies_gets_no_analyze_calls(
    tmp_path: Path, analyze_calls: list[str]
) -> None:
    pack = make_pack(tmp_path, PACK.format(policies=STACK))
    report = run_policy(_plan(3), pack, startup_timeout=30, call_timeout=30)
    assert analyze_calls == []
    assert [(v.policy, v.detail) for v in report.violations] == [("on-stack", "3 resources")]


def test_disabled_resource_policies_are_not_asked(tmp_path: Path, analyze_calls: list[str]) -> None:
    pack = make_pack(tmp_path, PACK.format(policies=f"{RESOURCE}, {STACK}"))
    report = run_policy(_plan(3), pack, startup_timeout=30, call_timeout=30)
    assert len(analyze_calls) == 3  # enabled: one call per resource, as the engine does
    assert sorted(v.policy for v in report.violations) == ["on-resource", "on-stack"]

    analyze_calls.clear()
    report = run_policy(
        _plan(3), pack, {"on-resource": "disabled"}, startup_timeout=30, call_timeout=30
    )
    assert analyze_calls == []
    assert [v.policy for v in report.violations] == ["on-stack"]


def _servicer(policies: list[Any]) -> Any:
    return policy._PolicyAnalyzerServicer("p", "0.0.1", policies, EnforcementLevel.MANDATORY)


def test_each_resource_is_decoded_once_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from twinstack_rules import decode_once

    decoded: list[int] = []

    def counting(message: Any, *args: Any, **kwargs: Any) -> Any:
        decoded.append(id(message))
        return json_format.MessageToDict(message, *args, **kwargs)

    class Counting:
        MessageToDict = staticmethod(counting)

        def __getattr__(self, name: str) -> Any:
            return getattr(json_format, name)

    # the patch changes these; monkeypatch puts them back after the test
    monkeypatch.setattr(policy, "json_format", Counting())
    for name in ("deserialize_properties", "unknown_checking_proxy"):
        monkeypatch.setattr(policy, name, getattr(policy, name))
    for name in ("Analyze", "AnalyzeStack"):
        monkeypatch.setattr(
            policy._PolicyAnalyzerServicer, name, getattr(policy._PolicyAnalyzerServicer, name)
        )
    monkeypatch.setattr(decode_once, "_installed", False)

    seen: list[tuple[str, Any]] = []

    def resource_rule(name: str) -> Any:
        def validate(args: Any, report: Any) -> None:
            seen.append((name, dict(args.props)))
            if args.props["privileged"]:
                report(f"{name}: privileged")

        return ResourceValidationPolicy(name, name, validate)

    def stack_rule(name: str) -> Any:
        def validate(args: Any, report: Any) -> None:
            seen.append((name, [dict(r.props) for r in args.resources]))
            report(f"{name}: {sum(bool(r.props['privileged']) for r in args.resources)}")

        return StackValidationPolicy(name, name, validate)

    rules = [resource_rule(f"r{i}") for i in range(4)] + [stack_rule(f"s{i}") for i in range(3)]
    plan = _plan(5)
    by_urn = {r["urn"]: r for r in plan["resources"]}
    request = analyze_request(plan["resources"][0], by_urn)
    stack = analyzer_pb2.AnalyzeStackRequest(
        resources=[analyzer_resource(r, by_urn) for r in plan["resources"]]
    )

    def run() -> tuple[list[str], list[str], int, int, list[tuple[str, Any]]]:
        decoded.clear()
        seen.clear()
        one = [d.message for d in _servicer(rules).Analyze(request, None).diagnostics]
        per_resource = len(decoded)
        decoded.clear()
        whole = [d.message for d in _servicer(rules).AnalyzeStack(stack, None).diagnostics]
        return one, whole, per_resource, len(decoded), list(seen)

    before = run()
    assert decode_once.install()
    after = run()
    assert before[2:4] == (4, 3 * 5)  # pulumi-policy decodes per policy
    assert after[2:4] == (1, 5)  # once per resource and call
    assert after[0] == before[0] and after[1] == before[1]  # the same verdicts
    assert after[4] == before[4]  # every policy saw the same properties
    assert [m.splitlines()[-1] for m in after[1]] == ["s0: 1", "s1: 1", "s2: 1"]


def test_policy_while_planning_equals_policy_of_the_finished_plan(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    res = runner.invoke(app, ["plan", "--stack", "dev", "--format", "json", "-o", str(plan_file)])
    assert res.exit_code == 0, res.output
    from_file = runner.invoke(app, ["policy", "--plan", str(plan_file), "--format", "json"])
    streamed = runner.invoke(app, ["policy", "--stack", "dev", "--format", "json"])
    assert streamed.exit_code == from_file.exit_code, streamed.output
    assert json.loads(streamed.output) == json.loads(from_file.output)
    assert json.loads(streamed.output)[0]["resources"] > 0


def test_a_stack_that_fails_to_plan_stops_the_packs_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("Pulumi.yaml", "__main__.py"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "stacks").mkdir()
    text = (FIXTURES / "Pulumi.unsafe.yaml").read_text().replace("vcpus: 0.5", "vcpus: -1")
    assert "vcpus: -1" in text
    (tmp_path / "stacks" / "Pulumi.broken.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    packs = [a for p in ("guardrails", "container-security") for a in ("--pack", str(POLICIES / p))]
    res = runner.invoke(app, ["policy", "--stack", "broken", *packs])
    assert res.exit_code == 2, res.output
    assert "stacks/Pulumi.broken.yaml" in res.output and "vcpus" in res.output
    assert "Traceback" not in res.output


def test_a_pack_failing_while_planning_stops_the_planning(tmp_path: Path) -> None:
    from twinstack.policy import PolicyPackError, run_packs

    pack = make_pack(
        tmp_path,
        PACK.format(policies=RESOURCE).replace('report("privileged")', "import os; os._exit(7)"),
    )
    sent = 0

    def produce(feed: Any) -> dict[str, Any]:
        nonlocal sent
        template = _plan(1)["resources"][0]
        for i in range(1_000_000):  # far more than a pack needs to fail on the first
            feed({**template, "urn": f"{template['urn']}-{i}", "name": f"c{i}"})
            sent += 1
        return {**_plan(0), "resources": []}

    head = {"project": "twinstack", "stack": "t"}
    with pytest.raises(PolicyPackError, match=r"exited with code 7 during Analyze"):
        run_packs(head, [pack], produce=produce, startup_timeout=30, call_timeout=30)
    assert 0 < sent < 1_000_000


def test_twinstack_packs_are_asked_only_about_their_types(
    analyze_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """twinstack's packs get `Analyze` only for the resource types their policies answer
    (`twinstack_rules.analyzed_types`); the report is the same as when every pack is asked
    about every resource, as the engine does."""
    import dataclasses

    from twinstack.plan import plan_stack
    from twinstack.policy import run_packs
    from twinstack.policy import runner as policy_runner

    packs = [POLICIES / p for p in ("container-security", "guardrails", "vm-security")]
    answered = {
        t
        for ts in policy_runner._rule_library(POLICIES / "twinstack_rules")
        .analyzed_types()
        .values()
        for t in ts
    }
    assert (
        "docker:index/container:Container" in answered and "libvirt:index/domain:Domain" in answered
    )
    plans = [
        json.loads((FIXTURES / "unsafe-plan.json").read_text()),
        plan_stack("unsafe", "both", root=ROOT, stack_file=FIXTURES / "Pulumi.unsafe.yaml"),
    ]
    for plan in plans:
        types = {r["urn"]: r["type"] for r in plan["resources"]}
        skipping = dataclasses.asdict(run_packs(plan, packs, root=ROOT))
        asked = list(analyze_calls)
        analyze_calls.clear()
        monkeypatch.setattr(policy_runner, "SKIP_BY_TYPE", False)
        every = dataclasses.asdict(run_packs(plan, packs, root=ROOT))
        monkeypatch.setattr(policy_runner, "SKIP_BY_TYPE", True)
        assert skipping == every
        assert skipping["packs"] and any(p["violations"] for p in skipping["packs"])
        # asked before: every resource by the two packs with resource policies
        assert sorted(analyze_calls) == sorted(2 * list(types))
        analyze_calls.clear()
        # now: a resource of a type some policy answers, by that policy's pack only
        assert sorted(asked) == sorted(u for u, t in types.items() if t in answered)


def test_a_stack_entry_from_the_request_is_the_one_built_anew() -> None:
    """The harness builds a resource's `AnalyzeStack` entry from its `Analyze` request
    (`wire.stack_resource`) instead of encoding the properties again: the same message."""
    from twinstack.plan import plan_stack
    from twinstack.policy.wire import stack_resource

    plan = plan_stack("unsafe", "both", root=ROOT, stack_file=FIXTURES / "Pulumi.unsafe.yaml")
    by_urn = {r["urn"]: r for r in plan["resources"]}
    with_provider = 0
    for res in plan["resources"]:
        request = analyze_request(res, by_urn)
        with_provider += request.HasField("provider")
        assert stack_resource(request, res) == analyzer_resource(res, by_urn), res["urn"]
    assert with_provider > 0
