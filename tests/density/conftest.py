"""Shared fixtures of the density tests: stack-export fixtures, a cost file, golden files."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from components.cost import Calibration, CostSpec, load_calibration, load_cost_file

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
GOLDEN = HERE / "golden"
UPDATE = os.environ.get("TWINSTACK_UPDATE_GOLDEN") == "1"


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture
def vm_export() -> Any:
    return load_fixture("dev-vm.stack-export.json")


@pytest.fixture
def ctr_export() -> Any:
    return load_fixture("dev.stack-export.json")


@pytest.fixture
def cost_spec() -> CostSpec:
    return load_cost_file(FIXTURES / "cost.yaml")


@pytest.fixture
def calibration() -> Calibration:
    return load_calibration(FIXTURES / "calibration.json")


def assert_golden(name: str, actual: str) -> None:
    """Compare with tests/density/golden/<name>; TWINSTACK_UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; run with TWINSTACK_UPDATE_GOLDEN=1")
    expected = path.read_text(encoding="utf-8")
    if expected != actual:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"golden/{name}",
                tofile="actual",
            )
        )
        pytest.fail(
            f"report differs from golden/{name} (TWINSTACK_UPDATE_GOLDEN=1 to accept):\n{diff}",
            pytrace=False,
        )
