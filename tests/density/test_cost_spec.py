"""The cost spec: defaults, validation messages, referenced files, calibration schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.cost import (
    Calibration,
    CostSpec,
    calibration_schema,
    cost_schema,
    cost_spec_from_config,
    load_calibration,
    load_cost_file,
)
from components.spec import validate_spec
from twinstack.errors import SpecError

from .conftest import FIXTURES

SRC = "stacks/Pulumi.x.yaml"


def err(value: object) -> str:
    with pytest.raises(SpecError) as info:
        cost_spec_from_config(value, source=SRC)
    return str(info.value)


def test_no_cost_block_gives_defaults() -> None:
    spec = cost_spec_from_config(None, source=SRC)
    assert spec == CostSpec()
    assert spec.profile_for_host("anything").name == "standard"
    assert spec.prices.hosts["standard"].monthly > 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {"profiles": [{"name": "a", "cores": 0, "memoryGib": 8, "diskGib": 100}]},
            f"{SRC}: twinstack:cost.profiles[0].cores: got 0; input should be greater than 0",
        ),
        (
            {"profile": []},
            f"{SRC}: twinstack:cost.profile: unknown key 'profile'; allowed keys here: budget, "
            "calibrationFile, defaultProfile, file, hostProfile, overheads, prices, profiles",
        ),
        (
            {"prices": {"hosts": {"standard": {"monthly": 1, "watts": 3}}}},
            f"{SRC}: twinstack:cost.prices.hosts.standard.watts: unknown key 'watts'; "
            "allowed keys here: monthly, powerWatts",
        ),
        (
            {
                "profiles": [
                    {"name": "a", "cores": 4, "memoryGib": 8, "diskGib": 100, "accelerator": "xen"}
                ],
                "prices": {"hosts": {"a": {"monthly": 1}}},
            },
            f"{SRC}: twinstack:cost.profiles[0].accelerator: 'xen' is not allowed; "
            "allowed: 'kvm' or 'tcg'",
        ),
        (
            {"hostProfile": {"local": "huge"}},
            f"{SRC}: twinstack:cost: hostProfile.local: 'huge' is not a profile; allowed: standard",
        ),
        (
            {"budget": {"minDensityRatio": 1.5}},
            f"{SRC}: twinstack:cost.budget.minDensityRatio: got 1.5; "
            "input should be less than or equal to 1",
        ),
    ],
)
def test_errors_name_file_key_value_and_allowed(value: object, expected: str) -> None:
    assert err(value) == expected


def test_profile_reserve_must_fit() -> None:
    msg = err({"profiles": [{"name": "a", "cores": 4, "memoryGib": 4, "diskGib": 100}]})
    assert "twinstack:cost.profiles[0]" in msg
    assert "reserved.memoryGib (8) must be less than memoryGib (4)" in msg


def test_every_profile_needs_a_price() -> None:
    msg = err({"profiles": [{"name": "a", "cores": 4, "memoryGib": 16, "diskGib": 100}]})
    assert "prices.hosts: no price for profile(s) ['a']" in msg


def test_referenced_file_is_loaded_and_overridden(tmp_path: Path) -> None:
    (tmp_path / "costs.yaml").write_text(
        (FIXTURES / "cost.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    spec = cost_spec_from_config(
        {"file": "costs.yaml", "defaultProfile": "big"}, source=SRC, base_dir=tmp_path
    )
    assert [p.name for p in spec.profiles] == ["small", "big"]
    assert spec.default_profile == "big"  # the stack's key wins over the file's
    assert spec.file == tmp_path / "costs.yaml"


def test_error_inside_referenced_file_names_that_file(tmp_path: Path) -> None:
    bad = tmp_path / "costs.yaml"
    bad.write_text("prices:\n  pricePerKwh: -1\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        cost_spec_from_config({"file": "costs.yaml"}, source=SRC, base_dir=tmp_path)
    assert f"{bad}: prices.pricePerKwh: got -1" in str(info.value)
    assert str(info.value).startswith(f"{SRC}: twinstack:cost: ")


def test_missing_referenced_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope\.yaml: no such file"):
        cost_spec_from_config({"file": "nope.yaml"}, source=SRC, base_dir=tmp_path)


def test_cost_block_inside_a_stack_spec() -> None:
    spec = validate_spec({"cost": {"budget": {"maxMonthlyCost": 100}}, "services": []}, source=SRC)
    assert spec.cost is not None and spec.cost.budget is not None
    assert spec.cost.budget.max_monthly_cost == 100


def test_load_cost_file_accepts_stack_files(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.x.yaml"
    stack.write_text(
        "config:\n  twinstack:runtime: vm\n  twinstack:cost:\n    prices: {pricePerKwh: 0.1}\n",
        encoding="utf-8",
    )
    assert load_cost_file(stack).prices.price_per_kwh == 0.1


def test_calibration_file_round_trip() -> None:
    cal = load_calibration(FIXTURES / "calibration.json")
    assert cal.overheads.vm.kvm.memory_mib == 92.5
    assert cal.samples["container.shimMemoryMib"] == 10
    assert Calibration.model_validate(cal.model_dump(by_alias=True)) == cal


def test_calibration_errors(tmp_path: Path) -> None:
    bad = tmp_path / "cal.json"
    bad.write_text('{"version": 2}', encoding="utf-8")
    with pytest.raises(SpecError, match=r"cal\.json: version: 2 is not allowed; allowed: 1"):
        load_calibration(bad)
    bad.write_text('{"overheads": {"vm": {"kvm": {"memoryMb": 1}}}}', encoding="utf-8")
    with pytest.raises(SpecError, match="unknown key 'memoryMb'; allowed keys here: cpuCores"):
        load_calibration(bad)
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_calibration(bad)


def test_schemas_carry_field_docstrings() -> None:
    cal = calibration_schema()
    assert "measuredAt" in cal["properties"]
    assert cal["properties"]["samples"]["description"].startswith("How many measurements")
    cost = cost_schema()
    host = cost["$defs"]["HostProfile"]["properties"]
    assert "overcommit" in host["cpuOvercommit"]["description"]
