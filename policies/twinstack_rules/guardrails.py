"""Stack-wide guardrails: limits within bounds, VM/container parity, safe replacement.

These are stack policies (``AnalyzeStack``): they see every resource at once, with
``.resource_type``, ``.name``, ``.urn``, ``.props``, ``.opts`` (protect,
delete_before_replace, ...), ``.parent`` and ``.dependencies``. Parity is computed from the
recorded inputs of both realizations, not from the spec, so it catches a realization that
drifted from its twin: :mod:`twinstack_rules.facts` turns each side's inputs into a fact
sheet with the same fact names, and ``runtime-parity`` compares the sheets.
"""

from __future__ import annotations

import json
from typing import Any

from pulumi_policy import PolicyConfigSchema, StackValidationPolicy

from twinstack_rules import facts, formats
from twinstack_rules.common import (
    DOCKER_CONTAINER,
    DOCKER_NETWORK,
    DOCKER_VOLUME,
    LIBVIRT_CLOUD_INIT,
    LIBVIRT_DOMAIN,
    LIBVIRT_NETWORK,
    LIBVIRT_POOL,
    LIBVIRT_VOLUME,
    SECRET_PLACEHOLDER_RE,
    Report,
    YAMLError,
    config,
    credential_looking_value,
    docker_labels,
    load_yaml_shared,
    num,
    secret_looking_key,
)

LIMIT_DEFAULTS: dict[str, float] = {
    "minMemoryMib": 64,
    "maxMemoryMib": 65536,
    "minCpus": 0.1,
    "maxCpus": 16,
}


# --------------------------------------------------------------------------- limits


def limits_within_bounds(args: Any, report: Report) -> None:
    """Every instance has CPU and memory limits, inside the configured bounds."""
    bounds = {k: float(config(args, k, v)) for k, v in LIMIT_DEFAULTS.items()}
    for res in args.resources:
        if res.resource_type == DOCKER_CONTAINER:
            kind, memory, cpus = "Container", num(res.props.get("memory")), None
            cpus = num(res.props.get("cpus"))
            if cpus is None:
                quota, period = num(res.props.get("cpuQuota")), num(res.props.get("cpuPeriod"))
                if quota and quota > 0:
                    cpus = quota / (period or 100000)
            cpu_prop = "cpus"
        elif res.resource_type == LIBVIRT_DOMAIN:
            kind, memory = "Domain", num(res.props.get("memory"))
            # the provider's defaults when absent: 512 MiB, 1 vCPU
            memory = 512 if memory is None else memory
            cpus = num(res.props.get("vcpu"))
            cpus = 1 if cpus is None else cpus
            cpu_prop = "vcpu"
        else:
            continue
        problems: list[str] = []
        if memory is None or memory <= 0:
            problems.append("no memory limit")
        elif not bounds["minMemoryMib"] <= memory <= bounds["maxMemoryMib"]:
            problems.append(
                f"memory {memory:g} MiB outside [{bounds['minMemoryMib']:g}, "
                f"{bounds['maxMemoryMib']:g}] MiB"
            )
        if cpus is None or cpus <= 0:
            problems.append("no CPU limit")
        elif not bounds["minCpus"] <= cpus <= bounds["maxCpus"]:
            problems.append(
                f"{cpu_prop} {cpus:g} outside [{bounds['minCpus']:g}, {bounds['maxCpus']:g}]"
            )
        if problems:
            report(
                f"{kind} '{res.name}': {'; '.join(problems)}. Set the service's "
                "resources (vcpus, memoryMib) within the bounds, or change the bounds in "
                "this policy's config (minMemoryMib, maxMemoryMib, minCpus, maxCpus).",
                res.urn,
            )


# --------------------------------------------------------------------------- parity


def _text(facet: str, value: Any) -> str:
    """A fact value for a message, in full."""
    if value is None:
        return "none"
    if isinstance(value, facts.Undecodable):
        return str(value)
    if not facts.comparable(value):
        return str(value.text)
    if isinstance(value, frozenset):
        return "[" + ", ".join(sorted(value)) + "]"
    if facet == "restart" and isinstance(value, tuple) and value:
        extra = ""
        if len(value) > 1:
            extra = f", {value[1]} retries" if value[0] == "on-failure" else f", {value[1]}"
        return f"{value[0]}{extra}"
    if isinstance(value, tuple) and value[:1] == ("exec",):
        return "exec " + json.dumps(list(value[1:]))
    if isinstance(value, tuple):
        return json.dumps(list(value))
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _clip(text: str, start: int, limit: int) -> str:
    head = "..." if start > 0 else ""
    tail = "..." if len(text) > start + limit else ""
    return head + text[start : start + limit] + tail


def _show_pair(facet: str, a: Any, b: Any, limit: int = 60) -> tuple[str, str]:
    """Both values, each cut to ``limit`` characters around where they first differ."""
    ta, tb = _text(facet, a), _text(facet, b)
    if isinstance(a, facts.Undecodable) or isinstance(b, facts.Undecodable):
        return _clip(ta, 0, 160), _clip(tb, 0, 160)
    if len(ta) <= limit and len(tb) <= limit:
        return ta, tb
    same = 0
    while same < min(len(ta), len(tb)) and ta[same] == tb[same]:
        same += 1
    start = max(0, same - limit // 3)
    return _clip(ta, start, limit), _clip(tb, start, limit)


def _show_env(a: Any, b: Any, hidden: bool) -> tuple[str, str]:
    """The variables that differ (all of one side's when the other has no environment to
    compare); values hidden when they may be secrets."""
    dicts = [env for env in (a, b) if isinstance(env, dict)]
    if len(dicts) == 2:
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    else:
        keys = sorted({k for env in dicts for k in env})

    def one(env: dict[str, str], key: str) -> str:
        if key not in env:
            return f"{key} unset"
        value = env[key]
        secret = (
            hidden
            or secret_looking_key(key)
            or bool(SECRET_PLACEHOLDER_RE.search(value))
            or credential_looking_value(value)
        )
        return f"{key}=<hidden>" if secret else f"{key}={_clip(json.dumps(value), 0, 40)}"

    def side(env: Any) -> str:
        if not isinstance(env, dict):
            return _clip(_text("env", env), 0, 160)
        if not keys:
            return "no variables"
        rest = len(keys) - 5
        more = f", and {rest} more" if rest > 0 else ""
        return "{" + ", ".join(one(env, k) for k in keys[:5]) + more + "}"

    return side(a), side(b)


def _ignored(args: Any) -> set[str]:
    ignore: set[str] = set()
    for name in config(args, "ignore", []):
        ignore.update(facts.GROUPS.get(name, (name,)))
    return ignore


def _differs(a: Any, b: Any) -> bool:
    if not facts.comparable(a) or not facts.comparable(b):
        return False  # a secret, an unknown, or the image's own setting
    return isinstance(a, facts.Undecodable) or isinstance(b, facts.Undecodable) or a != b


def _declared_secrets(user_data: Any) -> frozenset[str]:
    """Variables a twinstack user-data's env files declare as filled from Pulumi secrets."""
    if not isinstance(user_data, str) or not user_data.startswith("#cloud-config"):
        return frozenset()
    try:
        doc = load_yaml_shared(user_data)
    except YAMLError:
        return frozenset()
    keys: set[str] = set()
    for item in (doc or {}).get("write_files") or [] if isinstance(doc, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("content"), str):
            keys |= formats.declared_secret_keys(item["content"])
    return frozenset(keys)


def _seed_of(domain: Any, cloud_init: dict[str, Any]) -> Any:
    for dep in domain.dependencies:
        if dep.resource_type == LIBVIRT_CLOUD_INIT:
            return dep
    # fall back to naming: <realization>-<i>-cloudinit
    return next((c for c in cloud_init.values() if c.name == f"{domain.name}-cloudinit"), None)


def runtime_parity(args: Any, report: Report) -> None:
    """A service deployed in both runtimes must behave the same in both."""
    ignore = _ignored(args)
    containers: dict[tuple[str, str], Any] = {}
    domains: dict[tuple[str, str], Any] = {}
    cloud_init: dict[str, Any] = {}
    for res in args.resources:
        if res.resource_type == DOCKER_CONTAINER:
            labels = docker_labels(res.props)
            service, replica = labels.get("twinstack.service"), labels.get("twinstack.replica")
            if service and replica is not None:
                containers[(service, str(replica))] = res
        elif res.resource_type == LIBVIRT_DOMAIN:
            described = facts.domain_description(res.props)
            if described.get("service") is not None and described.get("replica") is not None:
                domains[(str(described["service"]), str(described["replica"]))] = res
        elif res.resource_type == LIBVIRT_CLOUD_INIT:
            cloud_init[res.urn] = res
    for key in sorted(set(containers) & set(domains)):
        service, replica = key
        container, domain = containers[key], domains[key]
        seed = _seed_of(domain, cloud_init)
        left = facts.container_facts(container.props)
        right = facts.vm_facts(
            domain.props, seed.props.get("userData") if seed is not None else None, service
        )
        # values are never shown when either side says some come from Pulumi secrets
        hidden = bool(docker_labels(container.props).get("twinstack.secret-env")) or bool(
            _declared_secrets(seed.props.get("userData") if seed is not None else None)
        )
        diffs: dict[str, tuple[Any, Any]] = {}
        for facet in facts.FACETS:
            if facet.name in ignore or facet.name not in left or facet.name not in right:
                continue  # health.* facets exist only where there is a probe
            if facet.depends_on is not None and not all(
                side.get(facet.depends_on) is not None
                and facts.comparable(side.get(facet.depends_on))
                for side in (left, right)
            ):
                continue
            if _differs(left[facet.name], right[facet.name]):
                diffs[facet.name] = (left[facet.name], right[facet.name])
        for facet in facts.FACETS:
            if facet.name not in diffs:
                continue
            if facet.same_as is not None and diffs.get(facet.same_as) == diffs[facet.name]:
                continue  # the same difference, reported once for the service itself
            also = [
                f.name
                for f in facts.FACETS
                if f.same_as == facet.name and diffs.get(f.name) == diffs[facet.name]
            ]
            probe = f" (so does the health probe's: {', '.join(also)})" if also else ""
            a, b = diffs[facet.name]
            if facet.name in ("env", "health.env"):
                shown_a, shown_b = _show_env(a, b, hidden)
            else:
                shown_a, shown_b = _show_pair(facet.name, a, b)
            report(
                f"Service '{service}' replica {replica} differs between runtimes in "
                f"{facet.label} [{facet.name}]{probe}: container '{container.name}' has "
                f"{shown_a}, VM '{domain.name}' has {shown_b}. {facet.fix}; or list "
                f"'{facet.name}' in this policy's `ignore` config.",
                container.urn,
            )


# --------------------------------------------------------------------------- replacement

FIXED_NAME_TYPES = [
    DOCKER_CONTAINER,
    DOCKER_NETWORK,
    DOCKER_VOLUME,
    LIBVIRT_CLOUD_INIT,
    LIBVIRT_DOMAIN,
    LIBVIRT_NETWORK,
    LIBVIRT_POOL,
    LIBVIRT_VOLUME,
]
"""Types whose ``name`` is the provider-side identity (a second one with the same name
fails to create, or — Docker volumes — silently aliases the old one)."""


def delete_before_replace(args: Any, report: Report) -> None:
    """Fixed host ports or names cannot exist twice: replace by deleting first."""
    types = set(config(args, "types", FIXED_NAME_TYPES))
    for res in args.resources:
        if res.resource_type not in types:
            continue
        if res.opts.delete_before_replace or res.opts.protect:
            continue  # protect already blocks the replacement
        reasons: list[str] = []
        name = res.props.get("name")
        if isinstance(name, str) and name:
            reasons.append(f"fixed name {name!r}")
        if res.resource_type == DOCKER_CONTAINER:
            host_ports = []
            for port in res.props.get("ports") or []:
                external = num(port.get("external"))
                if external is not None:
                    host_ports.append(str(int(external)))
            if host_ports:
                reasons.append(f"fixed host port(s) {', '.join(host_ports)}")
        if reasons:
            report(
                f"'{res.name}' has {' and '.join(reasons)} but is replaced create-before-"
                "delete, so the replacement would collide with the old instance. Create it "
                "with ResourceOptions(delete_before_replace=True).",
                res.urn,
            )


# --------------------------------------------------------------------------- policies

POLICIES: list[StackValidationPolicy] = [
    StackValidationPolicy(
        name="instance-limits-within-bounds",
        description="Every container and VM has CPU and memory limits within bounds.",
        validate=limits_within_bounds,
        config_schema=PolicyConfigSchema(
            properties={
                "minMemoryMib": {"type": "number", "minimum": 0, "default": 64},
                "maxMemoryMib": {"type": "number", "minimum": 1, "default": 65536},
                "minCpus": {"type": "number", "minimum": 0, "default": 0.1},
                "maxCpus": {"type": "number", "minimum": 0, "default": 16},
            }
        ),
    ),
    StackValidationPolicy(
        name="runtime-parity",
        description=(
            "A service deployed as both VM and container runs the same way in both: user, "
            "working directory, command, environment, ports, restart policy, limits, "
            "volumes and health probe."
        ),
        validate=runtime_parity,
        config_schema=PolicyConfigSchema(
            properties={
                "ignore": {
                    "type": "array",
                    "description": (
                        "Facets not to compare (twinstack_rules.facts.FACETS); "
                        "`health` stands for every health.* facet."
                    ),
                    "items": {
                        "type": "string",
                        "enum": sorted([*facts.FACET_NAMES, *facts.GROUPS]),
                    },
                    "default": [],
                }
            }
        ),
    ),
    StackValidationPolicy(
        name="delete-before-replace",
        description="Resources with fixed host ports or names are replaced delete-first.",
        validate=delete_before_replace,
        config_schema=PolicyConfigSchema(
            properties={
                "types": {
                    "type": "array",
                    "items": {"type": "string"},
                    "default": FIXED_NAME_TYPES,
                }
            }
        ),
    ),
]
