"""`pulumi up` for real: the Pulumi engine and the libvirt and docker provider plugins (built by
tools/engine/build.sh) drive libvirtd and dockerd, through the Automation API, with the packs.

The example `api` service, once as a VM and once as a container (the module fixture `deployed`
is parametrized by runtime). The lifecycle is the one Pulumi's ProgramTest runs: preview with
the packs → up with the packs → the instance healthy → preview and refresh report no changes →
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
import yaml

from twinstack.engine import PROVIDERS, Engine, offline_engine, plugin_version
from twinstack.realize.docker_apply import wait_container
from twinstack.realize.guest import guest_exec, wait_vm

from ._support import CLIENT, PlanFn, derived_stack, example_service, teardown_stack, timed

pytestmark = [pytest.mark.integration, pytest.mark.engine]

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's secret marker in state and plans
SECRET = "s3cr3t-\u00e9ngine-token"  # set with --secret; must reach the VM, never plain text
VM_TIMEOUT_S = float(os.environ.get("TWINSTACK_VM_TIMEOUT_S", "600"))
CONTAINER_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Side:
    """One realization of the example `api` service under the engine."""

    runtime: str  # the stack's twinstack:runtime
    stack: str
    cidr: str
    provider: str  # the package whose resources realize it

    @property
    def instance(self) -> str:
        return f"{self.stack}-api-0"

    def ours(self, resource_type: str) -> bool:
        return resource_type.startswith(f"{self.provider}:")


SIDES = {
    "vm": Side("vm", "iteng", "10.213.11.0/24", "libvirt"),
    "container": Side("container", "itengct", "10.213.13.0/24", "docker"),
}


@dataclass
class Events:
    """What the engine reported during one operation."""

    ops: dict[str, str] = field(default_factory=dict)  # urn -> step op
    policy: list[tuple[str, str, str]] = field(default_factory=list)  # (policy, urn, level)
    messages: list[str] = field(default_factory=list)  # the policy events' messages, in order
    diags: list[str] = field(default_factory=list)

    def __call__(self, event: Any) -> None:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            self.ops[meta.urn] = str(meta.op.value if hasattr(meta.op, "value") else meta.op)
        if event.policy_event is not None:
            pe = event.policy_event
            self.policy.append((pe.policy_name, pe.resource_urn or "", pe.enforcement_level))
            self.messages.append(pe.message)
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


def _stack(engine: Engine, stack_file: Path, name: str) -> Any:
    work = engine.state / "work"
    work.mkdir(exist_ok=True)
    shutil.copy(stack_file, work / f"Pulumi.{name}.yaml")
    return engine.stack(name, work)


@dataclass
class Deployed:
    side: Side
    engine: Engine
    stack: Any
    preview: Events
    up: Events
    created: dict[str, int]
    stack_file: Path
    destroyed: bool = False


@pytest.fixture(scope="module", params=list(SIDES))
def deployed(
    request: pytest.FixtureRequest, engine: Engine, docker: Any, virt: Any, images: Any,
    domain_type: str, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployed]:  # fmt: skip
    from pulumi import automation as auto

    side = SIDES[request.param]
    tmp = tmp_path_factory.mktemp(side.stack)
    teardown_stack(docker, virt, side.stack)  # leftovers of an interrupted run
    api = example_service("api")
    api["build"] = {**api["build"], "secrets": {"API_TOKEN": "apiToken"}}
    # a duration of a minute or more is read back in Go's form ("1m30s"): the second preview
    # (test_second_preview_and_refresh_change_nothing) sees any input written otherwise
    api["healthCheck"] = {**api["healthCheck"], "startPeriodS": 90}
    stack_file = derived_stack(
        tmp, side.stack, [api], runtime=side.runtime, domain_type=domain_type,
        cidr=side.cidr, protect=True,
    )  # fmt: skip
    stack = _stack(engine, stack_file, side.stack)
    # as `pulumi config set --secret apiToken …` does: encrypted in the stack file
    stack.set_config("twinstack:apiToken", auto.ConfigValue(value=SECRET, secret=True))
    deployed: Deployed | None = None
    try:
        pre = Events()
        with timed(f"engine {side.runtime}: preview (with packs)"):
            stack.preview(policy_packs=engine.packs, on_event=pre)
        up = Events()
        with timed(f"engine {side.runtime}: up (with packs)"):
            result = stack.up(policy_packs=engine.packs, on_event=up)
        deployed = Deployed(
            side, engine, stack, pre, up, dict(result.summary.resource_changes or {}),
            engine.state / "work" / f"Pulumi.{side.stack}.yaml",
        )  # fmt: skip
        yield deployed
    finally:
        try:
            if deployed is None or not deployed.destroyed:  # the last test may have done it
                _destroy(engine, stack)
        finally:
            teardown_stack(docker, virt, side.stack)


def _destroy(engine: Engine, stack: Any) -> None:
    """As the README says: unprotect (the pool and data volumes are protected), destroy."""
    with timed("engine: destroy"):
        engine.run("state", "unprotect", "--all", "--yes", "--stack", stack.name,
                   cwd=engine.state / "work")  # fmt: skip
        stack.destroy()


def _ours(docker: Any, virt: Any, stack: str) -> list[str]:
    """What of ``stack`` exists on libvirtd and dockerd (by name prefix and label)."""
    prefix = f"{stack}-"
    names = [d.name() for d in virt.listAllDomains(0)]
    names += [n.name() for n in virt.listAllNetworks(0)]
    names += [p.name() for p in virt.listAllStoragePools(0)]
    found = [n for n in names if n.startswith(prefix)]
    label = {"label": f"twinstack.stack={stack}"}
    found += [c.name for c in docker.containers.list(all=True, filters=label)]
    found += [n.name for n in docker.networks.list(filters=label)]
    found += [v.name for v in docker.volumes.list(filters=label)]
    found += [
        t for i in docker.images.list() for t in i.tags if t.startswith(f"twinstack/{prefix}")
    ]
    return found


def test_preview_and_up_create_the_plan(deployed: Deployed) -> None:
    """Preview and up agree: every resource is created, no pack objects."""
    creates = {u for u, op in deployed.preview.ops.items() if op == "create"}
    assert creates, deployed.preview.ops
    assert creates == {u for u, op in deployed.up.ops.items() if op == "create"}
    assert deployed.created == {"create": len(creates)}
    for events in (deployed.preview, deployed.up):
        assert [v for v in events.policy if v[2] == "mandatory"] == []
        advisory = [
            (v[0], m) for v, m in zip(events.policy, events.messages, strict=True)
            if v[2] == "advisory"
        ]  # fmt: skip
        # the only advisories: pulumi-policy's for an input not known before create
        assert all("can't be known during preview" in m for _, m in advisory), advisory
    assert deployed.up.diags == []


def test_instance_healthy_and_answers(deployed: Deployed, docker: Any, virt: Any) -> None:
    """The instance is healthy by the readiness signal of its runtime (the guest agent's
    probe of a VM, Docker's health status of a container) and answers `/healthz`."""
    name = deployed.side.instance
    with timed(f"engine {deployed.side.runtime}: healthy"):
        if deployed.side.runtime == "vm":
            health = wait_vm(
                virt, name, "api", Path("/nonexistent"), timeout_s=VM_TIMEOUT_S,
                probe_after_boot=True,
            )  # fmt: skip
        else:
            health = wait_container(docker, name, timeout_s=CONTAINER_TIMEOUT_S)
    assert health.healthy, str(health)
    code, out = _exec(deployed, docker, virt, ["/usr/bin/python3", "-c", CLIENT, "8081", "GET",
                                               "/healthz"])  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["body"] == {"ok": True}


def _exec(deployed: Deployed, docker: Any, virt: Any, argv: list[str]) -> tuple[int, str]:
    """Run argv in the instance (guest agent, `docker exec`): (exit code, stdout)."""
    if deployed.side.runtime == "vm":
        res = guest_exec(virt.lookupByName(deployed.side.instance), argv)
        return res.exit_code, res.stdout if res.exit_code == 0 else res.stderr
    code, out = docker.containers.get(deployed.side.instance).exec_run(argv, demux=True)
    return code, ((out[0] if code == 0 else out[1] or out[0]) or b"").decode()


def _service_env(deployed: Deployed, docker: Any, virt: Any) -> list[str]:
    """The running service process's environment, one ``NAME=value`` per item."""
    if deployed.side.runtime == "vm":
        pid = "$(systemctl show -p MainPID --value api)"
    else:
        pid = "$(cut -d' ' -f1 /proc/1/task/1/children)"  # the service, under docker-init
    code, out = _exec(
        deployed, docker, virt, ["/bin/bash", "-c", f"tr '\\0' '\\n' < /proc/{pid}/environ"]
    )
    assert code == 0, out
    return out.splitlines()


def test_secret_reaches_the_service_and_nothing_else(
    deployed: Deployed, docker: Any, virt: Any
) -> None:
    """A `--secret` config value is in the running service's environment and nowhere in the
    exported state or in the stack file in plain text."""
    assert f"API_TOKEN={SECRET}" in _service_env(deployed, docker, virt)
    if deployed.side.runtime == "container":
        # CIS 4.10: the value is in no container's configuration (`docker inspect`), only in
        # /run/secrets/API_TOKEN on the read-only volume its never-started writer filled
        service = docker.containers.get(deployed.side.instance)
        assert "API_TOKEN_FILE=/run/secrets/API_TOKEN" in service.attrs["Config"]["Env"]
        (mount,) = [m for m in service.attrs["Mounts"] if m["Destination"] == "/run/secrets"]
        assert mount["RW"] is False and mount["Type"] == "volume"
        writer = docker.containers.get(f"{deployed.side.instance}-secrets")
        assert writer.status == "created"  # never started
        for attrs in (service.attrs, writer.attrs):
            assert SECRET not in json.dumps(attrs, ensure_ascii=False)
        code, out = _exec(deployed, docker, virt, ["/bin/cat", "/run/secrets/API_TOKEN"])
        assert (code, out) == (0, SECRET)
    # what is stored: the backend's state file, and `pulumi stack export` as a user runs it
    # (the Automation API's export_stack() passes --show-secrets, so it is not used here)
    name = deployed.side.stack
    stored = list((deployed.engine.state / "backend").rglob(f"{name}.json"))
    assert len(stored) == 1, stored
    exported = deployed.engine.run(
        "stack", "export", "--stack", name, cwd=deployed.engine.state / "work"
    ).stdout
    for text in (stored[0].read_text(encoding="utf-8"), exported):
        assert SECRET not in text and json.dumps(SECRET)[1:-1] not in text
        assert '"ciphertext"' in text  # the secret is there, encrypted
    assert SECRET not in deployed.stack_file.read_text(encoding="utf-8")


def _translate(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        return [_translate(v, ids) for v in value]
    if isinstance(value, dict):  # the bridge's own bookkeeping (`__defaults`) is dropped
        return {k: _translate(v, ids) for k, v in value.items() if not k.startswith("__")}
    return value


def _has_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return SECRET_SIG in value or any(_has_secret(v) for v in value.values())
    return isinstance(value, list) and any(_has_secret(v) for v in value)


def _unseal(value: Any) -> Any:
    """A state value with its secret envelopes opened (`--show-secrets` gives plaintext)."""
    if isinstance(value, dict) and SECRET_SIG in value:
        return _unseal(json.loads(value["plaintext"]) if "plaintext" in value else value["value"])
    if isinstance(value, dict):
        return {k: _unseal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unseal(v) for v in value]
    return value


def _covered(got: Any, want: Any) -> bool:
    """``want`` (the plan) is in ``got`` (the state): the provider may add defaults, at any
    depth, but may not change or drop what the program sent."""
    if isinstance(want, dict) and SECRET_SIG in want:
        return True  # a secret's value (the plan's placeholder): compared on its own
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
    side = deployed.side
    plan = plan_of(side.stack, deployed.stack_file)
    state = deployed.stack.export_stack().deployment["resources"]
    custom = {r["urn"]: r for r in state if r.get("custom") and side.ours(r["type"])}
    planned = {r["urn"]: r for r in plan["resources"] if side.ours(r["type"])}
    assert set(custom) == set(planned)
    ids = {custom[u]["id"]: planned[u]["id"] for u in custom}
    for urn, rec in planned.items():
        raw = custom[urn].get("inputs", {})
        # an id is mapped where the plan holds the mock id; where the program passed a name
        # that is also the resource's id (a docker volume's), the raw value is the match
        got = {k: v if _covered(v, rec["inputs"].get(k)) else _translate(v, ids)
               for k, v in raw.items()}  # fmt: skip
        want = rec["inputs"]
        for key, value in list(want.items()):
            if isinstance(value, dict) and SECRET_SIG in value:  # a secret: compared above
                assert isinstance(got.get(key), dict) and SECRET_SIG in got[key], (urn, key)
                want = {k: v for k, v in want.items() if k != key}
            elif _has_secret(value):
                # a secret inside (an upload's content): the engine encrypts the whole
                # property; the rest of it must match, the secret's value is compared above
                assert isinstance(raw.get(key), dict) and SECRET_SIG in raw[key], (urn, key)
                got[key] = _translate(_unseal(raw[key]), ids)
        missing = {k: (got.get(k), v) for k, v in want.items() if not _covered(got.get(k), v)}
        assert missing == {}, urn


def test_footprint_from_state_equals_the_plans(deployed: Deployed, plan_of: PlanFn) -> None:
    """What `twinstack diff --from-state` reads from the engine's export (instances, sizes,
    images) equals what `twinstack diff` reads from the offline plan."""
    from twinstack.density.footprint import read_footprint

    export = deployed.stack.export_stack()
    state = read_footprint({"version": export.version, "deployment": export.deployment}, "state")
    plan = read_footprint(plan_of(deployed.side.stack, deployed.stack_file), "plan")
    assert state.instances and state.instances == plan.instances
    assert state.stack == plan.stack == deployed.side.stack


def test_second_preview_and_refresh_change_nothing(deployed: Deployed) -> None:
    ev = Events()
    result = deployed.stack.preview(on_event=ev)
    changed = {k: v for k, v in result.change_summary.items() if k != "same" and v}
    assert changed == {}, {u: op for u, op in ev.ops.items() if op != "same"}
    refreshed = deployed.stack.refresh()
    changes = dict(refreshed.summary.resource_changes or {})
    assert set(changes) <= {"same"}, changes


def _instance_id(deployed: Deployed, docker: Any, virt: Any) -> str:
    """The instance's identity: a new one is a replaced instance (domain UUID, container id)."""
    name = deployed.side.instance
    if deployed.side.runtime == "vm":
        return str(virt.lookupByName(name).UUIDString())
    return str(docker.containers.get(name).id)


def _replaced_and_healthy(
    deployed: Deployed, docker: Any, virt: Any, before: str, phase: str
) -> None:
    assert _instance_id(deployed, docker, virt) != before
    name = deployed.side.instance
    if deployed.side.runtime == "vm":
        with timed(f"engine vm: healthy ({phase})"):
            health = wait_vm(virt, name, "api", Path("/nonexistent"), timeout_s=VM_TIMEOUT_S,
                             probe_after_boot=True)  # fmt: skip
    else:
        health = wait_container(docker, name, timeout_s=CONTAINER_TIMEOUT_S)
    assert health.healthy, str(health)


def test_new_release_reaches_the_instance(deployed: Deployed, docker: Any, virt: Any) -> None:
    """A changed service file, `pulumi up`: the instance is replaced (a new image and
    container; a new root clone and domain, whose first boot installs the release), the new
    file is what runs, and data written before is still there (the volumes stay)."""
    import yaml

    item = json.dumps({"id": "before-release-2"})
    code, out = _exec(deployed, docker, virt, ["/usr/bin/python3", "-c", CLIENT, "8081",
                                               "POST", "/items", item])  # fmt: skip
    assert code == 0 and json.loads(out)["status"] == 201, out
    assert _exec(deployed, docker, virt, ["/usr/bin/sync"])[0] == 0  # a VM's domain is cut
    before = _instance_id(deployed, docker, virt)
    # as a user edits the stack file: the encrypted secret and its salt stay as they are
    doc = yaml.safe_load(deployed.stack_file.read_text(encoding="utf-8"))
    app = doc["config"]["twinstack:services"][0]["build"]["files"][0]
    app["content"] += "# release 2\n"
    deployed.stack_file.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    with timed(f"engine {deployed.side.runtime}: up (release 2)"):
        deployed.stack.up()
    _replaced_and_healthy(deployed, docker, virt, before, "release 2")
    code, out = _exec(deployed, docker, virt, ["/bin/cat", app["path"]])
    assert code == 0 and out.endswith("# release 2\n"), out[-200:]
    code, out = _exec(deployed, docker, virt, ["/usr/bin/python3", "-c", CLIENT, "8081",
                                               "GET", "/items"])  # fmt: skip
    assert code == 0 and {"id": "before-release-2"} in json.loads(out)["body"], out


ROTATED = "r0tated-\u00e9ngine-token"


def test_rotated_secret_reaches_the_service(deployed: Deployed, docker: Any, virt: Any) -> None:
    """`pulumi config set --secret` a new value, `pulumi up`: only the instance is replaced
    (the secret's writer and the container; the seed disk, root clone and domain), and the
    service runs with the new value. Before `replace_with`, the new value waited in the
    secret's file or seed disk until someone ran `pulumi up --replace`."""
    from pulumi import automation as auto

    vm = deployed.side.runtime == "vm"
    before = _instance_id(deployed, docker, virt)
    deployed.stack.set_config("twinstack:apiToken", auto.ConfigValue(value=ROTATED, secret=True))
    with timed(f"engine {deployed.side.runtime}: up (rotated secret)"):
        result = deployed.stack.up()
    changes = dict(result.summary.resource_changes or {})
    assert set(changes) == {"same", "replace"} and changes["replace"] == (3 if vm else 2), changes
    _replaced_and_healthy(deployed, docker, virt, before, "rotated secret")
    assert f"API_TOKEN={ROTATED}" in _service_env(deployed, docker, virt)
    assert ROTATED not in deployed.stack_file.read_text(encoding="utf-8")


def test_destroy_leaves_nothing(deployed: Deployed, docker: Any, virt: Any) -> None:
    stack = deployed.side.stack
    assert _ours(docker, virt, stack) != []
    _destroy(deployed.engine, deployed.stack)
    deployed.destroyed = True
    assert _ours(docker, virt, stack) == []
    state = deployed.stack.export_stack().deployment or {}
    assert [r["urn"] for r in state.get("resources", []) if deployed.side.ours(r["type"])] == []


# What the pinned SDKs declare that the providers built here do not serve: pulumi-docker's
# `Image` is its own Go code, not the upstream's (twinstack builds with RemoteImage instead).
NOT_SERVED = {"libvirt": set(), "docker": {"docker:index/image:Image"}}


def _sdk_resources(provider: str) -> dict[str, type]:
    """Token -> class of every resource the pinned pulumi_<provider> SDK declares."""
    import importlib
    import re

    sdk = importlib.import_module(f"pulumi_{provider}")
    text = Path(str(sdk.__file__)).read_text()
    found = re.search(r'resource_modules="""(.*?)"""', text, re.S)
    assert found is not None, f"pulumi_{provider} no longer registers its resource modules"
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


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_schema_covers_the_sdk(engine: Engine, provider: str) -> None:
    """The provider built here serves every token and property the pinned SDK sends, at
    every depth (resources, their inputs, and the nested input types)."""
    import importlib

    out = subprocess.run(
        [engine.pulumi, "package", "get-schema", engine.bindir / f"pulumi-resource-{provider}"],
        env={**os.environ, **engine.env}, check=True, capture_output=True, text=True,
    )  # fmt: skip
    schema = json.loads(out.stdout)
    assert schema["version"] == plugin_version(provider)
    sdk = _sdk_resources(provider)
    assert set(sdk) - NOT_SERVED[provider] == set(schema["resources"])
    package = importlib.import_module(f"pulumi_{provider}")
    for token in set(schema["resources"]):
        cls, res = sdk[token], schema["resources"][token]
        assert _pulumi_names(cls) <= set(res["properties"]), token
        args = getattr(package, f"{cls.__name__}Args")
        assert _pulumi_names(args) <= set(res.get("inputProperties", {})), token
    inputs = importlib.import_module(f"pulumi_{provider}._inputs")
    nested = 0
    for token, spec in schema["types"].items():
        args = getattr(inputs, f"{token.rsplit(':', 1)[1]}Args", None)
        if args is not None:
            nested += 1
            assert _pulumi_names(args) <= set(spec.get("properties", {})), token
    assert nested > 0


def test_hostile_stack_same_verdicts_as_offline(
    engine: Engine, docker: Any, virt: Any, plan_of: PlanFn, tmp_path: Path
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
    assert _ours(docker, virt, name) == []  # a stopped preview created nothing


# The README's table "What flipping `runtime` does to an existing stack", column by column:
# the op the engine plans for each kind of resource when `twinstack:runtime` changes.
FLIPS: list[tuple[str, str, dict[str, str]]] = [
    ("container", "vm", {"docker": "delete", "libvirt": "create"}),
    ("vm", "both", {"docker": "create", "libvirt": "same"}),
    ("both", "container", {"docker": "same", "libvirt": "delete"}),
]
KEPT = ("twinstack:service:Service", "twinstack:network:Network")


def _kind(urn: str) -> str:
    """`docker`, `libvirt` or the component type of a resource URN."""
    rtype = urn.split("::")[2].split("$")[-1]
    return rtype.split(":")[0] if rtype.startswith(("docker:", "libvirt:")) else rtype


def test_runtime_flip_under_the_engine(
    engine: Engine, docker: Any, virt: Any, images: Any, domain_type: str, tmp_path: Path
) -> None:
    """Flip one config value, `pulumi up` each time: container → vm → both → container.
    Each preview plans what the README's flip table says (components kept, one side
    created or deleted, the other untouched), and each up leaves exactly that side running."""
    from pulumi import automation as auto

    name = "itengflip"
    teardown_stack(docker, virt, name)
    api = example_service("api")
    stack_file = derived_stack(
        tmp_path, name, [api], runtime="container", domain_type=domain_type,
        cidr="10.213.14.0/24",
    )  # fmt: skip
    stack = _stack(engine, stack_file, name)
    try:
        with timed("engine flip: up container"):
            stack.up()
        for before, after, expect in FLIPS:
            stack.set_config("twinstack:runtime", auto.ConfigValue(value=after))
            pre = Events()
            stack.preview(on_event=pre)
            ops: dict[str, set[str]] = {}
            for urn, op in pre.ops.items():
                ops.setdefault(_kind(urn), set()).add(op)
            for kind, op in expect.items():
                assert ops.get(kind) == {op}, (before, after, kind, ops)
            for kind in KEPT:
                assert ops.get(kind) == {"same"}, (before, after, kind, ops)
            with timed(f"engine flip: up {before} -> {after}"):
                stack.up()
            found = _ours(docker, virt, name)
            containers = [
                c.name for c in docker.containers.list(filters={"label": f"twinstack.stack={name}"})
            ]
            domains = [d.name() for d in virt.listAllDomains(0) if d.name().startswith(f"{name}-")]
            assert bool(containers) == (after in ("container", "both")), found
            assert bool(domains) == (after in ("vm", "both")), found
    finally:
        try:
            with timed("engine: destroy"):
                stack.destroy()
            assert _ours(docker, virt, name) == []
        finally:
            stack.workspace.remove_stack(name, force=True)
            teardown_stack(docker, virt, name)


# Linux's MAX_ARG_STRLEN: the longest single environment string exec accepts. The engine hands
# each policy pack the whole stack config in one variable, PULUMI_CONFIG (pulumi/pulumi#8680).
ARG_MAX_STRLEN = 128 * 1024
WALL_SERVICES = 300


def _wall_services(n: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"svc{i}",
            "build": {
                "base": "twinstack/debian-base:bookworm",
                "command": ["python3", "-m", "http.server", "8080"],
                "environment": {"SERVICE": f"svc{i}", "MODE": "wall"},
                "files": [{"path": f"/srv/svc{i}/index.html", "content": f"svc {i}\n"}],
            },
            "resources": {"vcpus": 0.5, "memoryMib": 128},
            "ports": [{"name": "http", "port": 8080, "hostPort": 21000 + i}],
            "healthCheck": {"http": {"path": "/", "port": "http"}},
        }
        for i in range(n)
    ]


def test_a_stack_past_the_config_wall_previews_with_the_packs(
    engine: Engine, docker: Any, virt: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 services, whose config inline is over the 128 KiB the kernel allows one
    environment variable (what `twinstack policy` and a Python pack started through the
    language host get it in: PULUMI_CONFIG; tests/unit/test_service_files.py shows that
    failure): from service files (`twinstack:serviceFiles`) the stack previews under the
    engine with the three packs, passes them, and plans exactly the resources `twinstack
    plan` records for it. (This CLI starts the packs as executables and hands them the
    config over gRPC, so the inline stack would start here too; the language host that
    users' CLIs start Python packs through still sets PULUMI_CONFIG, pulumi/pulumi#20402.)"""
    from twinstack.plan import plan_stack

    work = engine.state / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)  # service files and build contexts are relative to it
    services = _wall_services(WALL_SERVICES)
    (work / "services").mkdir(exist_ok=True)
    for part, chunk in (("a", services[:150]), ("b", services[150:])):
        text = yaml.safe_dump({"services": chunk}, sort_keys=False)
        (work / "services" / f"wall-{part}.yaml").write_text(text)
    derived = derived_stack(
        tmp_path, "itengwall", services, runtime="container", domain_type="qemu",
        cidr="10.213.16.0/22",
    )  # fmt: skip
    inline_config = yaml.safe_load(derived.read_text())
    # PULUMI_CONFIG as the engine writes it: each value a string, objects as JSON text
    as_env = {
        k: v if isinstance(v, str) else json.dumps(v) for k, v in inline_config["config"].items()
    }
    assert len(f"PULUMI_CONFIG={json.dumps(as_env)}".encode()) > ARG_MAX_STRLEN
    files_config = json.loads(json.dumps(inline_config))
    del files_config["config"]["twinstack:services"]
    files_config["config"]["twinstack:serviceFiles"] = ["services/wall-*.yaml"]
    files_file = tmp_path / "Pulumi.itengwall.yaml"
    files_file.write_text(yaml.safe_dump(files_config, sort_keys=False))
    # the README's advice for large previews (the default saves the whole state per step)
    monkeypatch.setitem(engine.env, "PULUMI_SKIP_CHECKPOINTS", "true")

    stack = _stack(engine, files_file, "itengwall")
    events = Events()
    try:
        with timed(f"engine: preview {WALL_SERVICES} services from files, with packs"):
            stack.preview(policy_packs=engine.packs, on_event=events)
    finally:
        stack.workspace.remove_stack("itengwall", force=True)
    assert events.diags == []
    assert [p for p in events.policy if p[2] == "mandatory"] == []
    shutil.copy(ROOT / "__main__.py", work / "__main__.py")  # the program, as a project has it
    plan = plan_stack("itengwall", root=work, stack_file=files_file, preview=True)
    planned = {r["urn"] for r in plan["resources"]}
    assert len(planned) > 4 * WALL_SERVICES
    created = {u for u, op in events.ops.items() if op == "create"}
    assert {u for u in created if "::pulumi:pulumi:Stack::" not in u} == planned

    assert _ours(docker, virt, "itengwall") == []
