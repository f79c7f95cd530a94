"""The three packs end to end: unsafe stacks produce exactly the expected violations
through the analyzer protocol, and config changes to enforcement levels take effect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinstack.policy import PolicyConfigError, run_packs, run_policy

from ._support import FIXTURES, POLICIES, ROOT

PACKS = [POLICIES / "container-security", POLICIES / "guardrails", POLICIES / "vm-security"]


@pytest.fixture(scope="module")
def unsafe_plan() -> dict:
    return json.loads((FIXTURES / "unsafe-plan.json").read_text())


def _found(report) -> set[tuple[str, str, str]]:
    return {(v.level, v.policy, v.resource_name) for v in report.violations}


def test_unsafe_plan_exact_violations(unsafe_plan: dict) -> None:
    report = run_packs(unsafe_plan, PACKS, root=ROOT)
    assert _found(report) == {
        ("mandatory", "docker-image-pinned", "web-0"),
        ("mandatory", "docker-image-pinned", "web-image"),
        ("mandatory", "docker-no-env-secrets", "web-0"),
        ("mandatory", "docker-no-privileged", "web-0"),
        ("mandatory", "docker-no-socket-mount", "web-0"),
        ("mandatory", "docker-ports-loopback", "web-0"),
        ("mandatory", "libvirt-cloud-init-no-passwords", "vm-0-cloudinit"),
        ("mandatory", "libvirt-graphics-loopback", "vm-0"),
        ("mandatory", "libvirt-network-mode", "apps"),
    }
    assert len(report.violations) == 10  # the cloud-init disk has two findings
    assert not report.passed
    text = report.render_text()
    assert "    ❌ twinstack-container-security@v0.1.0 (local: policies/container-security)" in text
    assert "        - [mandatory]  docker-no-privileged  (docker:index:Container: web-0)\n" in text
    assert "          Containers must not run privileged (CIS Docker 5.4).\n" in text
    assert "    ✅ twinstack-guardrails@v0.1.0" in text
    assert text.rstrip().endswith("FAILED: 10 mandatory, 0 advisory violation(s), 0 remediation(s)")


def test_unsafe_stack_yaml_planned(unsafe_plan: dict) -> None:
    """The spec-level unsafe stack, planned by the foundation's offline plan."""
    from twinstack.plan import plan_stack

    plan = plan_stack("unsafe", root=ROOT, stack_file=FIXTURES / "Pulumi.unsafe.yaml")
    # delete-before-replace findings depend on the components; checked in test_guardrails.
    report = run_packs(plan, PACKS, {"delete-before-replace": "disabled"}, root=ROOT)
    assert _found(report) == {
        ("mandatory", "docker-healthcheck", "web-container-0"),
        ("mandatory", "docker-no-env-secrets", "web-container-0"),
        ("mandatory", "docker-non-root-user", "web-container-0"),
        ("mandatory", "docker-ports-loopback", "web-container-0"),
        ("mandatory", "docker-read-only-rootfs", "web-container-0"),
        ("mandatory", "docker-restart-bounded", "web-container-0"),
        ("mandatory", "libvirt-no-env-secrets", "web-vm-0-cloudinit"),
        ("mandatory", "libvirt-pool-location", "data-local-pool"),
        ("mandatory", "libvirt-protect-stateful", "web-vm-0-data"),
        ("mandatory", "libvirt-protect-stateful", "data-local-pool"),
    }


def test_enforcement_levels_from_config(unsafe_plan: dict) -> None:
    config = {
        "all": "advisory",
        "docker-no-privileged": "mandatory",
        "docker-image-pinned": "disabled",
    }
    report = run_policy(unsafe_plan, POLICIES / "container-security", config)
    levels = {(v.policy, v.level) for v in report.violations}
    assert levels == {
        ("docker-no-privileged", "mandatory"),
        ("docker-no-env-secrets", "advisory"),
        ("docker-no-socket-mount", "advisory"),
        ("docker-ports-loopback", "advisory"),
    }
    assert report.packs[0].levels["docker-image-pinned"] == "disabled"
    report = run_policy(unsafe_plan, POLICIES / "container-security", {"all": "advisory"})
    assert report.passed and len(report.advisory) == 6


def test_remediation_is_applied_and_shown(unsafe_plan: dict) -> None:
    plan = json.loads(json.dumps(unsafe_plan))
    container = next(r for r in plan["resources"] if r["name"] == "web-0")
    del container["inputs"]["logOpts"]
    mandatory = run_policy(plan, POLICIES / "container-security")
    assert ("docker-log-limits", "mandatory") in {(v.policy, v.level) for v in mandatory.violations}
    report = run_policy(plan, POLICIES / "container-security", {"docker-log-limits": "remediate"})
    assert "docker-log-limits" not in {v.policy for v in report.violations}
    (rem,) = report.remediations
    assert rem.policy == "docker-log-limits"
    assert rem.after["logOpts"] == {"max-size": "10m", "max-file": "3"}
    assert "        - [remediate]  docker-log-limits  (docker:index:Container: web-0)" in (
        report.render_text()
    )


def test_invalid_config_is_an_error(unsafe_plan: dict) -> None:
    with pytest.raises(
        PolicyConfigError, match="docker-restart-bounded: maxRetryCount: Must be greater"
    ):
        run_policy(
            unsafe_plan,
            POLICIES / "container-security",
            {"docker-restart-bounded": {"maxRetryCount": 0}},
        )
    with pytest.raises(PolicyConfigError, match="'sometimes' is not a valid enforcement level"):
        run_policy(unsafe_plan, POLICIES / "container-security", {"all": "sometimes"})
    with pytest.raises(PolicyConfigError, match="no pack has a policy named 'docker-no-privilegd'"):
        run_packs(unsafe_plan, PACKS[:1], {"docker-no-privilegd": "advisory"})


@pytest.mark.parametrize("stack", ["dev", "dev-vm", "compare"])
def test_example_stacks_security_packs_pass(stack: str) -> None:
    """The example stacks must pass the security packs (guardrails: see the report)."""
    from twinstack.plan import plan_stack

    if not (ROOT / "stacks" / f"Pulumi.{stack}.yaml").exists():
        pytest.skip(f"stack {stack} not present")
    plan = plan_stack(stack, root=ROOT)
    report = run_packs(plan, PACKS[0::2], root=ROOT)
    assert report.violations == []


def test_pack_main_runs_outside_repo_cwd(tmp_path: Path, unsafe_plan: dict) -> None:
    """__main__.py finds the rule library from the pack directory alone (as under pulumi)."""
    report = run_policy(unsafe_plan, POLICIES / "vm-security", root=tmp_path)
    assert report.packs[0].path == str((POLICIES / "vm-security").resolve())
    assert len(report.mandatory) == 4
