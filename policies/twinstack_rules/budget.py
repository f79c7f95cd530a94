"""The budget guardrail: monthly cost and VM density, read by the ``twinstack diff`` model.

``stack-budget`` is a stack policy (``AnalyzeStack``). It does no cost arithmetic of its
own: it hands the stack's resources to :func:`twinstack.density.budget.check_budget` with a
:class:`~twinstack.density.budget.BudgetConfig` built from

* the cost block: the policy config's ``cost`` object if given, else the stack's
  ``twinstack:cost`` (from ``PULUMI_CONFIG``, which the engine sets for policy packs), else
  the model's defaults; its ``calibrationFile`` is loaded as ``twinstack diff`` does;
* the limits: the policy config's ``maxMonthlyCost`` / ``minDensityRatio`` when set, each
  falling back to the cost block's ``budget`` (``twinstack:cost.budget``). With neither,
  nothing is enforced.

Each message from the model is prefixed with what is over budget and by how much, and the
limit is named where it was set (stack config or policy config), so the fix is clear.
Values unknown during preview are read through the SDK's proxy, which raises, so the SDK
reports an advisory "can't run policy ... during preview" as for every other rule.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from pulumi_policy import PolicyConfigSchema, StackValidationPolicy

from twinstack_rules.common import Report, config

COST_KEY = "twinstack:cost"
POLICY = "stack-budget"


def _project_dir() -> Path:
    """Where relative ``file``/``calibrationFile`` paths resolve: the nearest directory
    upward from the working directory (the pack's, under the engine) holding Pulumi.yaml."""
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for d in (start, *start.parents):
            if (d / "Pulumi.yaml").is_file():
                return d
    return Path.cwd()


def _stack_cost() -> Any:
    """The stack's ``twinstack:cost`` value from ``PULUMI_CONFIG`` (``None`` when absent)."""
    raw = os.environ.get("PULUMI_CONFIG")
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    value = doc.get(COST_KEY) if isinstance(doc, dict) else None
    if isinstance(value, str):  # structured config values arrive JSON-encoded
        try:
            return json.loads(value)
        except ValueError:
            return value  # the cost model rejects a bare string with a clear message
    return value


def preload() -> None:
    """Import the budget model now (a pack's start, while the stack is being planned)
    rather than inside the first ``AnalyzeStack``; a failure is reported there."""
    with contextlib.suppress(ImportError):
        import components.cost  # noqa: F401
        import twinstack.density.budget  # noqa: F401


def stack_budget(args: Any, report: Report) -> None:
    """The stack's monthly cost and VM density ratio stay within the configured budget."""
    try:
        from components.cost import cost_spec_from_config, load_calibration
        from twinstack.density.budget import BudgetConfig, check_budget
        from twinstack.errors import TwinstackError
    except ImportError as exc:
        report(
            f"The budget model cannot be imported ({exc}). Run the pack in the twinstack "
            "project's virtualenv (PulumiPolicy.yaml `virtualenv: ../../.venv`), or install "
            "twinstack into the pack's virtualenv."
        )
        return

    cost_override = args.get_config().get("cost")
    base = _project_dir()
    try:
        if cost_override is not None:
            where = f"the {POLICY} policy config's `cost`"
            cost = cost_spec_from_config(
                dict(cost_override), source="policy config", base_dir=base, prefix=f"{POLICY}.cost"
            )
        else:
            where = f"{COST_KEY} in the stack config"
            cost = cost_spec_from_config(_stack_cost(), source="stack config", base_dir=base)
    except TwinstackError as exc:
        report(
            f"The cost block is invalid, so the budget cannot be checked: {exc}. Fix {where} "
            "(keys and defaults: docs/density.md, 'Hosts and prices')."
        )
        return
    limits = BudgetConfig.from_cost(cost)
    max_cost = config(args, "maxMonthlyCost", limits.max_monthly_cost)
    min_ratio = config(args, "minDensityRatio", limits.min_density_ratio)
    if max_cost is None and min_ratio is None:
        return
    calibration = None
    if cost.calibration_file is not None:
        path = cost.calibration_file
        path = path if path.is_absolute() else base / path
        try:
            calibration = load_calibration(path)
        except TwinstackError as exc:
            report(
                f"The calibration file named by calibrationFile cannot be read: {exc}. "
                "Run `twinstack measure`, or remove calibrationFile from the cost block."
            )
            return
    budget = BudgetConfig(
        cost=cost,
        max_monthly_cost=None if max_cost is None else float(max_cost),
        min_density_ratio=None if min_ratio is None else float(min_ratio),
        calibration=calibration,
        # name the limit where it was set, so the fix points at the right place
        cost_limit_name=f"{POLICY} policy config maxMonthlyCost"
        if args.get_config().get("maxMonthlyCost") is not None
        else f"{COST_KEY}.budget.maxMonthlyCost",
        ratio_limit_name=f"{POLICY} policy config minDensityRatio"
        if args.get_config().get("minDensityRatio") is not None
        else f"{COST_KEY}.budget.minDensityRatio",
    )
    resources = [
        {
            "resource_type": r.resource_type,
            "urn": r.urn,
            "name": r.name,
            "parent": r.parent.urn if r.parent is not None else None,
            "props": r.props,  # the SDK's unknown-checking proxy: unknowns raise
        }
        for r in args.resources
    ]
    for message in check_budget(resources, budget):
        report(message)


POLICIES: list[StackValidationPolicy] = [
    StackValidationPolicy(
        name=POLICY,
        description=(
            "The stack's monthly cost and per-service VM density ratio stay within budget "
            "(the twinstack diff cost model)."
        ),
        validate=stack_budget,
        config_schema=PolicyConfigSchema(
            properties={
                "maxMonthlyCost": {"type": "number", "minimum": 0},
                "minDensityRatio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "cost": {"type": "object"},
            }
        ),
    ),
]
