"""Fixtures for the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import make_project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway project dir; the CWD moves there so rendered build contexts
    (``.twinstack/build``, relative to the CWD) never land in the repository."""
    root = make_project(tmp_path / "proj")
    monkeypatch.chdir(root)
    return root
