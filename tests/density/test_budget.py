"""The budget rule the policy pack calls: same reader, same model."""

from __future__ import annotations

from typing import Any

from components.cost import CostSpec
from twinstack.density.budget import BudgetConfig, check_budget
from twinstack.plan import plan_stack


def resources(doc: Any) -> list[dict[str, Any]]:
    return list(doc["deployment"]["resources"])


def test_no_limits_no_violations(vm_export: Any) -> None:
    assert check_budget(resources(vm_export), BudgetConfig()) == []


def test_within_budget(ctr_export: Any, cost_spec: CostSpec) -> None:
    # fixture cost: 1 small host (90 + 26.28 power) + rates; limit 150, min ratio 0.5
    assert check_budget(resources(ctr_export), BudgetConfig.from_cost(cost_spec)) == []


def test_over_budget_message(vm_export: Any, cost_spec: CostSpec) -> None:
    config = BudgetConfig(cost=cost_spec, max_monthly_cost=100.0)
    [msg] = check_budget(resources(vm_export), config)
    assert msg.startswith("Monthly cost over budget by EUR 34.41 (+34.4%): the stack costs EUR 13")
    assert "above twinstack:cost.budget.maxMonthlyCost EUR 100.00" in msg
    assert "1 x small hosts" in msg


def test_density_ratio(vm_export: Any, cost_spec: CostSpec) -> None:
    msgs = check_budget(resources(vm_export), BudgetConfig.from_cost(cost_spec))
    # web and worker (0.5 vCPU as containers, 1 vCPU as VMs) fall below 0.5; api does not
    assert [m.split(": ")[1] for m in msgs] == ["service 'web'", "service 'worker'"]
    assert msgs[0].startswith("Density ratio below the minimum by 0.04: ")
    assert "density ratio 0.46 is below twinstack:cost.budget.minDensityRatio 0.50" in msgs[0]
    assert "(binding: cpu)" in msgs[0]


def test_policy_shape_from_a_plan(cost_spec: CostSpec) -> None:
    plan = plan_stack("dev-vm", "vm")
    shaped = [
        {
            "resource_type": r["type"],
            "urn": r["urn"],
            "name": r["name"],
            "parent": r.get("parent"),
            "props": r["inputs"],
        }
        for r in plan["resources"]
    ]
    config = BudgetConfig(cost=cost_spec, max_monthly_cost=1.0)
    [msg] = check_budget(shaped, config)
    assert "maxMonthlyCost EUR 1.00" in msg


def test_unplaceable_instance_is_a_violation(ctr_export: Any) -> None:
    cost = CostSpec.model_validate(
        {
            "profiles": [
                {
                    "name": "tiny",
                    "cores": 2,
                    "memoryGib": 1.5,
                    "diskGib": 100,
                    "reserved": {"cores": 0, "memoryGib": 1, "diskGib": 0},
                }
            ],
            "prices": {"hosts": {"tiny": {"monthly": 5}}},
        }
    )
    msgs = check_budget(resources(ctr_export), BudgetConfig(cost=cost, max_monthly_cost=1000))
    assert any("does not fit on an empty 'tiny' host" in m for m in msgs)
