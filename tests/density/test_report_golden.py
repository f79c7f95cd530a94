"""Golden reports in every format, from the stack-export fixtures and a fixed price book."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.cost import Calibration, CostSpec
from twinstack.density.footprint import read_footprint
from twinstack.density.overhead import OverheadModel
from twinstack.density.report import compare, render_chart, render_markdown, render_text
from twinstack.errors import TwinstackError

from .conftest import assert_golden


def report_doc(
    vm_export: Any, ctr_export: Any, cost: CostSpec, cal: Calibration | None
) -> dict[str, Any]:
    ov = OverheadModel.from_cost(cost, cal, "calibration.json" if cal else None)
    rep = compare(
        read_footprint(vm_export, "dev-vm.stack-export.json"),
        read_footprint(ctr_export, "dev.stack-export.json"),
        cost,
        ov,
        labels=("vm", "container"),
    )
    return rep.to_json()


@pytest.fixture(params=["defaults", "priced-calibrated"])
def case(
    request: pytest.FixtureRequest,
    vm_export: Any,
    ctr_export: Any,
    cost_spec: CostSpec,
    calibration: Calibration,
) -> tuple[str, dict[str, Any]]:
    if request.param == "defaults":
        return request.param, report_doc(vm_export, ctr_export, CostSpec(), None)
    return request.param, report_doc(vm_export, ctr_export, cost_spec, calibration)


def test_json_golden(case: tuple[str, dict[str, Any]]) -> None:
    name, doc = case
    assert_golden(f"{name}.json", json.dumps(doc, indent=2) + "\n")


def test_text_golden(case: tuple[str, dict[str, Any]]) -> None:
    name, doc = case
    assert_golden(f"{name}.txt", render_text(doc, width=140))


def test_markdown_golden(case: tuple[str, dict[str, Any]]) -> None:
    name, doc = case
    assert_golden(f"{name}.md", render_markdown(doc))


def test_report_facts(
    vm_export: Any, ctr_export: Any, cost_spec: CostSpec, calibration: Calibration
) -> None:
    """What the golden files show, stated as facts (so a regenerated golden can't hide it)."""
    doc = report_doc(vm_export, ctr_export, cost_spec, calibration)
    tot = doc["totals"]
    # every dimension and side is named; the delta is container minus vm
    assert tot["delta"]["monthlyCost"] == pytest.approx(
        tot["container"]["monthlyCost"]["total"] - tot["vm"]["monthlyCost"]["total"], abs=0.01
    )
    assert tot["vm"]["monthlyCost"]["licences"] == 4 * 4  # 4 VMs x 4 EUR
    assert tot["container"]["monthlyCost"]["licences"] == 0
    for svc in doc["services"]:
        vm, ctr = svc["sides"]["vm"], svc["sides"]["container"]
        assert vm["perHost"] <= ctr["perHost"]
        assert vm["binding"] in ("cpu", "memory", "disk")
    figures = {f["figure"]: f for f in doc["figures"]}
    assert figures["vm.kvm.memoryMib"]["measured"] is True
    assert figures["vm.kvm.memoryMib"]["value"] == 92.5
    assert figures["vm.tcg.memoryMib"]["value"] == 612  # the fixture's worker runs under TCG
    assert figures["vm.kvm.cpuCores"]["measured"] is False
    assert "container.images[twinstack/dev-web:db7c1192d8b9]" in figures
    assert doc["calibrated"] is True


def test_sums_add_up(vm_export: Any, ctr_export: Any, cost_spec: CostSpec) -> None:
    doc = report_doc(vm_export, ctr_export, cost_spec, None)
    for side in ("vm", "container"):
        t = doc["totals"][side]
        per_service = sum(s["sides"][side]["monthlyCost"] for s in doc["services"])
        c = t["monthlyCost"]
        # services' shares + idle capacity = the whole bill
        assert per_service + c["idle"] == pytest.approx(c["total"], abs=0.05)


@pytest.mark.parametrize("suffix", ["svg", "png"])
def test_chart(tmp_path: Path, vm_export: Any, ctr_export: Any, suffix: str) -> None:
    doc = report_doc(vm_export, ctr_export, CostSpec(), None)
    out = tmp_path / f"diff.{suffix}"
    render_chart(doc, out)
    data = out.read_bytes()
    if suffix == "svg":
        text = data.decode()
        assert "<svg" in text and "instances per host" in text
    else:
        assert data.startswith(b"\x89PNG")


def test_chart_rejects_other_formats(tmp_path: Path, vm_export: Any, ctr_export: Any) -> None:
    doc = report_doc(vm_export, ctr_export, CostSpec(), None)
    with pytest.raises(TwinstackError, match=r"use a \.svg or \.png"):
        render_chart(doc, tmp_path / "diff.pdf")
