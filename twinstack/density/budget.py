"""The budget rule as a pure function, for the policy pack (and anything else) to call.

``check_budget(resources, config)`` reads the stack's resources with the same footprint
reader and model as ``twinstack diff`` and returns one violation message per broken limit
(an empty list when the stack is within budget). It declares nothing and starts nothing,
so a policy pack can call it from a stack validation policy::

    from twinstack.density.budget import BudgetConfig, check_budget

    def budget(args, report_violation):
        resources = [
            {"type": r.resource_type, "urn": r.urn, "name": r.name,
             "parent": r.parent.urn if r.parent else None, "inputs": r.props}
            for r in args.resources
        ]
        for message in check_budget(resources, BudgetConfig.from_cost(cost_spec)):
            report_violation(message)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.cost import Budget, Calibration, CostSpec, HostProfile
from twinstack.density.footprint import Instance, read_footprint
from twinstack.density.model import Demand, analyse, counterpart, demand, per_host, shared_gib
from twinstack.density.overhead import OverheadModel


@dataclass(frozen=True)
class BudgetConfig:
    """Prices, overheads and the limits to enforce (``None`` = not enforced)."""

    cost: CostSpec = field(default_factory=CostSpec)
    max_monthly_cost: float | None = None
    min_density_ratio: float | None = None
    calibration: Calibration | None = None
    cost_limit_name: str = "twinstack:cost.budget.maxMonthlyCost"
    """How messages name the cost limit (a policy names its own config key)."""
    ratio_limit_name: str = "twinstack:cost.budget.minDensityRatio"
    """How messages name the density-ratio limit."""

    @classmethod
    def from_cost(
        cls, cost: CostSpec | None, calibration: Calibration | None = None
    ) -> BudgetConfig:
        """Limits from ``cost.budget`` (the ``twinstack:cost.budget`` block)."""
        cost = cost or CostSpec()
        b = cost.budget or Budget.model_validate({})
        return cls(cost, b.max_monthly_cost, b.min_density_ratio, calibration)


def check_budget(resources: Sequence[Mapping[str, Any]], config: BudgetConfig) -> list[str]:
    """Violations of the monthly-cost and density-ratio limits, one message each.

    ``resources``: resource dicts as in the plan JSON (``type``, ``urn``, ``name``,
    ``parent``, ``inputs``), or as a policy pack sees them (``resource_type``, ``props``).
    The monthly cost is the stack's fleet cost as deployed (hosts needed after placement,
    power, per-resource rates, VM licences). The density ratio, per service realized as
    VMs, is its VMs per host divided by the instances per host the same declared service
    gets as containers.
    """
    if config.max_monthly_cost is None and config.min_density_ratio is None:
        return []
    fp = read_footprint(list(resources), "stack")
    if not fp.instances:
        return []
    cost = config.cost
    ov = OverheadModel.from_cost(cost, config.calibration)
    side = analyse(fp, cost, ov, "stack")
    cur = cost.prices.currency
    out: list[str] = []
    for svc in side.unplaced:
        prof = side.services[svc].profile
        out.append(
            f"Cost cannot be bounded: service {svc!r}: an instance does not fit on an empty {prof!r} host, so the "
            "stack's cost cannot be bounded; shrink the instance or map its host to a bigger "
            "profile in twinstack:cost.hostProfile."
        )
    limit = config.max_monthly_cost
    total = side.cost.total
    if limit is not None and total > limit + 0.005:
        hosts = ", ".join(f"{len(p.hosts)} x {n}" for n, p in side.placements.items())
        c = side.cost
        pct = f" (+{(total - limit) / limit:.1%})" if limit > 0 else ""
        out.append(
            f"Monthly cost over budget by {cur} {total - limit:,.2f}{pct}: "
            f"the stack costs {cur} {total:,.2f}/month as deployed ({hosts} hosts "
            f"{cur} {c.hosts:,.2f}, power {c.power:,.2f}, rates {c.rates:,.2f}, "
            f"licences {c.licences:,.2f}), above {config.cost_limit_name} "
            f"{cur} {limit:,.2f}; reduce replicas or instance sizes, run services as "
            "containers, or raise the budget."
        )
    ratio_min = config.min_density_ratio
    if ratio_min is not None:
        for svc in sorted({i.service for i in fp.instances if i.runtime == "vm"}):
            vms = [i for i in fp.instances if i.service == svc and i.runtime == "vm"]
            profile = cost.profile_for_host(vms[0].host)
            vm_fit = _fit(vms, ov, profile)
            ctr_fit = _fit([counterpart(i, "container") for i in vms], ov, profile)
            if vm_fit[0] is None or not ctr_fit[0]:
                continue
            ratio = vm_fit[0] / ctr_fit[0]
            if ratio < ratio_min - 1e-9:
                out.append(
                    f"Density ratio below the minimum by {ratio_min - ratio:.2f}: "
                    f"service {svc!r}: {vm_fit[0]} VMs fit on a {profile.name!r} host "
                    f"(binding: {vm_fit[1]}) but {ctr_fit[0]} as containers (binding: "
                    f"{ctr_fit[1]}): density ratio {ratio:.2f} is below "
                    f"{config.ratio_limit_name} {ratio_min:.2f}; shrink its "
                    "memory/vCPUs, run it as a container, or lower the limit."
                )
    return out


def _fit(
    insts: Sequence[Instance], ov: OverheadModel, profile: HostProfile
) -> tuple[int | None, str | None]:
    """Instances per host (and binding dimension) of the largest of ``insts``."""
    ds = [demand(i, ov, profile) for i in insts]
    d = Demand(max(x.cpu for x in ds), max(x.memory_mib for x in ds), max(x.disk_gib for x in ds))
    ph = per_host(d, max(shared_gib(i, ov) for i in insts), profile)
    return ph.count, ph.binding
