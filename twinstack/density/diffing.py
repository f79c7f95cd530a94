"""``twinstack diff``: what the same services cost, and how densely they pack, VM vs container.

The command line is :mod:`twinstack.density.command`; this module does the work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.cost import (
    COST_KEY,
    Calibration,
    CostSpec,
    cost_spec_from_config,
    load_calibration,
    load_cost_file,
)
from twinstack.density.command import Format
from twinstack.density.footprint import Footprint, read_footprint, read_json_file
from twinstack.density.overhead import OverheadModel
from twinstack.density.report import (
    DiffReport,
    compare,
    render_markdown,
    render_text,
)
from twinstack.errors import TwinstackError


@dataclass(frozen=True)
class Inputs:
    """What a diff compares, and with which prices."""

    a: Footprint
    b: Footprint
    labels: tuple[str, str]
    stack: str | None
    cost: CostSpec
    cost_is_default: bool
    base_dir: Path


def _stack_inputs(stack: str, cost_file: Path | None, both: dict[str, Any] | None = None) -> Inputs:
    from components.spec import read_stack_file, spec_from_config
    from twinstack.plan import plan_stack, project_root

    root = project_root()
    # one plan with both realizations, split into "the stack as vm" and "as container"
    if both is None:
        both = plan_stack(stack, "both", root=root)
    stack_file = root / str(both.get("stackFile") or f"stacks/Pulumi.{stack}.yaml")
    config = read_stack_file(stack_file)
    pinned = frozenset(
        s.name
        for s in spec_from_config(config, source=str(stack_file), root=root).services
        if s.runtime is not None
    )
    if cost_file is not None:
        cost, default = load_cost_file(cost_file), False
    else:
        raw = config.get(COST_KEY)
        cost = cost_spec_from_config(raw, source=str(stack_file), base_dir=root)
        default = raw is None
    fp = read_footprint(both, f"plan of {stack}")
    return Inputs(
        fp.as_runtime("vm", pinned, f"plan of {stack} as vm"),
        fp.as_runtime("container", pinned, f"plan of {stack} as container"),
        ("vm", "container"),
        stack,
        cost,
        default,
        root,
    )


def _state_inputs(files: list[Path], cost_file: Path | None) -> Inputs:
    fps = [read_footprint(read_json_file(str(f)), str(f)) for f in files]
    if len(fps) == 1:
        fp = fps[0]
        if fp.runtimes != ["container", "vm"]:
            raise TwinstackError(
                f"{files[0]}: holds only {', '.join(fp.runtimes) or 'no'} instances; give two "
                "--from-state files, or one from a stack with runtime `both`"
            )
        a, b, labels = fp.only("vm"), fp.only("container"), ("vm", "container")
    else:
        a, b = fps
        ra, rb = a.runtimes, b.runtimes
        if len(ra) == 1 and len(rb) == 1 and ra != rb:
            labels = (ra[0], rb[0])
        else:
            labels = (files[0].stem, files[1].stem)
            if labels[0] == labels[1]:
                labels = (str(files[0]), str(files[1]))
    for f, fp in zip(files, fps, strict=True):
        if not fp.instances:
            raise TwinstackError(f"{f}: no libvirt domains or docker containers in this state")
    cost = load_cost_file(cost_file) if cost_file is not None else CostSpec()
    stack = a.stack if a.stack == b.stack else None
    return Inputs(a, b, labels, stack, cost, cost_file is None, Path.cwd())


def build_report(
    *,
    stack: str | None = None,
    from_state: list[Path] | None = None,
    calibration: Path | None = None,
    cost_file: Path | None = None,
    both_plan: dict[str, Any] | None = None,
) -> DiffReport:
    """The comparison ``twinstack diff`` prints (see :func:`diff_command`).

    ``both_plan``: the stack's plan with ``runtime both``, when the caller made it already."""
    states = list(from_state or [])
    if (stack is None) == (not states):
        raise TwinstackError(
            "use either --stack NAME, or --from-state A.json --from-state B.json "
            "(`pulumi stack export` files)"
        )
    if len(states) > 2:
        raise TwinstackError(f"--from-state: give one or two files, got {len(states)}")
    inputs = (
        _stack_inputs(stack, cost_file, both_plan)
        if stack is not None
        else _state_inputs(states, cost_file)
    )
    cal_path = calibration
    if cal_path is None and inputs.cost.calibration_file is not None:
        cal_path = inputs.cost.calibration_file
        if not cal_path.is_absolute():
            cal_path = inputs.base_dir / cal_path
    cal: Calibration | None = load_calibration(cal_path) if cal_path is not None else None
    ov = OverheadModel.from_cost(inputs.cost, cal, cal_path.name if cal_path else None)
    return compare(
        inputs.a,
        inputs.b,
        inputs.cost,
        ov,
        labels=inputs.labels,
        stack=inputs.stack,
        prices_are_defaults=inputs.cost_is_default,
    )


def render(doc: dict[str, Any], fmt: Format, width: int | None = None) -> str:
    if fmt is Format.json:
        return json.dumps(doc, indent=2) + "\n"
    if fmt is Format.markdown:
        return render_markdown(doc)
    return render_text(doc, width=width)
