"""The ``stack-budget`` stack policy (guardrails pack), through the analyzer protocol.

Expected figures come from :func:`twinstack.density.budget.check_budget` itself, so the
tests also hold the policy to the same model as ``twinstack diff``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from twinstack.density.budget import BudgetConfig, check_budget
from twinstack.policy import run_policy
from twinstack.policy.host import AnalyzerProcess, StackContext

from ._support import POLICIES, ROOT, UNKNOWN, Diag, Pack, resource, unknown_message

CONTAINER = "docker:index/container:Container"
DOMAIN = "libvirt:index/domain:Domain"
PACK = "twinstack-guardrails"
POLICY = "stack-budget"

# One host profile priced in USD, for the stack-config and policy-config cost blocks.
COST_USD: dict[str, Any] = {
    "profiles": [
        {
            "name": "small",
            "cores": 8,
            "memoryGib": 32,
            "diskGib": 400,
            "reserved": {"cores": 1, "memoryGib": 2, "diskGib": 20},
            "cpuOvercommit": 2,
        }
    ],
    "prices": {
        "currency": "USD",
        "pricePerKwh": 0.2,
        "hosts": {"small": {"monthly": 90, "powerWatts": 100}},
        "vmLicenceMonthly": 4,
    },
}


def container(service: str = "web", replica: int = 0, **over: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "name": f"t-{service}-{replica}",
        "memory": 512,
        "cpus": "0.5",
        "labels": [
            {"label": "twinstack.service", "value": service},
            {"label": "twinstack.replica", "value": str(replica)},
        ],
    }
    props.update(over)
    return resource(CONTAINER, f"{service}-container-{replica}", props, deleteBeforeReplace=True)


def domain(service: str = "web", replica: int = 0, **over: Any) -> dict[str, Any]:
    facts = {"twinstack": {"service": service, "replica": replica, "vcpus": 0.5}}
    props: dict[str, Any] = {
        "name": f"t-{service}-{replica}",
        "memory": 512,
        "vcpu": 1,
        "description": json.dumps(facts),
    }
    props.update(over)
    return resource(DOMAIN, f"{service}-vm-{replica}", props, deleteBeforeReplace=True)


def budget_diags(pack: Pack, resources: list[dict[str, Any]]) -> list[Diag]:
    return [d for d in pack.analyze_stack(resources) if d.policy == POLICY]


def expected(resources: list[dict[str, Any]], **limits: Any) -> list[str]:
    """What the model says for these resources (default prices unless ``cost`` given)."""
    from components.cost import CostSpec

    cost = CostSpec.model_validate(limits.pop("cost", {}))
    return check_budget(resources, BudgetConfig(cost, **limits))


@pytest.fixture
def configured(guardrails_pack: Pack) -> Iterator[Pack]:
    """The module's guardrails pack, reset to the default config afterwards."""
    yield guardrails_pack
    guardrails_pack.configure(None)


@pytest.fixture(scope="module")
def stack_budget_pack() -> Iterator[Pack]:
    """A guardrails pack whose stack config (PULUMI_CONFIG) carries a USD cost block with a
    budget of USD 150/month, as the engine passes a stack's ``twinstack:cost``."""
    block = {**COST_USD, "budget": {"maxMonthlyCost": 150, "minDensityRatio": 0.5}}
    ctx = StackContext(stack="test", config={"twinstack:cost": json.dumps(block)})
    with AnalyzerProcess(POLICIES / "guardrails", ctx, startup_timeout=60, call_timeout=30) as proc:
        proc.handshake()
        proc.configure_stack()
        pack = Pack(proc)
        pack.configure(None)
        yield pack


def test_schema_and_default_level(guardrails_pack: Pack) -> None:
    policy = next(p for p in guardrails_pack.info.policies if p.name == POLICY)
    assert set(policy.configSchema.properties) == {"maxMonthlyCost", "minDensityRatio", "cost"}
    assert policy.enforcementLevel == 1  # mandatory


def test_compliant_stack_passes(configured: Pack) -> None:
    res = [container(), container(replica=1), domain("db")]
    # Defaults: no stack budget and no policy limits, so nothing is enforced.
    assert budget_diags(configured, res) == []
    # Generous limits: 1 host of the default profile (EUR 304.75) and a ratio above 0.1.
    configured.configure({POLICY: {"maxMonthlyCost": 400, "minDensityRatio": 0.1}})
    assert configured.analyze_stack(res) == []


def test_over_max_monthly_cost(configured: Pack) -> None:
    res = [container(), container(replica=1)]
    configured.configure({POLICY: {"maxMonthlyCost": 250}})
    diags = budget_diags(configured, res)
    assert len(diags) == 1
    d = diags[0]
    assert d.level == "mandatory"
    assert d.urn == ""  # a stack-wide finding
    model = expected(res, max_monthly_cost=250)[0]
    message = d.message.split("\n", 1)[1]
    # the policy reports the model's own message, naming the limit where it was set
    assert message == model.replace(
        "twinstack:cost.budget.maxMonthlyCost", "stack-budget policy config maxMonthlyCost"
    )
    assert message.startswith("Monthly cost over budget by EUR 54.75 (+21.9%): ")
    assert "the stack costs EUR 304.75/month as deployed (1 x standard hosts" in message
    assert "above stack-budget policy config maxMonthlyCost EUR 250.00" in message
    assert "reduce replicas or instance sizes, run services as containers" in message


def test_under_min_density_ratio(configured: Pack) -> None:
    res = [domain("web"), domain("web", 1), domain("db"), container("cache")]
    model = expected(res, min_density_ratio=0.9)
    assert len(model) == 2  # web and db; the container has no VM ratio
    configured.configure({POLICY: {"minDensityRatio": 0.9}})
    messages = [d.message.split("\n", 1)[1] for d in budget_diags(configured, res)]
    assert len(messages) == 2
    by_service = {m.split("'")[1]: m for m in messages}
    assert set(by_service) == {"db", "web"}
    web = by_service["web"]
    assert web.startswith("Density ratio below the minimum by ")
    assert "VMs fit on a 'standard' host (binding: " in web
    assert "is below stack-budget policy config minDensityRatio 0.90" in web
    assert "shrink its memory/vCPUs, run it as a container, or lower the limit" in web
    ratio = float(web.split("density ratio ")[1].split(" ")[0])
    assert web.startswith(f"Density ratio below the minimum by {0.9 - ratio:.2f}: ")
    # Lower the limit below the ratio: the finding goes away.
    configured.configure({POLICY: {"minDensityRatio": round(ratio - 0.05, 2)}})
    assert budget_diags(configured, res) == []


def test_unknown_values_are_advisory(configured: Pack) -> None:
    res = [container(memory=UNKNOWN), domain("db")]
    # Nothing to enforce: the unknown is never read.
    assert budget_diags(configured, res) == []
    configured.configure({POLICY: {"maxMonthlyCost": 100}})
    diags = budget_diags(configured, res)
    assert [(d.level, d.message) for d in diags] == [
        ("advisory", unknown_message(POLICY, PACK, "memory"))
    ]


def test_config_change_takes_effect(configured: Pack) -> None:
    res = [container()]
    configured.configure({POLICY: {"maxMonthlyCost": 300}})
    assert [d.level for d in budget_diags(configured, res)] == ["mandatory"]
    configured.configure({POLICY: {"maxMonthlyCost": 305}})
    assert budget_diags(configured, res) == []
    configured.configure({POLICY: {"enforcementLevel": "advisory", "maxMonthlyCost": 300}})
    assert [d.level for d in budget_diags(configured, res)] == ["advisory"]
    configured.configure({POLICY: {"enforcementLevel": "disabled", "maxMonthlyCost": 1}})
    assert budget_diags(configured, res) == []


def test_cost_block_in_policy_config(configured: Pack) -> None:
    """``cost`` replaces the prices and profiles; figures are the model's, in its currency."""
    res = [domain("web", i) for i in range(8)]
    model = expected(res, cost=COST_USD, max_monthly_cost=100)
    assert len(model) == 1 and "USD" in model[0]
    configured.configure({POLICY: {"maxMonthlyCost": 100, "cost": COST_USD}})
    [d] = budget_diags(configured, res)
    message = d.message.split("\n", 1)[1]
    assert message.startswith("Monthly cost over budget by USD ")
    assert message == model[0].replace(
        "twinstack:cost.budget.maxMonthlyCost", "stack-budget policy config maxMonthlyCost"
    )


def test_invalid_cost_block_is_reported(configured: Pack) -> None:
    configured.configure({POLICY: {"maxMonthlyCost": 100, "cost": {"prices": {"x": 1}}}})
    [d] = budget_diags(configured, [container()])
    assert d.level == "mandatory"
    assert (
        "The cost block is invalid, so the budget cannot be checked: policy config: "
        "stack-budget.cost.prices.x: unknown key 'x'; allowed keys here: currency, hosts, "
        in d.message
    )
    assert d.message.endswith(
        "Fix the stack-budget policy config's `cost` (keys and defaults: docs/density.md, "
        "'Hosts and prices')."
    )


def test_budget_from_stack_config(stack_budget_pack: Pack) -> None:
    """Without policy limits, the stack's ``twinstack:cost.budget`` is enforced."""
    res = [domain("web", i) for i in range(12)]  # one 'small' host + 12 licences
    block = {**COST_USD, "budget": {"maxMonthlyCost": 150, "minDensityRatio": 0.5}}
    model = expected(res, cost=block, max_monthly_cost=150, min_density_ratio=0.5)
    assert model  # the fixture is over budget by the model's own reckoning
    messages = [d.message.split("\n", 1)[1] for d in budget_diags(stack_budget_pack, res)]
    assert len(messages) == len(model)
    for message, raw in zip(messages, model, strict=True):
        assert message == raw  # names twinstack:cost.budget.* as the limit
    assert any("above twinstack:cost.budget.maxMonthlyCost USD 150.00" in m for m in messages)
    # A policy limit overrides the stack's; the other stack limit still applies.
    try:
        stack_budget_pack.configure({POLICY: {"maxMonthlyCost": 1000}})
        [d] = budget_diags(stack_budget_pack, res)
        assert "is below twinstack:cost.budget.minDensityRatio 0.50" in d.message
        stack_budget_pack.configure({POLICY: {"maxMonthlyCost": 1000, "minDensityRatio": 0.4}})
        assert budget_diags(stack_budget_pack, res) == []
    finally:
        stack_budget_pack.configure(None)


def test_example_stacks_pass() -> None:
    from twinstack.plan import plan_stack

    for stack_file in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        name = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
        plan = plan_stack(name, root=ROOT)
        report = run_policy(plan, POLICIES / "guardrails", root=ROOT)
        assert [v for v in report.violations if v.policy == POLICY] == [], name
