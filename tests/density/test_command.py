"""`twinstack diff` end to end through the CLI (typer's runner), and its errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from twinstack.cli import app

from .conftest import FIXTURES

runner = CliRunner()
VM = str(FIXTURES / "dev-vm.stack-export.json")
CTR = str(FIXTURES / "dev.stack-export.json")


def run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["diff", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.stdout, res.stderr


def test_from_state_json() -> None:
    code, out, _ = run("--from-state", VM, "--from-state", CTR, "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert [s["label"] for s in doc["sides"]] == ["vm", "container"]
    assert doc["stack"] is None  # two different stacks
    assert {s["service"] for s in doc["services"]} == {"api", "web", "worker"}
    assert doc["pricesAreDefaults"] is True


def test_from_state_with_cost_and_calibration_markdown() -> None:
    code, out, _ = run(
        "--from-state",
        VM,
        "--from-state",
        CTR,
        "--format",
        "markdown",
        "--cost",
        str(FIXTURES / "cost.yaml"),
        "--calibration",
        str(FIXTURES / "calibration.json"),
    )
    assert code == 0
    assert out.startswith("### twinstack diff: vm vs container")
    assert "| api | vm | small |" in out
    assert "measured (calibration.json" in out


@pytest.mark.parametrize("stack", ["dev", "dev-vm", "compare"])
def test_stack_plans_both_runtimes(stack: str, tmp_path: Path) -> None:
    chart = tmp_path / "c.svg"
    code, out, err = run("--stack", stack, "--chart", str(chart))
    assert code == 0, err
    assert f"twinstack diff — stack {stack}: vm vs container" in out
    assert "binding constraint" in out
    assert chart.read_text().startswith("<?xml")
    code, out, _ = run("--stack", stack, "-f", "json")
    doc = json.loads(out)
    for svc in doc["services"]:
        assert svc["sides"]["vm"]["perHost"] <= svc["sides"]["container"]["perHost"]


def test_one_state_of_a_both_stack_is_split(tmp_path: Path) -> None:
    vm = json.loads(Path(VM).read_text())
    ctr = json.loads(Path(CTR).read_text())
    vm["deployment"]["resources"] += ctr["deployment"]["resources"]
    both = tmp_path / "both.json"
    both.write_text(json.dumps(vm))
    code, out, _ = run("--from-state", str(both), "-f", "json")
    assert code == 0
    assert [s["label"] for s in json.loads(out)["sides"]] == ["vm", "container"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "use either --stack NAME, or --from-state"),
        (("--stack", "dev", "--from-state", VM), "use either --stack NAME"),
        (("--from-state", VM), "holds only vm instances"),
        (
            ("--from-state", "/nonexistent.json", "--from-state", CTR),
            "/nonexistent.json: no such file",
        ),
        (("--stack", "nope"), "Pulumi.nope.yaml: no such stack file"),
        (("--from-state", VM, "--from-state", CTR, "--chart", "x.pdf"), "use a .svg or .png"),
        (
            ("--from-state", VM, "--from-state", CTR, "--calibration", str(FIXTURES / "cost.yaml")),
            "unknown key 'profiles'",
        ),
    ],
)
def test_errors_are_one_line_exit_2(args: tuple[str, ...], message: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_bad_json_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = run("--from-state", str(bad), "--from-state", CTR)
    assert code == 2 and "not valid JSON" in err


def test_save_markdown_is_the_markdown_report(tmp_path: Path) -> None:
    md = tmp_path / "d.md"
    code, text, err = run("--stack", "dev", "--save-markdown", str(md))
    assert code == 0, err
    assert "binding constraint" in text  # the text report still goes to stdout
    _, markdown, _ = run("--stack", "dev", "--format", "markdown")
    assert md.read_text(encoding="utf-8") == markdown


def test_one_plan_split_equals_two_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """diff plans once (runtime both) and splits; a service that pins its own runtime is in
    both halves, exactly as planning the stack as vm and as container would give."""
    import yaml

    from twinstack.density.diffing import _stack_inputs
    from twinstack.density.footprint import read_footprint
    from twinstack.plan import plan_stack

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "stacks").mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        (tmp_path / name).write_text((repo / name).read_text())
    doc = yaml.safe_load((repo / "stacks" / "Pulumi.compare.yaml").read_text())
    doc["config"]["twinstack:runtime"] = "vm"
    doc["config"]["twinstack:services"][1]["runtime"] = "container"  # pinned
    doc["config"]["twinstack:services"][2]["runtime"] = "both"  # pinned to both
    (tmp_path / "stacks" / "Pulumi.split.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.chdir(tmp_path)
    inputs = _stack_inputs("split", None)

    def key(fp: Any) -> list[tuple[Any, ...]]:
        return sorted((i.service, i.runtime, i.replica, i.vcpus, i.memory_mib) for i in fp)

    for side, runtime in ((inputs.a, "vm"), (inputs.b, "container")):
        alone = read_footprint(plan_stack("split", runtime, root=tmp_path))
        assert key(side.instances) == key(alone.instances), runtime
    pinned = doc["config"]["twinstack:services"][1]["name"]
    assert {i.runtime for i in inputs.a.instances if i.service == pinned} == {"container"}
