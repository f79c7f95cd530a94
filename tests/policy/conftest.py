"""Fixtures for the policy tests: one pack process per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._support import POLICIES, Pack, start_pack


@pytest.fixture(scope="module")
def container_pack() -> Iterator[Pack]:
    yield from start_pack(POLICIES / "container-security")


@pytest.fixture(scope="module")
def vm_pack() -> Iterator[Pack]:
    yield from start_pack(POLICIES / "vm-security")


@pytest.fixture(scope="module")
def guardrails_pack() -> Iterator[Pack]:
    yield from start_pack(POLICIES / "guardrails")
