"""The analyzer harness: packs that crash, hang or misbehave never pass silently."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twinstack.cli import app
from twinstack.policy import PolicyPackError, run_policy

from ._support import FIXTURES, POLICIES

PLAN = {
    "version": 1,
    "project": "twinstack",
    "stack": "t",
    "runtime": "container",
    "resources": [
        {
            "urn": "urn:pulumi:t::twinstack::docker:index/container:Container::c",
            "type": "docker:index/container:Container",
            "name": "c",
            "custom": True,
            "inputs": {"privileged": True},
        }
    ],
}

POLICY = """
from pulumi_policy import PolicyPack, ResourceValidationPolicy, EnforcementLevel
def validate(args, report):
    {body}
PolicyPack("fake", [ResourceValidationPolicy("fake-rule", "Fake.", validate)],
           enforcement_level=EnforcementLevel.MANDATORY)
"""


def make_pack(tmp_path: Path, main: str, yaml_text: str = "runtime: python\n") -> Path:
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "PulumiPolicy.yaml").write_text(yaml_text)
    (pack / "__main__.py").write_text(textwrap.dedent(main))
    return pack


def run(pack: Path, timeout: float = 3.0):
    return run_policy(PLAN, pack, startup_timeout=timeout, call_timeout=timeout)


def test_working_fake_pack(tmp_path: Path) -> None:
    pack = make_pack(tmp_path, POLICY.format(body='report("boom")'))
    report = run(pack)
    assert [(v.policy, v.level, v.detail) for v in report.violations] == [
        ("fake-rule", "mandatory", "boom")
    ]


def test_pack_crashing_at_startup(tmp_path: Path) -> None:
    pack = make_pack(tmp_path, 'raise RuntimeError("cannot load rules")\n')
    with pytest.raises(PolicyPackError) as err:
        run(pack)
    msg = str(err.value)
    assert "policy pack 'pack' exited with code 1 before reporting its port" in msg
    assert "RuntimeError: cannot load rules" in msg


def test_pack_crashing_during_analyze(tmp_path: Path) -> None:
    pack = make_pack(tmp_path, POLICY.format(body="import os; os._exit(7)"))
    with pytest.raises(PolicyPackError, match=r"exited with code 7 during Analyze\(urn:pulumi:t"):
        run(pack)


def test_pack_raising_in_a_rule(tmp_path: Path) -> None:
    pack = make_pack(tmp_path, POLICY.format(body='raise ValueError("bad rule")'))
    with pytest.raises(PolicyPackError, match=r"failed during Analyze\(.*\): UNKNOWN: .*bad rule"):
        run(pack)


def test_pack_hanging_at_startup(tmp_path: Path) -> None:
    pack = make_pack(tmp_path, "import threading\nthreading.Event().wait()\n")
    started = time.monotonic()
    with pytest.raises(PolicyPackError, match=r"did not report its port within 1.5s"):
        run(pack, timeout=1.5)
    assert time.monotonic() - started < 10


def test_pack_hanging_during_analyze(tmp_path: Path) -> None:
    pack = make_pack(tmp_path, POLICY.format(body="import threading; threading.Event().wait()"))
    with pytest.raises(PolicyPackError, match=r"did not answer Analyze\(.*\) within 1.5s"):
        run(pack, timeout=1.5)


def test_pack_printing_garbage(tmp_path: Path) -> None:
    pack = make_pack(
        tmp_path, 'print("hello, not a port")\nimport threading\nthreading.Event().wait()\n'
    )
    with pytest.raises(PolicyPackError, match=r"printed 'hello, not a port' instead of a port"):
        run(pack)


def test_missing_project_file_and_wrong_runtime(tmp_path: Path) -> None:
    with pytest.raises(PolicyPackError, match=r"PulumiPolicy\.yaml is missing"):
        run(tmp_path)
    pack = make_pack(tmp_path, "", yaml_text="runtime: nodejs\n")
    with pytest.raises(PolicyPackError, match="runtime is 'nodejs'"):
        run(pack)


# ------------------------------------------------------------------------- CLI

runner = CliRunner()


def test_cli_exit_codes(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    unsafe = FIXTURES / "unsafe-plan.json"
    res = runner.invoke(app, ["policy", "--plan", str(unsafe)])
    assert res.exit_code == 1, res.output
    assert "[mandatory]  docker-no-privileged  (docker:index:Container: web-0)" in res.output

    config = tmp_path / "advisory.json"
    config.write_text(json.dumps({"all": "advisory"}))
    res = runner.invoke(
        app, ["policy", "--plan", str(unsafe), "--config", str(config), "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc[0]["passed"] is True
    assert {v["level"] for p in doc[0]["packs"] for v in p["violations"]} == {"advisory"}

    crash = make_pack(tmp_path, 'raise SystemExit("rules missing")\n')
    res = runner.invoke(app, ["policy", "--plan", str(plan), "--pack", str(crash)])
    assert res.exit_code == 2
    assert "exited with code 1 before reporting its port" in res.output
    assert "Traceback" not in res.output.split("policy pack stderr")[0]


def test_cli_single_pack_pass(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({**PLAN, "resources": []}))
    res = runner.invoke(
        app, ["policy", "--plan", str(plan), "--pack", str(POLICIES / "container-security")]
    )
    assert res.exit_code == 0, res.output
    assert "✅ twinstack-container-security@v0.1.0" in res.output
