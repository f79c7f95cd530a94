"""`twinstack diff` end to end through the CLI (typer's runner), and its errors."""

from __future__ import annotations

import json
from pathlib import Path

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
