"""Stack-wide guardrails: limits within bounds, VM/container parity, safe replacement.

These are stack policies (``AnalyzeStack``): they see every resource at once, with
``.resource_type``, ``.name``, ``.urn``, ``.props``, ``.opts`` (protect,
delete_before_replace, ...), ``.parent`` and ``.dependencies``. Parity is computed from the
recorded inputs of both realizations, not from the spec, so it catches a realization that
drifted from its twin.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import yaml
from pulumi_policy import PolicyConfigSchema, StackValidationPolicy

from twinstack_rules.common import (
    DOCKER_CONTAINER,
    DOCKER_NETWORK,
    DOCKER_VOLUME,
    LIBVIRT_CLOUD_INIT,
    LIBVIRT_DOMAIN,
    LIBVIRT_NETWORK,
    LIBVIRT_POOL,
    LIBVIRT_VOLUME,
    Report,
    config,
    docker_labels,
    num,
)

LIMIT_DEFAULTS: dict[str, float] = {
    "minMemoryMib": 64,
    "maxMemoryMib": 65536,
    "minCpus": 0.1,
    "maxCpus": 16,
}


def _domain_facts(props: Mapping[str, Any]) -> dict[str, Any]:
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

_UNREADABLE = object()


def _env_keys(entries: Any) -> Any:
    if isinstance(entries, str):
        return _UNREADABLE  # a redacted secret ("[secret]")
    keys = set()
    for entry in entries:
        key, sep, _ = str(entry).partition("=")
        if sep:
            keys.add(key)
    return frozenset(keys)


def _user_data_doc(props: Mapping[str, Any]) -> dict[str, Any] | None:
    text = props.get("userData")
    if not isinstance(text, str) or not text.lstrip().startswith("#cloud-config"):
        return None  # redacted secret, or not a cloud-config document
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) else None


_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=", re.MULTILINE)


def _container_facets(res: Any) -> dict[str, Any]:
    props = res.props
    facets: dict[str, Any] = {}
    facets["memory"] = num(props.get("memory"))
    cpus = num(props.get("cpus"))
    facets["vcpus"] = math.ceil(cpus) if cpus else None
    facets["env"] = _env_keys(props.get("envs") or [])
    facets["volumes"] = frozenset(
        str(m.get("target")) for m in (props.get("mounts") or []) if m.get("type") == "volume"
    )
    check = props.get("healthcheck")
    tests = [str(t) for t in (check.get("tests") or [])] if check else []
    facets["health"] = tests[-1].strip() if tests and tests[0].upper() != "NONE" else None
    labels = docker_labels(props)
    if "twinstack.ports" in labels:
        facets["ports"] = frozenset(p for p in labels["twinstack.ports"].split(",") if p)
    return facets


def _vm_facets(domain: Any, user_data: dict[str, Any] | None, service: str) -> dict[str, Any]:
    props = domain.props
    facts = _domain_facts(props)
    facets: dict[str, Any] = {"memory": num(props.get("memory")), "vcpus": num(props.get("vcpu"))}
    if facets["vcpus"] is not None:
        facets["vcpus"] = int(facets["vcpus"])
    if user_data is None:
        for key in ("env", "volumes", "health"):
            facets[key] = _UNREADABLE
    else:
        files = {
            str(f.get("path")): str(f.get("content") or "")
            for f in user_data.get("write_files") or []
            if isinstance(f, dict)
        }
        env_file = files.get(f"/etc/twinstack/{service}.env")
        facets["env"] = (
            frozenset(_ENV_LINE.findall(env_file)) if env_file is not None else frozenset()
        )
        facets["volumes"] = frozenset(
            str(m[1]) for m in user_data.get("mounts") or [] if isinstance(m, list) and len(m) > 1
        )
        health = next((c for p, c in files.items() if p.endswith(f"/health-{service}")), None)
        facets["health"] = health.strip() if health is not None else None
    if isinstance(facts.get("ports"), list):
        facets["ports"] = frozenset(str(p) for p in facts["ports"])
    return facets


_FACET_LABELS = {
    "memory": "memory (MiB)",
    "vcpus": "vCPUs (container cpus rounded up)",
    "env": "environment keys",
    "volumes": "volume mount paths",
    "health": "health check",
    "ports": "ports",
}


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, frozenset):
        return "[" + ", ".join(sorted(value)) + "]" if value else "[]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def runtime_parity(args: Any, report: Report) -> None:
    """A service deployed in both runtimes must look the same in both."""
    ignore = set(config(args, "ignore", []))
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
            facts = _domain_facts(res.props)
            if facts.get("service") is not None and facts.get("replica") is not None:
                domains[(str(facts["service"]), str(facts["replica"]))] = res
        elif res.resource_type == LIBVIRT_CLOUD_INIT:
            cloud_init[res.urn] = res
    for key in sorted(set(containers) & set(domains)):
        service, replica = key
        container, domain = containers[key], domains[key]
        seed = None
        for dep in domain.dependencies:
            if dep.resource_type == LIBVIRT_CLOUD_INIT:
                seed = dep
        if seed is None:  # fall back to naming: <realization>-<i>-cloudinit
            seed = next(
                (c for c in cloud_init.values() if c.name == f"{domain.name}-cloudinit"), None
            )
        user_data = _user_data_doc(seed.props) if seed is not None else None
        left, right = _container_facets(container), _vm_facets(domain, user_data, service)
        for facet, label in _FACET_LABELS.items():
            if facet in ignore or facet not in left or facet not in right:
                continue
            a, b = left[facet], right[facet]
            if a is _UNREADABLE or b is _UNREADABLE:
                continue  # redacted secret or unknown: nothing to compare
            if a != b:
                report(
                    f"Service '{service}' replica {replica} differs between runtimes in "
                    f"{label}: container '{container.name}' has {_show(a)}, VM "
                    f"'{domain.name}' has {_show(b)}. Derive both realizations from the same "
                    "spec fields (components.renderers), or list the facet in `ignore`.",
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
            "A service deployed as both VM and container has the same ports, environment "
            "keys, volumes, limits and health check in both."
        ),
        validate=runtime_parity,
        config_schema=PolicyConfigSchema(
            properties={
                "ignore": {
                    "type": "array",
                    "items": {"type": "string", "enum": sorted(_FACET_LABELS)},
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
