"""`plan_stack_apart` (what `twinstack policy` plans with) gives `plan_stack`'s document
and its errors, from a child process."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinstack.errors import TwinstackError
from twinstack.plan import plan_stack, plan_stack_apart

from .helpers import base_config, write_stack


def test_same_document_as_in_process(project: Path) -> None:
    write_stack(project, "apart", base_config())
    assert plan_stack_apart("apart", root=project) == plan_stack("apart", root=project)
    assert plan_stack_apart("apart", "vm", root=project, preview=True) == plan_stack(
        "apart", "vm", root=project, preview=True
    )


def test_errors_come_back_as_the_same_one_line_error(project: Path) -> None:
    cfg = base_config()
    cfg["twinstack:services"][0]["replicas"] = 0
    write_stack(project, "bad", cfg)
    with pytest.raises(TwinstackError) as direct:
        plan_stack("bad", root=project)
    with pytest.raises(TwinstackError) as apart:
        plan_stack_apart("bad", root=project)
    assert str(apart.value) == str(direct.value)
    assert "services[0].replicas" in str(apart.value)


def test_records_arrive_while_planning_and_make_up_the_document(project: Path) -> None:
    write_stack(project, "apart", base_config())
    seen: list[dict] = []
    doc = plan_stack_apart("apart", root=project, on_record=seen.append)
    # every record once, as registered: a parent before its children, a provider before
    # the resources that use it (what an analyzer needs to look at a resource at once)
    assert sorted(r["urn"] for r in seen) == sorted(r["urn"] for r in doc["resources"])
    assert len(seen) == len(doc["resources"])
    position = {r["urn"]: i for i, r in enumerate(seen)}
    for rec in seen:
        if rec["parent"]:
            assert position[rec["parent"]] < position[rec["urn"]]
        provider = (rec["provider"] or "").rpartition("::")[0]
        if provider:
            assert position[provider] < position[rec["urn"]]
    by_urn = {r["urn"]: r for r in seen}
    assert [by_urn[r["urn"]] for r in doc["resources"]] == doc["resources"]
    assert doc == plan_stack("apart", root=project)


def test_a_record_the_caller_refuses_ends_the_planning(project: Path) -> None:
    write_stack(project, "apart", base_config())
    seen: list[str] = []

    class Enough(Exception):
        pass

    def refuse(record: dict) -> None:
        seen.append(record["urn"])
        raise Enough

    with pytest.raises(Enough):  # the caller's own error, not a planning failure
        plan_stack_apart("apart", root=project, on_record=refuse)
    assert len(seen) == 1
