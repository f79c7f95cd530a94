"""Policy pack configuration, reconciled the way the engine does it.

The file format is ``pulumi preview --policy-pack-config FILE``'s::

    {
      "all": "advisory",                                 # every policy's level
      "docker-no-privileged": "mandatory",               # one policy's level
      "docker-resource-limits": {"enforcementLevel": "advisory", "maxCpus": 4}
    }

(JSON; YAML with the same shape is accepted too.) As in ``pkg/resource/analyzer/config.go``,
the effective config starts from each policy's default level and the schema ``default``
values, then the pack's ``initialConfig``, then the file (``all`` first, then per policy),
and is validated against each policy's JSON schema before ``Configure`` is called.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]
from pulumi.runtime.proto import analyzer_pb2

from twinstack.errors import TwinstackError

LEVELS = ("advisory", "mandatory", "remediate", "disabled")

_LEVEL_FROM_PROTO = {
    analyzer_pb2.ADVISORY: "advisory",
    analyzer_pb2.MANDATORY: "mandatory",
    analyzer_pb2.REMEDIATE: "remediate",
    analyzer_pb2.DISABLED: "disabled",
}
_LEVEL_TO_PROTO = {v: k for k, v in _LEVEL_FROM_PROTO.items()}


class PolicyConfigError(TwinstackError):
    """The policy config file is unreadable or does not match the pack's schema."""


@dataclass
class PolicyConfigEntry:
    enforcement_level: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)


def level_name(value: int) -> str:
    return str(_LEVEL_FROM_PROTO.get(value, "advisory"))  # type: ignore[call-overload, unused-ignore]


def _parse_entry(key: str, value: Any, source: str) -> PolicyConfigEntry:
    if isinstance(value, str):
        if value not in LEVELS:
            raise PolicyConfigError(
                f"{source}: parsing enforcement level for {key!r}: {value!r} is not a valid "
                f"enforcement level (allowed: {', '.join(LEVELS)})"
            )
        return PolicyConfigEntry(value, {})
    if isinstance(value, Mapping):
        props = dict(value)
        level = props.pop("enforcementLevel", None)
        if level is not None and (not isinstance(level, str) or level not in LEVELS):
            raise PolicyConfigError(
                f"{source}: parsing enforcement level for {key!r}: {level!r} is not a valid "
                f"enforcement level (allowed: {', '.join(LEVELS)})"
            )
        return PolicyConfigEntry(level, props)
    raise PolicyConfigError(
        f"{source}: parsing {key!r}: {value!r} is not a valid value; must be a string or object"
    )


def parse_config(
    doc: Mapping[str, Any] | None, source: str = "policy config"
) -> dict[str, PolicyConfigEntry]:
    """Parse a config document (already loaded) into entries, validating levels."""
    if not doc:
        return {}
    if not isinstance(doc, Mapping):
        raise PolicyConfigError(f"{source}: expected an object mapping policy names to config")
    result: dict[str, PolicyConfigEntry] = {}
    for key, value in doc.items():
        if key == "environments":
            continue  # ESC environments: not available offline
        entry = _parse_entry(str(key), value, source)
        if entry.enforcement_level is None and not entry.properties:
            continue
        result[str(key)] = entry
    return result


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a policy config file (JSON, or YAML of the same shape)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyConfigError(f"cannot read policy config {path}: {exc.strerror}") from exc
    if not text.strip():
        return {}
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PolicyConfigError(f"policy config {path} is not valid JSON/YAML: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise PolicyConfigError(f"policy config {path}: expected an object at the top level")
    return doc


# ---------------------------------------------------------------------- schema checks

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, _JSON_TYPES.get(expected, (object,)))


def validate_value(value: Any, schema: Mapping[str, Any], path: str) -> list[str]:
    """Check the JSON-schema subset policy packs use (type, enum, bounds, items, lengths)."""
    errors: list[str] = []
    expected = schema.get("type")
    if isinstance(expected, str) and not _type_ok(value, expected):
        return [f"{path}: Invalid type. Expected: {expected}, given: {type(value).__name__}"]
    if isinstance(expected, list) and not any(_type_ok(value, t) for t in expected):
        return [f"{path}: Invalid type. Expected one of {expected}"]
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"])
        errors.append(f"{path}: {path} must be one of the following: {allowed}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: Must be greater than or equal to {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: Must be less than or equal to {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{path}: Must be greater than {schema['exclusiveMinimum']}")
    if isinstance(value, str) and "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{path}: String length must be >= {schema['minLength']}")
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            errors.extend(validate_value(item, schema["items"], f"{path}.{i}"))
    return errors


def _validate_policy(
    name: str, schema: analyzer_pb2.PolicyConfigSchema, props: dict[str, Any]
) -> list[str]:
    properties = json_format.MessageToDict(schema.properties)
    errors: list[str] = []
    for req in schema.required:
        if req not in props:
            errors.append(f"{name}: {req} is required")
    for key, value in props.items():
        if key in properties:
            errors.extend(f"{name}: {e}" for e in validate_value(value, properties[key], key))
    return errors


# ---------------------------------------------------------------------- reconcile


def _initial_config(info: analyzer_pb2.AnalyzerInfo) -> dict[str, PolicyConfigEntry]:
    result: dict[str, PolicyConfigEntry] = {}
    for key, cfg in info.initialConfig.items():
        props = json_format.MessageToDict(cfg.properties)
        # Proto3 cannot tell "unset" from ADVISORY (0); the SDK only sends a level when given.
        level = level_name(cfg.enforcementLevel) if cfg.enforcementLevel else None
        result[key] = PolicyConfigEntry(level, props)
    return result


def _apply(
    result: dict[str, PolicyConfigEntry], given: Mapping[str, PolicyConfigEntry]
) -> dict[str, PolicyConfigEntry]:
    all_entry = given.get("all")
    if all_entry is not None and all_entry.enforcement_level:
        for entry in result.values():
            entry.enforcement_level = all_entry.enforcement_level
    for name, entry in given.items():
        current = result.setdefault(name, PolicyConfigEntry())
        if entry.enforcement_level:
            current.enforcement_level = entry.enforcement_level
        current.properties.update(entry.properties)
    return result


def reconcile(
    info: analyzer_pb2.AnalyzerInfo,
    config: Mapping[str, Any] | None,
    source: str = "policy config",
) -> dict[str, PolicyConfigEntry]:
    """Defaults + the pack's initial config + the given config, validated against schemas."""
    result: dict[str, PolicyConfigEntry] = {}
    for policy in info.policies:
        defaults: dict[str, Any] = {}
        for key, prop in json_format.MessageToDict(policy.configSchema.properties).items():
            if isinstance(prop, dict) and "default" in prop:
                defaults[key] = prop["default"]
        result[policy.name] = PolicyConfigEntry(level_name(policy.enforcementLevel), defaults)
    result = _apply(result, _initial_config(info))
    parsed = parse_config(config, source)
    # Keys for policies of other packs are ignored here; the runner reports keys that no
    # pack knows (typos) once all packs have been asked.
    known = {p.name for p in info.policies} | {"all"}
    parsed = {k: v for k, v in parsed.items() if k in known}
    result = _apply(result, parsed)
    errors: list[str] = []
    for policy in info.policies:
        errors.extend(
            _validate_policy(policy.name, policy.configSchema, result[policy.name].properties)
        )
    if errors:
        raise PolicyConfigError(
            f"{source}: invalid configuration for pack {info.name!r}:\n  " + "\n  ".join(errors)
        )
    return result


def to_proto(entries: Mapping[str, PolicyConfigEntry]) -> dict[str, analyzer_pb2.PolicyConfig]:
    out: dict[str, analyzer_pb2.PolicyConfig] = {}
    for name, entry in entries.items():
        cfg = analyzer_pb2.PolicyConfig(
            enforcementLevel=_LEVEL_TO_PROTO[entry.enforcement_level or "advisory"]
        )
        if entry.properties:
            cfg.properties.update(entry.properties)
        out[name] = cfg
    return out
