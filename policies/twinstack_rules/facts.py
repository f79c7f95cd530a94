"""Behaviour facts of a service instance, derived from the recorded inputs of each runtime.

``runtime-parity`` compares a service's container and its VM twin. It does not compare
inputs property by property (the two providers share almost no property): each side's
inputs are turned into one **fact sheet** with the same fact names and the same value
forms, and the sheets are compared fact by fact.

* :func:`container_facts` reads a ``docker:index/container:Container``'s props.
* :func:`vm_facts` reads a ``libvirt:index/domain:Domain``'s props and the user-data of its
  cloud-init disk: the service unit ``/etc/systemd/system/<svc>.service``, the health unit
  ``/etc/systemd/system/twinstack-health-<svc>.service``, the files they name (the
  EnvironmentFile, the probe script) and cloud-init ``mounts``. Unit files and env files are
  decoded only by :mod:`twinstack_rules.formats`, the readers proven against
  ``systemd-analyze`` and ``bash``.

Props are camelCase wire names. Values in a fact sheet are plain Python values (str,
int, tuple, frozenset, dict) or one of three markers:

* :data:`UNREADABLE` — the input is a redacted secret (``"[secret]"``, a ciphertext
  envelope) or an unknown-value sentinel (only when called on plain dicts: under the
  policy SDK, reading an unknown value raises and the SDK reports "can't run policy").
  Not compared.
* :data:`IMAGE_DEFAULT` — the container leaves the setting to its image (``user``,
  ``workingDir``, ``command`` unset: Docker uses the image's USER/WORKDIR/CMD, which the
  inputs do not show). Not compared: an intended asymmetry of prebuilt-image services.
* :class:`Undecodable` — the VM's text is there but uses a construct the readers do not
  decode (a ``$VAR`` in ``ExecStart=``, an ``Environment=`` line, a missing file…). Always
  a difference: parity cannot be shown, so it is reported with the reason.

:data:`FACETS` names every compared fact (with where each side reads it) and
:data:`CONTAINER_ONLY` the facts only the container has; ``policies/README.md`` and the
project README's "What runtime parity compares" describe the same table.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import proxy
from pulumi_policy.deserialize import SPECIAL_SIG_KEY

from twinstack_rules.common import (
    SECRETS_DIR,
    SECRETS_LOADER,
    YAMLError,
    load_yaml_shared,
    num,
    secret_file_env,
)
from twinstack_rules.formats import (
    FormatError,
    declared_secret_keys,
    read_env_file,
    read_unit,
    split_exec,
    unit_value,
    unit_values,
)

# --------------------------------------------------------------------------- markers


class _Marker:
    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text

    def __repr__(self) -> str:
        return f"<{self.name}>"


UNREADABLE: Any = _Marker("unreadable", "unreadable (a secret or unknown value)")
"""A redacted secret or unknown value: the facet is not compared."""

SECRET_VALUE: Any = _Marker("secret", "filled from a Pulumi secret (the value is not compared)")
"""A variable filled from a Pulumi secret: declared so by a VM's env file, or named in a
container by ``<ENV>_FILE=/run/secrets/<ENV>``. Equal to itself; values are not compared."""

IMAGE_DEFAULT: Any = _Marker("image-default", "the image's own (not in the inputs)")
"""The container leaves the setting to its image: the facet is not compared."""


@dataclass(frozen=True)
class Undecodable:
    """VM text the readers cannot decode faithfully; never equal to anything."""

    reason: str

    def __str__(self) -> str:
        return f"undecodable ({self.reason})"


def comparable(value: Any) -> bool:
    """Whether a fact value takes part in the comparison."""
    return value is not UNREADABLE and value is not IMAGE_DEFAULT


# --------------------------------------------------------------------------- facets


@dataclass(frozen=True)
class Facet:
    """One compared fact: its name (the ``ignore`` config uses it), a label for messages,
    where each side reads it, and how to fix a difference."""

    name: str
    label: str
    container: str
    vm: str
    fix: str
    depends_on: str | None = None
    """Only compared when both sides have this facet with a value (the health probe)."""
    same_as: str | None = None
    """A facet whose value the runtime reuses (the probe runs with the service's user,
    directory, environment): a difference already reported there is not repeated."""


_SPEC_FIX = (
    "Both realizations are rendered from the same spec (components.service, "
    "components.renderers): re-plan both instead of editing one side"
)

FACETS: tuple[Facet, ...] = (
    Facet(
        "user",
        "user",
        "`user` (unset: the image's USER, not compared)",
        "service unit `User=` (+ `:Group=`; unset: root)",
        f"{_SPEC_FIX} (spec `build.user` / `image.user`)",
    ),
    Facet(
        "workingDir",
        "working directory",
        "`workingDir` (unset: the image's WORKDIR, not compared)",
        "service unit `WorkingDirectory=` (unset: /)",
        f"{_SPEC_FIX} (spec `build.workingDir`)",
    ),
    Facet(
        "command",
        "command",
        "`entrypoints` + `command` (both unset: the image's CMD, not compared)",
        "service unit `ExecStart=` split by formats.split_exec",
        f"{_SPEC_FIX} (spec `build.command` / `image.command`)",
    ),
    Facet(
        "env",
        "environment",
        "`envs` (`K=V`, split at the first `=`)",
        "service unit `EnvironmentFile=` files from write_files, formats.read_env_file",
        f"{_SPEC_FIX} (spec `environment` / `secrets`)",
    ),
    Facet(
        "ports",
        "ports",
        "label `twinstack.ports` + published `ports[].internal/protocol`",
        'domain `description` fact `{"twinstack": {"ports": "8080/tcp,..."}}`',
        f"{_SPEC_FIX} (spec `ports`)",
    ),
    Facet(
        "restart",
        "restart policy",
        "`restart` + `maxRetryCount` (no → no; on-failure → retries, 0 = unlimited; "
        "always/unless-stopped → always)",
        "service unit `Restart=` + `[Unit] StartLimitBurst=` (retries = burst - 1) and "
        "`StartLimitIntervalSec=0` (unlimited)",
        f"{_SPEC_FIX} (spec `restart`)",
    ),
    Facet(
        "memory",
        "memory (MiB)",
        "`memory` (unset: no limit)",
        "domain `memory` (unset: 512)",
        f"{_SPEC_FIX} (spec `resources.memoryMib`)",
    ),
    Facet(
        "vcpus",
        "vCPUs (container cpus rounded up)",
        "`cpus`, rounded up (unset: no limit)",
        "domain `vcpu` (unset: 1)",
        f"{_SPEC_FIX} (spec `resources.vcpus`)",
    ),
    Facet(
        "volumes",
        "volume mount paths",
        "`mounts[].target` (not tmpfs) + `volumes[].containerPath`",
        "cloud-init `mounts` entries' mount point (2nd field)",
        f"{_SPEC_FIX} (spec `volumes`)",
    ),
    Facet(
        "health.probe",
        "health probe",
        '`healthcheck.tests` (`["CMD", "/bin/bash", "-c", <script>]`)',
        "health unit `ExecStart=` (`/bin/bash <file>`: the file from write_files, "
        "without its final newline)",
        f"{_SPEC_FIX} (spec `healthCheck`)",
    ),
    Facet(
        "health.user",
        "health probe user",
        "the container's `user` (Docker runs the probe like the service)",
        "health unit `User=`",
        "Run the VM's health unit as the service's user (components.renderers.render_health_unit)",
        depends_on="health.probe",
        same_as="user",
    ),
    Facet(
        "health.workingDir",
        "health probe working directory",
        "the container's `workingDir`",
        "health unit `WorkingDirectory=`",
        "Run the VM's health unit in the service's working directory "
        "(components.renderers.render_health_unit)",
        depends_on="health.probe",
        same_as="workingDir",
    ),
    Facet(
        "health.env",
        "health probe environment",
        "the container's `envs`",
        "health unit `EnvironmentFile=` files from write_files",
        "Give the VM's health unit the service's EnvironmentFile "
        "(components.renderers.render_health_unit)",
        depends_on="health.probe",
        same_as="env",
    ),
)
"""Every compared facet, in report order."""

FACET_NAMES: tuple[str, ...] = tuple(f.name for f in FACETS)

GROUPS: dict[str, tuple[str, ...]] = {
    "health": tuple(n for n in FACET_NAMES if n.startswith("health."))
}
"""``ignore`` shorthands: ``health`` ignores every ``health.*`` facet."""

CONTAINER_ONLY: dict[str, str] = {
    "health.interval": "the VM probes only at boot (the ready script), not periodically",
    "health.timeout": "the probe script carries `timeout <s>` itself (compared in "
    "health.probe); the health unit's TimeoutStartSec= is a wider outer bound",
    "health.retries": "the VM has no running health state; the ready script's attempt "
    "count is in a bash script the readers do not decode",
    "health.startPeriod": "as health.retries",
}
"""Facts only the container sheet has, and why the VM has no counterpart."""


# --------------------------------------------------------------------------- helpers

# the SDK's sentinels for values unknown in a preview (pulumi_policy.proxy)
_UNKNOWN = frozenset(
    {
        proxy.UNKNOWN_BOOLEAN_VALUE,
        proxy.UNKNOWN_NUMBER_VALUE,
        proxy.UNKNOWN_STRING_VALUE,
        proxy.UNKNOWN_ARRAY_VALUE,
        proxy.UNKNOWN_ASSET_VALUE,
        proxy.UNKNOWN_ARCHIVE_VALUE,
        proxy.UNKNOWN_OBJECT_VALUE,
    }
)
_REDACTED = "[secret]"


def _plain(value: Any) -> Any:
    """A wire value as a rule can read it: a secret envelope's value (plan records hold
    envelopes; the SDK has unwrapped them already), or UNREADABLE for a redacted or
    encrypted secret and for an unknown sentinel."""
    if isinstance(value, Mapping) and SPECIAL_SIG_KEY in value:
        return _plain(value["value"]) if "value" in value else UNREADABLE
    if isinstance(value, str) and (value in _UNKNOWN or value == _REDACTED):
        return UNREADABLE
    return value


def _seq(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _limit(value: Any, whole: Any, unset: int | None = None) -> Any:
    """A memory/CPU figure as a whole number (``unset`` when absent or not positive)."""
    if value is UNREADABLE:
        return UNREADABLE
    number = num(value)
    return whole(number) if number else unset


def _port(entry: str) -> str:
    entry = entry.strip().lower()
    return entry if "/" in entry else f"{entry}/tcp"


def _ports(value: Any) -> set[str]:
    """``"8080/tcp,9090/udp"`` (or a list of such entries) → ``{"8080/tcp", "9090/udp"}``."""
    if value is None:
        return set()
    items = str(value).split(",") if isinstance(value, str) else [str(v) for v in value]
    return {_port(p) for p in items if p.strip()}


def _path(value: Any) -> str:
    return posixpath.normpath("/" + str(value).strip().lstrip("/"))


def _env_entries(entries: Any) -> Any:
    """Docker ``envs`` (``K=V``; the last one of a key wins) → dict."""
    env: dict[str, str] = {}
    for entry in entries:
        entry = _plain(entry)
        if entry is UNREADABLE:
            return UNREADABLE
        key, sep, value = str(entry).partition("=")
        if not sep:
            return Undecodable(f"envs entry {str(entry)[:40]!r} has no '='")
        env[key] = value
    for key, value in list(env.items()):
        secret = secret_file_env(key, value)
        if secret is not None:  # the service sees <ENV>, read from the file
            del env[key]
            env[secret] = SECRET_VALUE
    return env


# --------------------------------------------------------------------------- container


def container_facts(props: Mapping[str, Any]) -> dict[str, Any]:
    """The fact sheet of a ``docker:index/container:Container`` from its props."""
    facts: dict[str, Any] = {}

    user = _plain(props.get("user"))
    facts["user"] = IMAGE_DEFAULT if user in (None, "") else user

    workdir = _plain(props.get("workingDir"))
    if workdir is UNREADABLE:
        facts["workingDir"] = UNREADABLE
    else:
        facts["workingDir"] = IMAGE_DEFAULT if workdir in (None, "") else _path(workdir)

    entrypoint, command = _plain(props.get("entrypoints")), _plain(props.get("command"))
    if UNREADABLE in (entrypoint, command):
        facts["command"] = UNREADABLE
    elif entrypoint:  # an entrypoint replaces the image's; the image's CMD is dropped too
        facts["command"] = (*[str(a) for a in entrypoint], *[str(a) for a in command or []])
    elif command:
        facts["command"] = tuple(str(a) for a in command)
    else:
        facts["command"] = IMAGE_DEFAULT

    envs = _plain(props.get("envs"))
    if envs is UNREADABLE or (envs is not None and not _seq(envs)):
        facts["env"] = UNREADABLE  # a redacted secret
    else:
        facts["env"] = _env_entries(envs or [])

    labels: dict[str, str] = {}
    for item in props.get("labels") or []:
        if isinstance(item.get("label"), str):
            labels[item["label"]] = str(item.get("value", ""))
    ports = _ports(labels.get("twinstack.ports"))
    for p in props.get("ports") or []:  # what is published is listened on
        internal = num(p.get("internal"))
        if internal is not None:
            ports.add(f"{int(internal)}/{str(p.get('protocol') or 'tcp').lower()}")
    facts["ports"] = frozenset(ports)

    policy = _plain(props.get("restart")) or "no"
    retries = _plain(props.get("maxRetryCount"))
    if UNREADABLE in (policy, retries):
        facts["restart"] = UNREADABLE
    elif policy == "no":
        facts["restart"] = ("no",)
    elif policy == "on-failure":
        count = num(retries)
        # Docker: a count of 0 (or none) restarts on failure without limit
        facts["restart"] = ("on-failure", int(count) if count else "unlimited")
    elif policy in ("always", "unless-stopped"):
        facts["restart"] = ("always",)
    else:
        facts["restart"] = (str(policy),)

    memory, cpus = _plain(props.get("memory")), _plain(props.get("cpus"))
    facts["memory"] = _limit(memory, int)
    facts["vcpus"] = _limit(cpus, math.ceil)

    targets = {
        _path(m.get("target"))
        for m in props.get("mounts") or []
        if m.get("type") != "tmpfs" and m.get("target")
    }
    targets.discard(SECRETS_DIR)  # the secrets' volume: the VM's twin is its env file
    targets |= {
        _path(v["containerPath"]) for v in props.get("volumes") or [] if v.get("containerPath")
    }
    facts["volumes"] = frozenset(targets)

    check = props.get("healthcheck") or {}
    tests = [str(t) for t in check.get("tests") or []]
    if not tests or tests[0].upper() == "NONE":
        facts["health.probe"] = None
    else:
        if tests[1:2] == [SECRETS_LOADER]:  # the probe gets the service's secrets first
            tests = tests[:1] + tests[2:]
        if tests[:3] == ["CMD", "/bin/bash", "-c"] and len(tests) == 4:
            facts["health.probe"] = tests[3]
        elif tests[0] == "CMD-SHELL" and len(tests) == 2:
            facts["health.probe"] = ("exec", "/bin/sh", "-c", tests[1])
        else:
            facts["health.probe"] = ("exec", *tests[1:])
        # Docker runs the probe in the container: its user, directory and environment
        facts["health.user"] = facts["user"]
        facts["health.workingDir"] = facts["workingDir"]
        facts["health.env"] = facts["env"]
        for key in ("interval", "timeout", "retries", "startPeriod"):
            facts[f"health.{key}"] = check.get(key)
    return facts


# --------------------------------------------------------------------------- VM


def domain_description(props: Mapping[str, Any]) -> dict[str, Any]:
    """The ``{"twinstack": {...}}`` facts a domain carries in its description."""
    description = props.get("description")
    if not isinstance(description, str):
        return {}
    try:
        doc = json.loads(description)
    except ValueError:
        return {}
    facts = doc.get("twinstack") if isinstance(doc, dict) else None
    return facts if isinstance(facts, dict) else {}


def _cloud_config(user_data: Any) -> Any:
    """The parsed ``#cloud-config`` document, UNREADABLE, or Undecodable."""
    text = _plain(user_data)
    if text is UNREADABLE or text is None:
        return UNREADABLE
    if not isinstance(text, str):
        return UNREADABLE  # an encrypted envelope as the SDK hands it over
    if not text.lstrip().startswith("#cloud-config"):
        return Undecodable("the user-data is not a #cloud-config document")
    try:
        doc = load_yaml_shared(text)
    except YAMLError as exc:
        return Undecodable(f"the user-data is not valid YAML ({str(exc)[:60]})")
    return doc if isinstance(doc, dict) else Undecodable("the user-data is not a YAML map")


def _written_files(doc: dict[str, Any]) -> dict[str, Any]:
    """``write_files`` as ``{path: content}`` (later entries win, ``append`` appends);
    content in an encoding cloud-init decodes but this does not is Undecodable."""
    files: dict[str, Any] = {}
    for entry in doc.get("write_files") or []:
        if not isinstance(entry, dict) or not entry.get("path"):
            continue
        path = _path(entry["path"])
        content: Any = entry.get("content")
        content = "" if content is None else content
        encoding = str(entry.get("encoding") or "text").lower()
        try:
            if encoding in ("b64", "base64"):
                content = base64.b64decode(str(content)).decode()
            elif encoding in ("gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
                content = gzip.decompress(base64.b64decode(str(content))).decode()
            elif encoding != "text":
                content = Undecodable(f"{path} has encoding {encoding!r}")
        except (binascii.Error, OSError, UnicodeDecodeError, EOFError):
            content = Undecodable(f"{path} is not valid {encoding}")
        if not isinstance(content, Undecodable):
            content = str(content)
            if entry.get("append") and isinstance(files.get(path), str):
                content = files[path] + content
        files[path] = content
    return files


_NOT_A_WORD = re.compile(r"[\s\"'\\%]")


def _word(value: str | None, setting: str, default: str) -> Any:
    """A single-word unit setting (``User=``, ``WorkingDirectory=``): twinstack writes
    them unquoted; quotes, escapes, specifiers are not decoded."""
    if value is None or value == "":
        return default
    if _NOT_A_WORD.search(value):
        return Undecodable(f"{setting}={value[:40]} uses quoting or specifiers")
    return value


_Unit = dict[str, list[tuple[str, str]]]


def _unit(files: dict[str, Any], path: str) -> _Unit | Undecodable | None:
    text = files.get(path)
    if text is None:
        return None
    if isinstance(text, Undecodable):
        return text
    try:
        return read_unit(text)
    except FormatError as exc:
        return Undecodable(f"{path}: {exc}")


def _unit_user(unit: _Unit) -> Any:
    user = _word(unit_value(unit, "Service", "User"), "User", "root")
    group = unit_value(unit, "Service", "Group")
    if group and not isinstance(user, Undecodable):
        group = _word(group, "Group", "")
        return group if isinstance(group, Undecodable) else f"{user}:{group}"
    return user


def _unit_workdir(unit: _Unit) -> Any:
    value = unit_value(unit, "Service", "WorkingDirectory")
    if value and value.startswith("-"):
        value = value[1:]  # "-": a missing directory is not fatal; the same directory
    if value == "~":
        return Undecodable("WorkingDirectory=~ is the user's home directory")
    word = _word(value, "WorkingDirectory", "/")
    return word if isinstance(word, Undecodable) else _path(word)


def _unit_exec(unit: _Unit, path: str) -> Any:
    commands: list[str] = []
    for value in unit_values(unit, "Service", "ExecStart"):
        commands = [] if value == "" else [*commands, value]  # an empty one resets the list
    if len(commands) != 1:
        return Undecodable(f"{path} has {len(commands)} ExecStart= commands")
    try:
        return tuple(split_exec(commands[0]))
    except FormatError as exc:
        return Undecodable(f"{path}: {exc}")


def _unit_env(unit: _Unit, files: dict[str, Any], path: str) -> Any:
    """The environment a unit's process gets from its EnvironmentFile= files (systemd's
    own variables such as PATH or HOME aside)."""
    for key in ("Environment", "PassEnvironment", "UnsetEnvironment"):
        if unit_values(unit, "Service", key):
            return Undecodable(f"{path} sets {key}=, which the readers do not decode")
    names: list[str] = []
    for value in unit_values(unit, "Service", "EnvironmentFile"):
        names = [] if value == "" else [*names, value]
    env: dict[str, str] = {}
    for name in names:
        name = name[1:] if name.startswith("-") else name
        text = files.get(_path(name)) if name.startswith("/") else None
        if text is None:
            return Undecodable(f"EnvironmentFile={name[:60]} is not written by cloud-init")
        if isinstance(text, Undecodable):
            return text
        try:
            env.update(read_env_file(text))
        except FormatError as exc:
            return Undecodable(f"{name}: {exc}")
        for key in declared_secret_keys(text) & set(env):
            env[key] = SECRET_VALUE
    return env


_ZERO_TIME = re.compile(r"(?:0+(?:\.0*)?|\.0+)\s*[a-z]*")


def _unit_restart(unit: _Unit, path: str) -> Any:
    restart = unit_value(unit, "Service", "Restart") or "no"

    def limit(key: str, default: str) -> str:
        # [Unit] since systemd 230; the [Service] spelling is still read
        found = unit_value(unit, "Unit", key) or unit_value(unit, "Service", key)
        return found if found else default

    interval = limit("StartLimitIntervalSec", "") or limit("StartLimitInterval", "10s")
    unlimited = bool(_ZERO_TIME.fullmatch(interval.strip()))
    burst_text = limit("StartLimitBurst", "5")
    try:
        burst = int(burst_text)
    except ValueError:
        return Undecodable(f"{path}: StartLimitBurst={burst_text[:20]}")
    if restart == "no":
        return ("no",)
    if restart == "on-failure":
        # StartLimitBurst counts starts: the first one and then the retries
        return ("on-failure", "unlimited" if unlimited else max(burst - 1, 0))
    if restart == "always":
        if unlimited:
            return ("always",)
        return ("always", f"rate-limited to {burst} starts per {interval}")
    return (restart,)


def vm_facts(domain_props: Mapping[str, Any], user_data: Any, service: str) -> dict[str, Any]:
    """The fact sheet of a ``libvirt:index/domain:Domain`` of service ``service``, from
    the domain's props and its cloud-init disk's ``userData`` (None: no disk found)."""
    facts: dict[str, Any] = {}
    description = domain_description(domain_props)
    # unset: the provider's defaults, 512 MiB and 1 vCPU
    facts["memory"] = _limit(_plain(domain_props.get("memory")), int, 512)
    facts["vcpus"] = _limit(_plain(domain_props.get("vcpu")), int, 1)
    facts["ports"] = frozenset(_ports(description.get("ports")))

    doc = (
        Undecodable("the domain has no cloud-init disk")
        if user_data is None
        else _cloud_config(user_data)
    )
    file_facets = ("user", "workingDir", "command", "env", "restart", "volumes", "health.probe")
    if not isinstance(doc, dict):
        facts.update(dict.fromkeys(file_facets, doc))
        return facts

    facts["volumes"] = frozenset(
        _path(m[1])
        for m in doc.get("mounts") or []
        if isinstance(m, list) and len(m) > 1 and str(m[1]) not in ("none", "swap")
    )
    files = _written_files(doc)

    unit_path = f"/etc/systemd/system/{service}.service"
    unit = _unit(files, unit_path)
    if unit is None:
        unit = Undecodable(f"{unit_path} is not written by cloud-init")
    if isinstance(unit, Undecodable):
        facts.update(dict.fromkeys(("user", "workingDir", "command", "env", "restart"), unit))
    else:
        facts["user"] = _unit_user(unit)
        facts["workingDir"] = _unit_workdir(unit)
        facts["command"] = _unit_exec(unit, unit_path)
        facts["env"] = _unit_env(unit, files, unit_path)
        facts["restart"] = _unit_restart(unit, unit_path)

    health_path = f"/etc/systemd/system/twinstack-health-{service}.service"
    health = _unit(files, health_path)
    if health is None:
        facts["health.probe"] = None
    elif isinstance(health, Undecodable):
        facts["health.probe"] = health
    else:
        argv = _unit_exec(health, health_path)
        if isinstance(argv, Undecodable):
            facts["health.probe"] = argv
        elif len(argv) == 2 and argv[0] in ("/bin/bash", "/usr/bin/bash"):
            script = files.get(_path(argv[1]))
            if script is None:
                script = Undecodable(f"{argv[1]} is not written by cloud-init")
            elif isinstance(script, str) and script.endswith("\n"):
                script = script[:-1]
            facts["health.probe"] = script
        elif len(argv) == 3 and argv[0] in ("/bin/bash", "/usr/bin/bash") and argv[1] == "-c":
            facts["health.probe"] = argv[2]
        else:
            facts["health.probe"] = ("exec", *argv)
        facts["health.user"] = _unit_user(health)
        facts["health.workingDir"] = _unit_workdir(health)
        facts["health.env"] = _unit_env(health, files, health_path)
    return facts
