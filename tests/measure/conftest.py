"""Planning writes rendered build contexts under the project's `.twinstack/build/<stack>`;
the tests' derived stack (`utmeasure`) must not leave one behind."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_build_context_left() -> Iterator[None]:
    yield
    shutil.rmtree(ROOT / ".twinstack" / "build" / "utmeasure", ignore_errors=True)
