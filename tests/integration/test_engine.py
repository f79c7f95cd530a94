"""`pulumi up` for real: the Pulumi engine (built by tools/engine/build.sh) drives the libvirt
provider against libvirtd, through the Automation API, with the policy packs.

The example `api` service, as a VM only: the docker provider cannot be built here (the Go
module proxy refuses pulumi-docker's provider; tools/engine/README.md), so the container side
stays on the applier. The lifecycle is the one Pulumi's ProgramTest runs: preview with the
packs → up with the packs → the instance healthy → preview and refresh report no changes →
destroy leaves nothing behind. The program is twinstack's own (`twinstack.program.run`), run
inline by the SDK's language server, so no language host plugin is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from twinstack.engine import Engine, libvirt_plugin_version, offline_engine
from twinstack.realize.guest import guest_exec, wait_vm

from ._support import CLIENT, PlanFn, derived_stack, example_service, teardown_stack, timed

pytestmark = [pytest.mark.integration, pytest.mark.engine]

STACK = "iteng"
NAME = f"{STACK}-api-0"
ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's secret marker in state and plans
SECRET = "s3cr3t-\u00e9ngine-token"  # set with --secret; must reach the VM, never plain text
VM_TIMEOUT_S = float(os.environ.get("TWINSTACK_VM_TIMEOUT_S", "600"))


@dataclass
class Events:
    """What the engine reported during one operation."""

    ops: dict[str, str] = field(default_factory=dict)  # urn -> step op
    policy: list[tuple[str, str, str]] = field(default_factory=list)  # (policy, urn, level)
    diags: list[str] = field(default_factory=list)

    def __call__(self, event: Any) -> None:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            self.ops[meta.urn] = str(meta.op.value if hasattr(meta.op, "value") else meta.op)
        if event.policy_event is not None:
            pe = event.policy_event
            self.policy.append((pe.policy_name, pe.resource_urn or "", pe.enforcement_level))
        if event.diagnostic_event is not None and event.diagnostic_event.severity == "error":
            self.diags.append(event.diagnostic_event.message)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    bindir = os.environ.get("TWINSTACK_ENGINE_BIN", "")
    if not bindir:
        msg = "TWINSTACK_ENGINE_BIN is not set (scripts/integration.sh sets it)"
        if os.environ.get("TWINSTACK_INTEGRATION") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    with timed("engine: plugin install"):
        return offline_engine(Path(bindir), tmp_path_factory.mktemp("engine"))


def _stack(engine: Engine, stack_file: Path, name: str = STACK) -> Any:
    work = engine.state / "work"
    work.mkdir(exist_ok=True)
    shutil.copy(stack_file, work / f"Pulumi.{name}.yaml")
    return engine.stack(name, work)


@dataclass
class Deployed:
    engine: Engine
    stack: Any
    preview: Events
    up: Events
    created: dict[str, int]
    stack_file: Path
    destroyed: bool = False


@pytest.fixture(scope="module")
def deployed(
    engine: Engine, docker: Any, virt: Any, images: Any, domain_type: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployed]:  # fmt: skip
    from pulumi import automation as auto

    tmp = tmp_path_factory.mktemp(STACK)
    teardown_stack(docker, virt, STACK)  # leftovers of an interrupted run
    api = example_service("api")
    api["build"] = {**api["build"], "secrets": {"API_TOKEN": "apiToken"}}
    stack_file = derived_stack(
        tmp, STACK, [api], runtime="vm", domain_type=domain_type,
        cidr="10.213.11.0/24", protect=True,
    )  # fmt: skip
    stack = _stack(engine, stack_file)
    # as `pulumi config set --secret apiToken …` does: encrypted in the stack file
    stack.set_config("twinstack:apiToken", auto.ConfigValue(value=SECRET, secret=True))
    deployed: Deployed | None = None
    try:
        pre = Events()
        with timed("engine: preview (with packs)"):
            stack.preview(policy_packs=engine.packs, on_event=pre)
        up = Events()
        with timed("engine: up (with packs)"):
            result = stack.up(policy_packs=engine.packs, on_event=up)
        deployed = Deployed(
            engine, stack, pre, up, dict(result.summary.resource_changes or {}),
            engine.state / "work" / f"Pulumi.{STACK}.yaml",
        )  # fmt: skip
        yield deployed
    finally:
        try:
            if deployed is None or not deployed.destroyed:  # the last test may have done it
                _destroy(engine, stack)
        finally:
            teardown_stack(docker, virt, STACK)


def _destroy(engine: Engine, stack: Any) -> None:
    """As the README says: unprotect (the pool and data volumes are protected), destroy."""
    with timed("engine: destroy"):
        engine.run("state", "unprotect", "--all", "--yes", "--stack", STACK,
                   cwd=engine.state / "work")  # fmt: skip
        stack.destroy()


def _ours(virt: Any, stack: str = STACK) -> list[str]:
    prefix = f"{stack}-"
    names = [d.name() for d in virt.listAllDomains(0)]
    names += [n.name() for n in virt.listAllNetworks(0)]
    names += [p.name() for p in virt.listAllStoragePools(0)]
    return sorted(n for n in names if n.startswith(prefix))


def test_preview_and_up_create_the_plan(deployed: Deployed) -> None:
    """Preview and up agree: every resource is created, no pack objects."""
    creates = {u for u, op in deployed.preview.ops.items() if op == "create"}
    assert creates, deployed.preview.ops
    assert creates == {u for u, op in deployed.up.ops.items() if op == "create"}
    assert deployed.created == {"create": len(creates)}
    for events in (deployed.preview, deployed.up):
        assert [v for v in events.policy if v[2] == "mandatory"] == []
    assert deployed.up.diags == []


def test_vm_healthy_and_answers(deployed: Deployed, virt: Any) -> None:
    with timed("engine: vm healthy"):
        health = wait_vm(
            virt, NAME, "api", Path("/nonexistent"), timeout_s=VM_TIMEOUT_S,
            probe_after_boot=True,
        )  # fmt: skip
    assert health.healthy, str(health)
    res = guest_exec(virt.lookupByName(NAME), ["/usr/bin/python3", "-c", CLIENT, "8081", "GET",
                                              "/healthz"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["body"] == {"ok": True}


def test_secret_reaches_the_service_and_nothing_else(deployed: Deployed, virt: Any) -> None:
    """A `--secret` config value is in the running service's environment and nowhere in the
    exported state or in the stack file in plain text."""
    res = guest_exec(
        virt.lookupByName(NAME),
        ["/bin/bash", "-c", "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value api)/environ"],
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert f"API_TOKEN={SECRET}" in res.stdout.splitlines()
    state = json.dumps(deployed.stack.export_stack().deployment, ensure_ascii=False)
    assert SECRET not in state and json.dumps(SECRET)[1:-1] not in state
    assert SECRET not in deployed.stack_file.read_text(encoding="utf-8")


def _translate(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [_translate(v, ids) for v in value]
    if isinstance(value, dict):  # the bridge's own bookkeeping (`__defaults`) is dropped
        return {k: _translate(v, ids) for k, v in value.items() if not k.startswith("__")}
    return value


def _covered(got: Any, want: Any) -> bool:
    """``want`` (the plan) is in ``got`` (the state): the provider may add defaults, at any
    depth, but may not change or drop what the program sent."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(
            k in got and _covered(got[k], v) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(got, list) and len(got) == len(want)
            and all(_covered(g, w) for g, w in zip(got, want, strict=True))
        )  # fmt: skip
    return bool(got == want)


def test_engine_inputs_match_the_offline_plan(deployed: Deployed, plan_of: PlanFn) -> None:
    """`twinstack plan` records what the engine sends: the same resources, and every
    recorded input in the engine's state with the same value (ids mapped to the plan's mock
    ids; the provider may add defaults, at any depth)."""
    plan = plan_of(STACK, deployed.stack_file)
    state = deployed.stack.export_stack().deployment["resources"]
    custom = {r["urn"]: r for r in state if r.get("custom") and r["type"].startswith("libvirt:")}
    planned = {r["urn"]: r for r in plan["resources"] if r["type"].startswith("libvirt:")}
    assert set(custom) == set(planned)
    ids = {custom[u]["id"]: planned[u]["id"] for u in custom}
    for urn, rec in planned.items():
        got = _translate(custom[urn].get("inputs", {}), ids)
        want = rec["inputs"]
        for key, value in list(want.items()):
            if isinstance(value, dict) and SECRET_SIG in value:  # a secret: compared above
                assert isinstance(got.get(key), dict) and SECRET_SIG in got[key], (urn, key)
                want = {k: v for k, v in want.items() if k != key}
        missing = {k: (got.get(k), v) for k, v in want.items() if not _covered(got.get(k), v)}
        assert missing == {}, urn


def test_footprint_from_state_equals_the_plans(deployed: Deployed, plan_of: PlanFn) -> None:
    """What `twinstack diff --from-state` reads from the engine's export (instances, sizes,
    images) equals what `twinstack diff` reads from the offline plan."""
    from twinstack.density.footprint import read_footprint

    export = deployed.stack.export_stack()
    state = read_footprint({"version": export.version, "deployment": export.deployment}, "state")
    plan = read_footprint(plan_of(STACK, deployed.stack_file), "plan")
    assert state.instances and state.instances == plan.instances
    assert state.stack == plan.stack == STACK


def test_second_preview_and_refresh_change_nothing(deployed: Deployed) -> None:
    ev = Events()
    result = deployed.stack.preview(on_event=ev)
    changed = {k: v for k, v in result.change_summary.items() if k != "same" and v}
    assert changed == {}, {u: op for u, op in ev.ops.items() if op != "same"}
    refreshed = deployed.stack.refresh()
    changes = dict(refreshed.summary.resource_changes or {})
    assert set(changes) <= {"same"}, changes


def test_destroy_leaves_nothing(deployed: Deployed, virt: Any) -> None:
    assert _ours(virt) != []
    _destroy(deployed.engine, deployed.stack)
    deployed.destroyed = True
    assert _ours(virt) == []
    state = deployed.stack.export_stack().deployment or {}
    assert [r["urn"] for r in state.get("resources", []) if r["type"].startswith("libvirt:")] == []


def _sdk_resources() -> dict[str, type]:
    """Token -> class of every resource the pinned pulumi_libvirt SDK declares."""
    import importlib
    import re

    import pulumi_libvirt

    text = Path(pulumi_libvirt.__file__).read_text()
    found = re.search(r'resource_modules="""(.*?)"""', text, re.S)
    assert found is not None, "pulumi_libvirt no longer registers its resource modules"
    out: dict[str, type] = {}
    for module in json.loads(found.group(1)):
        fqn = importlib.import_module(module["fqn"])
        for token, cls in module["classes"].items():
            out[token] = getattr(fqn, cls)
    return out


def _pulumi_names(cls: type) -> set[str]:
    return {
        v.fget._pulumi_name  # type: ignore[attr-defined]
        for v in vars(cls).values()
        if isinstance(v, property) and hasattr(v.fget, "_pulumi_name")
    }


def test_provider_schema_covers_the_sdk(engine: Engine) -> None:
    """The provider built here serves every token and property the pinned SDK sends."""
    out = subprocess.run(
        [engine.pulumi, "package", "get-schema", engine.bindir / "pulumi-resource-libvirt"],
        env={**os.environ, **engine.env}, check=True, capture_output=True, text=True,
    )  # fmt: skip
    schema = json.loads(out.stdout)
    assert schema["version"] == libvirt_plugin_version()
    sdk = _sdk_resources()
    assert set(sdk) == set(schema["resources"])
    for token, cls in sdk.items():
        res = schema["resources"][token]
        assert _pulumi_names(cls) <= set(res["properties"]), token
        args = getattr(__import__("pulumi_libvirt"), f"{cls.__name__}Args")
        assert _pulumi_names(args) <= set(res.get("inputProperties", {})), token


def test_hostile_stack_same_verdicts_as_offline(
    engine: Engine, virt: Any, plan_of: PlanFn, tmp_path: Path
) -> None:
    """A stack the packs must stop: the engine stops it at preview, and the mandatory
    (policy, resource) verdicts equal what `twinstack policy` reports offline for it."""
    from pulumi.automation.errors import CommandError

    name = "itengbad"
    api = example_service("api")
    env = {**api["build"].get("environment", {}), "DB_PASSWORD": "hunter2"}
    api["build"] = {**api["build"], "environment": env}
    stack_file = derived_stack(
        tmp_path, name, [api], runtime="vm", domain_type="qemu", cidr="10.213.12.0/24",
        protect=False,
    )  # fmt: skip
    stack = _stack(engine, stack_file, name)
    events = Events()
    try:
        with timed("engine: hostile preview"), pytest.raises(CommandError):
            stack.preview(policy_packs=engine.packs, on_event=events)
    finally:
        stack.workspace.remove_stack(name, force=True)
    on_engine = {(p, u) for p, u, level in events.policy if level == "mandatory"}

    plan = plan_of(name, stack_file, preview=True)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    out = subprocess.run(
        [Path(os.sys.executable).parent / "twinstack", "policy", "--plan", plan_file,
         "--format", "json"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr  # 1: a mandatory violation
    offline = {
        (v["policy"], v["urn"])
        for report in json.loads(out.stdout)
        for pack in report["packs"]
        for v in pack["violations"]
        if v["level"] == "mandatory"
    }
    assert {p for p, _ in offline} >= {"libvirt-protect-stateful", "libvirt-no-env-secrets"}
    assert on_engine == offline
    assert _ours(virt, name) == []  # a stopped preview created nothing
