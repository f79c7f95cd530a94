"""runtime-parity on a real recorded plan: both fact sheets (twinstack_rules.facts) agree
for every service of a `both` stack, and a change to ONE side's recorded inputs is
reported as exactly that facet's difference, through the analyzer protocol."""

from __future__ import annotations

import contextlib
import copy
import importlib
import re
import shutil
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from twinstack.plan import SIG_KEY, plan_stack

from ._support import ROOT, UNKNOWN, Pack

# the rule library, importable once _support has put policies/ on sys.path
facts = importlib.import_module("twinstack_rules.facts")
guardrails = importlib.import_module("twinstack_rules.guardrails")

CONTAINER = "docker:index/container:Container"
DOMAIN = "libvirt:index/domain:Domain"
SEED = "libvirt:index/cloudInitDisk:CloudInitDisk"

CONFIG: dict[str, Any] = {
    "twinstack:runtime": "both",
    "twinstack:apiToken": {"secure": "v1:abc"},
    "twinstack:networks": [{"name": "apps", "cidr": "10.40.0.0/24"}],
    "twinstack:storage": [{"name": "data", "path": "/var/lib/ts/data", "capacityGib": 100}],
    "twinstack:vmImage": {"source": "/var/lib/ts/images/debian.qcow2"},
    "twinstack:services": [
        {
            # a built service: every facet has a value on both sides
            "name": "web",
            "build": {
                "command": ["python3", "-m", "http.server", "8080", "--directory", "/srv/www"],
                "workingDir": "/srv/www",
                "environment": {"GREETING": "hello world", "MODE": "prod"},
            },
            "resources": {"vcpus": 1.5, "memoryMib": 384},
            "ports": [
                {"name": "http", "port": 8080, "hostPort": 28080},
                {"name": "metrics", "port": 9090, "protocol": "udp"},
            ],
            "volumes": [{"name": "data", "mountPath": "/var/lib/web"}],
            "healthCheck": {"http": {"path": "/", "port": "http"}, "intervalS": 5, "timeoutS": 2},
            "restart": {"policy": "on-failure", "maxRetries": 3},
        },
        {
            # a secret in the environment (the whole envs list and user-data are secrets)
            "name": "job",
            "build": {
                "command": ["/usr/local/bin/job"],
                "user": "root",
                "environment": {"MODE": "batch"},
                "secrets": {"TOKEN": "apiToken"},
            },
            "healthCheck": {"command": ["/bin/true"]},
            "restart": {"policy": "always"},
        },
        {
            # a prebuilt image: the container keeps the image's USER, WORKDIR and CMD
            "name": "proxy",
            "image": {
                "container": "nginx:1.27.3-bookworm",
                "vm": {"source": "/var/lib/ts/images/nginx.qcow2"},
                "command": ["/usr/sbin/nginx", "-g", "daemon off;"],
            },
            "ports": [{"name": "http", "port": 80}],
            "healthCheck": {"command": ["/usr/sbin/nginx", "-t"]},
            "restart": {"policy": "no"},
        },
    ],
}

WEB_UNIT = "/etc/systemd/system/web.service"
WEB_HEALTH_UNIT = "/etc/systemd/system/twinstack-health-web.service"
WEB_ENV = "/etc/twinstack/web.env"


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("parity")
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(ROOT / "__main__.py", root / "__main__.py")
    (root / "stacks").mkdir()
    stack_file = root / "stacks" / "Pulumi.parity.yaml"
    stack_file.write_text(yaml.safe_dump({"config": CONFIG}, sort_keys=False), encoding="utf-8")
    with contextlib.chdir(root):  # build contexts go under the CWD
        return plan_stack("parity", None, root=root)


def _record(resources: list[dict[str, Any]], typ: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in resources if r["type"] == typ and r["name"] == name]
    return found


def _plain(value: Any) -> Any:
    return value["value"] if isinstance(value, dict) and SIG_KEY in value else value


def _sheets(plan: dict[str, Any], service: str) -> tuple[dict[str, Any], dict[str, Any]]:
    res = plan["resources"]
    container = _record(res, CONTAINER, f"{service}-container-0")
    domain = _record(res, DOMAIN, f"{service}-vm-0")
    seed = _record(res, SEED, f"{service}-vm-0-cloudinit")
    return (
        facts.container_facts(container["inputs"]),
        facts.vm_facts(domain["inputs"], seed["inputs"]["userData"], service),
    )


# --------------------------------------------------------------------------- fact sheets


def test_fact_sheets_of_a_recorded_plan_agree(plan: dict[str, Any]) -> None:
    for service in ("web", "job", "proxy"):
        left, right = _sheets(plan, service)
        for facet in facts.FACETS:
            assert facet.name in left and facet.name in right, (service, facet.name)
            a, b = left[facet.name], right[facet.name]
            assert not isinstance(b, facts.Undecodable), (service, facet.name, b)
            if facts.comparable(a) and facts.comparable(b):
                assert a == b, (service, facet.name, a, b)
        assert set(facts.CONTAINER_ONLY) <= set(left) and not set(facts.CONTAINER_ONLY) & set(right)

    web, web_vm = _sheets(plan, "web")
    assert web["user"] == "app" and web["workingDir"] == "/srv/www"
    assert web["command"] == ("python3", "-m", "http.server", "8080", "--directory", "/srv/www")
    assert web["env"] == {"GREETING": "hello world", "MODE": "prod"}
    assert web["ports"] == frozenset({"8080/tcp", "9090/udp"})
    assert web["restart"] == ("on-failure", 3)
    assert (web["memory"], web["vcpus"]) == (384, 2)
    assert web["volumes"] == frozenset({"/var/lib/web"})
    assert web["health.probe"].startswith("exec 3<>/dev/tcp/127.0.0.1/8080")
    assert web_vm["health.env"] == web["env"]
    assert (web["health.interval"], web["health.timeout"]) == ("5s", "2s")

    job, job_vm = _sheets(plan, "job")
    assert job["restart"] == ("always",)
    # the container names the secret's file (TOKEN_FILE), the VM's env file declares it:
    # both stand for TOKEN, filled from a secret, whose value is never compared
    assert job["env"] == job_vm["env"] == {"MODE": "batch", "TOKEN": facts.SECRET_VALUE}
    assert "/run/secrets" not in job["volumes"]  # the secrets' volume: the env file's twin

    # the intended asymmetry of a prebuilt image: left to the image, not compared
    proxy, proxy_vm = _sheets(plan, "proxy")
    for name in ("user", "workingDir", "command", "health.user", "health.workingDir"):
        assert proxy[name] is facts.IMAGE_DEFAULT, name
    assert proxy_vm["user"] == "root" and proxy_vm["workingDir"] == "/"
    assert proxy_vm["command"] == ("/usr/sbin/nginx", "-g", "daemon off;")
    assert proxy["restart"] == proxy_vm["restart"] == ("no",)


def test_recorded_plan_passes_parity(guardrails_pack: Pack, plan: dict[str, Any]) -> None:
    diags = guardrails_pack.analyze_stack(plan["resources"])
    assert [d.message for d in diags if d.policy == "runtime-parity"] == []


# --------------------------------------------------------------------------- mutations

Resources = list[dict[str, Any]]


def _edit_user_data(res: Resources, service: str, fn: Callable[[dict[str, Any]], None]) -> None:
    seed = _record(res, SEED, f"{service}-vm-0-cloudinit")
    value = seed["inputs"]["userData"]
    doc = yaml.safe_load(_plain(value))
    fn(doc)
    text = "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)
    if isinstance(value, dict):
        value["value"] = text
    else:
        seed["inputs"]["userData"] = text


def _edit_file(service: str, path: str, fn: Callable[[str], str]) -> Callable[[Resources], None]:
    def mutate(res: Resources) -> None:
        def edit(doc: dict[str, Any]) -> None:
            (entry,) = [f for f in doc["write_files"] if f["path"] == path]
            new = fn(entry["content"])
            assert new != entry["content"], "the mutation changed nothing"
            entry["content"] = new

        _edit_user_data(res, service, edit)

    return mutate


def _sub(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new, 1)


def _container(service: str, fn: Callable[[dict[str, Any]], None]) -> Callable[[Resources], None]:
    return lambda res: fn(_record(res, CONTAINER, f"{service}-container-0")["inputs"])


def _domain(service: str, fn: Callable[[dict[str, Any]], None]) -> Callable[[Resources], None]:
    return lambda res: fn(_record(res, DOMAIN, f"{service}-vm-0")["inputs"])


def _add_file(path: str, content: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["write_files"].append({"path": path, "content": content})


def _both(*fns: Callable[[Resources], None]) -> Callable[[Resources], None]:
    def mutate(res: Resources) -> None:
        for fn in fns:
            fn(res)

    return mutate


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda props: props.__setitem__(key, value)


# (id, mutation of one side, the one facet reported, fragments of its message)
CASES: list[tuple[str, Callable[[Resources], None], str, list[str]]] = [
    (
        "second-User-line",
        _edit_file("web", WEB_UNIT, _sub("User=app\n", "User=app\nUser=nobody\n")),
        "user",
        ["""container 'web-container-0' has "app", VM 'web-vm-0' has "nobody\""""],
    ),
    (
        "Group-line",
        _edit_file("web", WEB_UNIT, _sub("User=app\n", "User=app\nGroup=adm\n")),
        "user",
        ["VM 'web-vm-0' has \"app:adm\""],
    ),
    (
        "WorkingDirectory",
        _edit_file("web", WEB_UNIT, _sub("WorkingDirectory=/srv/www", "WorkingDirectory=/srv")),
        "workingDir",
        ['has "/srv/www", VM \'web-vm-0\' has "/srv"'],
    ),
    (
        "ExecStart",
        _edit_file("web", WEB_UNIT, _sub('"8080"', '"8081"')),
        "command",
        ['"http.server", "8081"'],
    ),
    (
        "ExecStart-with-variable",
        _edit_file("web", WEB_UNIT, _sub('"8080"', '"$PORT"')),
        "command",
        ["undecodable (/etc/systemd/system/web.service: ExecStart= expands $VARIABLES"],
    ),
    (
        "container-command",
        _container("web", _set("command", ["python3", "-m", "http.server"])),
        "command",
        ["""has ... "-m", "http.server"], VM 'web-vm-0' has ... "-m", "http.server", "8080","""],
    ),
    (
        "env-file-value",
        _edit_file("web", WEB_ENV, _sub('MODE="prod"', 'MODE="dev"')),
        "env",
        [
            "(so does the health probe's: health.env)",
            "container 'web-container-0' has {MODE=\"prod\"}, VM 'web-vm-0' has {MODE=\"dev\"}",
        ],
    ),
    (
        "envs-differ",
        _container("web", _set("envs", ["GREETING=hello", "MODE=prod"])),
        "env",
        ['{GREETING="hello"}, VM \'web-vm-0\' has {GREETING="hello world"}'],
    ),
    (
        "Environment-line",
        _edit_file("web", WEB_UNIT, _sub("EnvironmentFile=", "Environment=X=1\nEnvironmentFile=")),
        "env",
        ["web.service sets Environment=, which the readers do not decode"],
    ),
    (
        "maxRetryCount-0",
        _container("web", _set("maxRetryCount", 0)),
        "restart",
        ["has on-failure, unlimited retries, VM 'web-vm-0' has on-failure, 3 retries"],
    ),
    (
        "StartLimitBurst",
        _edit_file("web", WEB_UNIT, _sub("StartLimitBurst=4", "StartLimitBurst=6")),
        "restart",
        ["has on-failure, 3 retries, VM 'web-vm-0' has on-failure, 5 retries"],
    ),
    (
        "Restart-always",
        _edit_file("web", WEB_UNIT, _sub("Restart=on-failure", "Restart=always")),
        "restart",
        ["VM 'web-vm-0' has always, rate-limited to 4 starts per 1d"],
    ),
    (
        "ports-fact",
        _domain(
            "web",
            lambda p: p.__setitem__(
                "description", p["description"].replace("8080/tcp,9090/udp", "8080/tcp")
            ),
        ),
        "ports",
        ["has [8080/tcp, 9090/udp], VM 'web-vm-0' has [8080/tcp]"],
    ),
    (
        "published-port",
        _container(
            "web",
            lambda p: p["ports"].append(
                {"internal": 7000, "external": 27000, "ip": "127.0.0.1", "protocol": "tcp"}
            ),
        ),
        "ports",
        ["has [7000/tcp, 8080/tcp, 9090/udp], VM"],
    ),
    (
        "memory",
        _domain("web", _set("memory", 512)),
        "memory",
        ["has 384, VM 'web-vm-0' has 512"],
    ),
    (
        "cpus",
        _container("web", _set("cpus", "2.5")),
        "vcpus",
        ["has 3, VM 'web-vm-0' has 2"],
    ),
    (
        "mount",
        lambda res: _edit_user_data(
            res, "web", lambda doc: doc["mounts"][0].__setitem__(1, "/var/lib/other")
        ),
        "volumes",
        ["has [/var/lib/web], VM 'web-vm-0' has [/var/lib/other]"],
    ),
    (
        "health-User",
        _edit_file("web", WEB_HEALTH_UNIT, _sub("User=app", "User=root")),
        "health.user",
        ['has "app", VM \'web-vm-0\' has "root"'],
    ),
    (
        "health-WorkingDirectory",
        _edit_file("web", WEB_HEALTH_UNIT, _sub("WorkingDirectory=/srv/www", "WorkingDirectory=/")),
        "health.workingDir",
        ['has "/srv/www", VM \'web-vm-0\' has "/"'],
    ),
    (
        "health-EnvironmentFile",
        _both(
            lambda res: _edit_user_data(
                res, "web", _add_file("/etc/twinstack/probe.env", 'MODE="probe"\n')
            ),
            _edit_file(
                "web", WEB_HEALTH_UNIT, _sub("/etc/twinstack/web.env", "/etc/twinstack/probe.env")
            ),
        ),
        "health.env",
        [
            '{GREETING="hello world", MODE="prod"}, VM \'web-vm-0\' has {GREETING unset, MODE="probe"}'
        ],
    ),
    (
        "health-script",
        _edit_file("web", "/usr/local/lib/twinstack/health-web", _sub("timeout 2", "timeout 20")),
        "health.probe",
        ["differs between runtimes in health probe [health.probe]"],
    ),
    (
        "health-unit-missing",
        lambda res: _edit_user_data(
            res,
            "web",
            lambda doc: doc.__setitem__(
                "write_files", [f for f in doc["write_files"] if f["path"] != WEB_HEALTH_UNIT]
            ),
        ),
        "health.probe",
        ["VM 'web-vm-0' has none"],
    ),
]


def _facets(diags: list[Any]) -> list[str]:
    found = []
    for d in diags:
        match = re.search(r"differs between runtimes in [^\[]*\[([\w.]+)\]", d.message)
        assert match, d.message
        found.append(match.group(1))
    return found


@pytest.mark.parametrize(
    ("mutate", "facet", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_one_side_changed_reports_that_facet(
    guardrails_pack: Pack,
    plan: dict[str, Any],
    mutate: Callable[[Resources], None],
    facet: str,
    fragments: list[str],
) -> None:
    res = copy.deepcopy(plan["resources"])
    mutate(res)
    diags = [d for d in guardrails_pack.analyze_stack(res) if d.policy == "runtime-parity"]
    assert _facets(diags) == [facet], "\n".join(d.message for d in diags)
    (diag,) = diags
    assert diag.level == "mandatory"
    assert diag.urn == _record(res, CONTAINER, "web-container-0")["urn"]
    assert "Service 'web' replica 0 differs between runtimes in " in diag.message
    assert f"or list '{facet}' in this policy's `ignore` config." in diag.message
    for fragment in fragments:
        assert fragment in diag.message, diag.message


def test_ignore_by_facet_and_by_group(guardrails_pack: Pack, plan: dict[str, Any]) -> None:
    res = copy.deepcopy(plan["resources"])
    _edit_file("web", WEB_HEALTH_UNIT, _sub("User=app", "User=root"))(res)
    _container("web", _set("memory", 1024))(res)
    try:
        guardrails_pack.configure({"runtime-parity": {"ignore": ["health"]}})
        assert _facets(guardrails_pack.analyze_stack(res)) == ["memory"]
        guardrails_pack.configure({"runtime-parity": {"ignore": ["memory", "health.user"]}})
        assert guardrails_pack.analyze_stack(res) == []
    finally:
        guardrails_pack.configure(None)


def test_env_ignored_then_probe_env_is_reported_alone(
    guardrails_pack: Pack, plan: dict[str, Any]
) -> None:
    res = copy.deepcopy(plan["resources"])
    _edit_file("web", WEB_ENV, _sub('MODE="prod"', 'MODE="dev"'))(res)
    try:
        guardrails_pack.configure({"runtime-parity": {"ignore": ["env"]}})
        assert _facets(guardrails_pack.analyze_stack(res)) == ["health.env"]
    finally:
        guardrails_pack.configure(None)


def test_secret_environment_values_stay_hidden(guardrails_pack: Pack, plan: dict[str, Any]) -> None:
    res = copy.deepcopy(plan["resources"])
    _edit_file("job", "/etc/twinstack/job.env", _sub('MODE="batch"', 'MODE="nightly"'))(res)
    # a secret's value is never compared (the container has only its file's name)
    _edit_file("job", "/etc/twinstack/job.env", _sub("[secret:apiToken]", "[secret:other]"))(res)
    diags = [d for d in guardrails_pack.analyze_stack(res) if d.policy == "runtime-parity"]
    assert _facets(diags) == ["env"]
    message = diags[0].message
    # the service has secrets: no value is shown, only the names
    assert (
        "container 'job-container-0' has {MODE=<hidden>}, VM 'job-vm-0' has {MODE=<hidden>}"
        in message
    )
    assert "batch" not in message and "secret:" not in message


def test_prebuilt_image_defaults_are_not_compared(
    guardrails_pack: Pack, plan: dict[str, Any]
) -> None:
    """The container of a prebuilt image without `user`/`command` runs the image's USER,
    WORKDIR and CMD, which the inputs do not show: the VM's unit is not held to them."""
    res = copy.deepcopy(plan["resources"])
    unit = "/etc/systemd/system/proxy.service"
    _edit_file("proxy", unit, _sub('"daemon off;"', '"daemon on;"'))(res)
    _edit_file("proxy", unit, _sub("WorkingDirectory=/", "WorkingDirectory=/srv"))(res)
    assert [d for d in guardrails_pack.analyze_stack(res) if d.policy == "runtime-parity"] == []
    # ...but what the container does state is compared
    _edit_file("proxy", unit, _sub("User=root", "User=nobody"))(res)
    _container("proxy", _set("user", "root"))(res)
    diags = [d for d in guardrails_pack.analyze_stack(res) if d.policy == "runtime-parity"]
    assert _facets(diags) == ["user"]


def test_redacted_user_data_is_not_compared(guardrails_pack: Pack, plan: dict[str, Any]) -> None:
    res = copy.deepcopy(plan["resources"])
    _record(res, SEED, "web-vm-0-cloudinit")["inputs"]["userData"] = "[secret]"
    assert [d for d in guardrails_pack.analyze_stack(res) if d.policy == "runtime-parity"] == []


def test_facets_are_documented_and_configurable() -> None:
    (policy,) = [p for p in guardrails.POLICIES if p.name == "runtime-parity"]
    items = policy.config_schema.properties["ignore"]["items"]
    assert set(items["enum"]) == {*facts.FACET_NAMES, "health"}
    readme = (ROOT / "policies" / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("* `runtime-parity`") :]
    for name in (*facts.FACET_NAMES, *facts.CONTAINER_ONLY):
        assert f"`{name}`" in section, name


def test_plain_records_mark_secrets_and_unknowns_unreadable(plan: dict[str, Any]) -> None:
    """Called on plain plan records (not through the SDK, which reports unknowns itself),
    the sheets mark what they cannot read instead of guessing."""
    res = copy.deepcopy(plan["resources"])
    container = _record(res, CONTAINER, "web-container-0")["inputs"]
    container.update(memory=UNKNOWN, envs="[secret]", workingDir=UNKNOWN)
    left = facts.container_facts(container)
    assert left["memory"] is left["env"] is left["workingDir"] is facts.UNREADABLE
    assert left["health.env"] is facts.UNREADABLE
    domain = _record(res, DOMAIN, "web-vm-0")["inputs"]
    encrypted = {SIG_KEY: "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "v1:abc"}
    right = facts.vm_facts(domain, encrypted, "web")
    for name in ("user", "workingDir", "command", "env", "restart", "volumes", "health.probe"):
        assert right[name] is facts.UNREADABLE, name
    assert right["memory"] == 384 and right["ports"] == frozenset({"8080/tcp", "9090/udp"})
    # a user-data that is there but not cloud-config cannot show parity: undecodable
    shell = facts.vm_facts(domain, "#!/bin/sh\necho hi\n", "web")
    assert isinstance(shell["command"], facts.Undecodable)
