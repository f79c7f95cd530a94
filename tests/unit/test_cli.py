"""The `twinstack` command line: schema, plan JSON contract, runtime override."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import REPO, VENV_BIN

EXAMPLE_STACKS = sorted((REPO / "stacks").glob("Pulumi.*.yaml"))


def twinstack(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "twinstack"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(cwd)},
    )


# ----------------------------------------------------------------------------- schema

ANNOTATIONS = {"title", "description", "default", "examples", "format", "$schema", "deprecated"}
KEYWORDS = {
    "$ref", "$defs", "type", "enum", "const", "properties", "required",
    "additionalProperties", "patternProperties", "propertyNames", "items", "prefixItems",
    "minItems", "maxItems", "uniqueItems", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "pattern", "minLength", "maxLength", "anyOf", "oneOf",
    "allOf", "not", "minProperties", "maxProperties",
}  # fmt: skip


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/"), ref
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def _walk_schema(root: dict[str, Any], node: Any) -> None:
    """Every keyword is a JSON Schema keyword or annotation; every $ref resolves."""
    if isinstance(node, list):
        for item in node:
            _walk_schema(root, item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        assert key in KEYWORDS | ANNOTATIONS, f"unknown schema keyword {key!r}"
        if key == "$ref":
            _resolve(root, value)
        elif key in ("properties", "patternProperties", "$defs"):
            for sub in value.values():
                _walk_schema(root, sub)
        elif key not in ANNOTATIONS and key not in ("enum", "const", "required"):
            _walk_schema(root, value)


_TYPES = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}  # fmt: skip


def _errors(root: dict[str, Any], schema: dict[str, Any], value: Any, at: str) -> list[str]:
    """A small JSON Schema validator for the keywords pydantic emits (used when the
    `jsonschema` package is not installed; it is not a pinned dependency)."""
    if "$ref" in schema:
        return _errors(root, _resolve(root, schema["$ref"]), value, at)
    errs: list[str] = []
    if "anyOf" in schema and all(_errors(root, s, value, at) for s in schema["anyOf"]):
        errs.append(f"{at}: matches none of anyOf")
    if "oneOf" in schema and sum(not _errors(root, s, value, at) for s in schema["oneOf"]) != 1:
        errs.append(f"{at}: must match exactly one of oneOf")
    for s in schema.get("allOf", []):
        errs += _errors(root, s, value, at)
    typ = schema.get("type")
    if typ is not None:
        types = typ if isinstance(typ, list) else [typ]
        ok = False
        for t in types:
            if t == "integer":
                ok |= isinstance(value, int) and not isinstance(value, bool)
            elif t == "number":
                ok |= isinstance(value, int | float) and not isinstance(value, bool)
            else:
                ok |= isinstance(value, _TYPES[t]) and not (
                    t != "boolean" and isinstance(value, bool)
                )
        if not ok:
            return [f"{at}: {value!r} is not of type {typ}"]
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{at}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errs.append(f"{at}: {value!r} != {schema['const']!r}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(f"{at}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            errs.append(f"{at}: too short")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{at}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{at}: {value} > {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errs.append(f"{at}: {value} <= {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            errs.append(f"{at}: {value} >= {schema['exclusiveMaximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errs.append(f"{at}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errs += _errors(root, schema["items"], item, f"{at}[{i}]")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errs.append(f"{at}: missing {key!r}")
        props = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        for key, item in value.items():
            if "propertyNames" in schema:
                errs += _errors(root, {"type": "string", **schema["propertyNames"]}, key, at)
            matched = False
            if key in props:
                matched = True
                errs += _errors(root, props[key], item, f"{at}.{key}")
            for pat, sub in patterns.items():
                if re.search(pat, key):
                    matched = True
                    errs += _errors(root, sub, item, f"{at}.{key}")
            if not matched:
                extra = schema.get("additionalProperties", True)
                if extra is False:
                    errs.append(f"{at}: unknown key {key!r}")
                elif isinstance(extra, dict):
                    errs += _errors(root, extra, item, f"{at}.{key}")
    return errs


def validate(schema: dict[str, Any], doc: Any) -> list[str]:
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        return _errors(schema, schema, doc, "$")
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    res = twinstack("schema")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert isinstance(doc, dict)
    return doc


def test_schema_is_a_json_schema(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    _walk_schema(schema, schema)
    config = schema["properties"]["config"]["properties"]
    for key in ("runtime", "hosts", "services", "networks", "storage", "vmImage"):
        assert f"twinstack:{key}" in config
    assert config["twinstack:runtime"]["enum"] == ["vm", "container", "both"]
    service = _resolve(schema, config["twinstack:services"]["items"]["$ref"])
    assert service["additionalProperties"] is False
    assert "name" in service["required"]
    assert service["properties"]["name"]["description"]  # docstrings become descriptions


def test_schema_written_to_file(tmp_path: Path, schema: dict[str, Any]) -> None:
    out = tmp_path / "schema.json"
    res = twinstack("schema", "--output", str(out))
    assert res.returncode == 0
    assert json.loads(out.read_text()) == schema


def test_schema_of_a_service_file(schema: dict[str, Any]) -> None:
    res = twinstack("schema", "--service-file")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["required"] == ["services"]
    _walk_schema(doc, doc)
    # the same service model as in a stack file
    ref = doc["properties"]["services"]["items"]["$ref"]
    stack_ref = schema["properties"]["config"]["properties"]["twinstack:services"]["items"]["$ref"]
    assert _resolve(doc, ref) == _resolve(schema, stack_ref)


@pytest.mark.parametrize("path", EXAMPLE_STACKS, ids=[p.name for p in EXAMPLE_STACKS])
def test_schema_accepts_every_example_stack(schema: dict[str, Any], path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert validate(schema, doc) == []


def test_schema_rejects_what_the_spec_rejects(schema: dict[str, Any]) -> None:
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
    bad_key = json.loads(json.dumps(doc))
    bad_key["config"]["twinstack:services"][0]["resources"]["memMib"] = 1
    assert validate(schema, bad_key)
    bad_runtime = json.loads(json.dumps(doc))
    bad_runtime["config"]["twinstack:runtime"] = "lxc"
    assert validate(schema, bad_runtime)
    bad_memory = json.loads(json.dumps(doc))
    bad_memory["config"]["twinstack:services"][0]["resources"]["memoryMib"] = 0
    assert validate(schema, bad_memory)
    assert validate(schema, {"confg": {}})


def test_example_stacks_exist() -> None:
    assert {"Pulumi.dev.yaml", "Pulumi.dev-vm.yaml", "Pulumi.compare.yaml"} <= {
        p.name for p in EXAMPLE_STACKS
    }
    res = twinstack("validate", *map(str, EXAMPLE_STACKS))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count(": ok (") == len(EXAMPLE_STACKS)


# ------------------------------------------------------------------------- plan JSON


def documented_plan() -> dict[str, Any]:
    """The example plan document in docs/plan-format.md."""
    text = (REPO / "docs" / "plan-format.md").read_text()
    block = re.search(r"```json\n(.*?)\n```", text, re.S)
    assert block is not None
    doc = json.loads(block.group(1))
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def dev_plan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    res = twinstack("plan", "--stack", "dev", "--format", "json")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    doc = json.loads(res.stdout)
    assert isinstance(doc, dict)
    return doc


def test_plan_json_matches_plan_format(dev_plan: dict[str, Any]) -> None:
    want = documented_plan()
    assert set(dev_plan) == set(want)
    assert dev_plan["version"] == want["version"] == 1
    assert dev_plan["project"] == "twinstack"
    assert dev_plan["stack"] == "dev"
    assert dev_plan["stackFile"] == "stacks/Pulumi.dev.yaml"
    assert dev_plan["runtime"] == "container"
    assert dev_plan["preview"] is False
    record_keys = set(want["resources"][0])
    urns = {r["urn"] for r in dev_plan["resources"]}
    assert len(urns) == len(dev_plan["resources"])
    for r in dev_plan["resources"]:
        assert set(r) == record_keys, r["urn"]
        assert r["urn"].startswith("urn:pulumi:dev::twinstack::")
        assert r["urn"].endswith(f"::{r['name']}")
        assert r["parent"] is None or r["parent"] in urns
        assert isinstance(r["inputs"], dict)
        assert all(d in urns for d in r["dependencies"])
        if r["custom"] and not r["type"].startswith("pulumi:providers:"):
            assert r["provider"] is not None and r["provider"].rsplit("::", 1)[0] in urns
    assert not any(r["type"] == "pulumi:pulumi:Stack" for r in dev_plan["resources"])
    # the documented container record, field by field
    example = want["resources"][0]
    c = next(r for r in dev_plan["resources"] if r["name"] == example["name"])
    assert c["type"] == example["type"]
    assert c["parent"] == example["parent"]
    assert c["deleteBeforeReplace"] is example["deleteBeforeReplace"]
    assert c["inputs"]["name"] == example["inputs"]["name"]
    assert "services" in dev_plan["outputs"]


def _qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def test_plan_urns_are_the_engine_urns(dev_plan: dict[str, Any]) -> None:
    """URNs must be what `pulumi up` / `pulumi stack export` produce (plan-format.md):
    the qualified type is the *whole* chain of parent types, and the root stack's type
    is not part of it. Policy, diff and the integration harness join on these URNs."""
    want = documented_plan()["resources"][0]
    c = next(r for r in dev_plan["resources"] if r["name"] == want["name"])
    assert c["urn"] == want["urn"]
    assert c["provider"].rsplit("::", 1)[0] == want["provider"].rsplit("::", 1)[0]
    urns = {r["urn"]: r for r in dev_plan["resources"]}
    for r in dev_plan["resources"]:
        assert "pulumi:pulumi:Stack$" not in r["urn"], r["urn"]
        if r["parent"] is None:
            assert _qualified_type(r["urn"]) == r["type"]
        else:
            parent = urns[r["parent"]]
            assert _qualified_type(r["urn"]) == f"{_qualified_type(parent['urn'])}${r['type']}"


def test_plan_inputs_are_wire_format(dev_plan: dict[str, Any]) -> None:
    c = next(r for r in dev_plan["resources"] if r["type"] == "docker:index/container:Container")
    for key in ("logOpts", "networksAdvanced", "memorySwap", "maxRetryCount"):
        assert key in c["inputs"], key
    assert not any("_" in k for k in c["inputs"])
    assert isinstance(c["inputs"]["cpus"], str)
    assert isinstance(c["inputs"]["memory"], int)


def test_plan_runtime_override_both(tmp_path: Path) -> None:
    res = twinstack("plan", "--stack", "dev", "--runtime", "both", "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["runtime"] == "both"
    types = {r["type"] for r in doc["resources"]}
    assert {"twinstack:service:VmRealization", "twinstack:service:ContainerRealization"} <= types
    assert {"libvirt:index/domain:Domain", "docker:index/container:Container"} <= types
    assert {svc["runtime"] for svc in doc["outputs"]["services"].values()} == {"both"}


def test_plan_text_tree() -> None:
    res = twinstack("plan", "--stack", "dev-vm")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "pulumi:pulumi:Stack" in out and "twinstack-dev-vm" in out
    assert "twinstack:service:VmRealization" in out
    assert "libvirt:index/domain:Domain" in out
    assert "docker:" not in out


def test_plan_runtime_bogus() -> None:
    res = twinstack("plan", "--stack", "dev", "--runtime", "bogus")
    assert res.returncode == 2
    assert "Traceback" not in res.stdout + res.stderr
    assert "'bogus'" in res.stderr
    for allowed in ("vm", "container", "both"):
        assert allowed in res.stderr
    assert res.stdout == ""


def test_plan_format_bogus() -> None:
    res = twinstack("plan", "--stack", "dev", "--format", "yaml")
    assert res.returncode == 2
    assert "text, json" in res.stderr


def test_plan_unknown_stack() -> None:
    res = twinstack("plan", "--stack", "no-such-stack")
    assert res.returncode == 2
    assert "Traceback" not in res.stdout + res.stderr
    assert "Pulumi.no-such-stack.yaml" in res.stderr


def test_plan_save_json_is_the_json_plan(tmp_path: Path) -> None:
    """One plan, two outputs: the text tree on stdout and the same plan's JSON on disk."""
    saved, written = tmp_path / "saved.json", tmp_path / "written.json"
    res = twinstack("plan", "--stack", "dev", "--save-json", str(saved))
    assert res.returncode == 0, res.stderr
    assert "dev-web-0" in res.stdout and not res.stdout.lstrip().startswith("{")
    res = twinstack("plan", "--stack", "dev", "--format", "json", "-o", str(written))
    assert res.returncode == 0, res.stderr
    assert saved.read_bytes() == written.read_bytes()


def test_run_plan_in_one_process_writes_what_the_commands_write(tmp_path: Path) -> None:
    """`./run plan` (twinstack.runplan) gives the same files as the commands it replaces."""
    res = subprocess.run(
        [sys.executable, "-m", "twinstack.runplan", str(tmp_path)], cwd=REPO,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "=== policy: stack dev (declared runtime container) ===" in res.stdout
    for stack in ("dev", "dev-vm", "compare"):
        for runtime in ("vm", "container"):
            cli = twinstack("plan", "--stack", stack, "--runtime", runtime, "-f", "json")
            assert (tmp_path / f"plan-{stack}-{runtime}.json").read_text() == cli.stdout
        assert (tmp_path / f"diff-{stack}.svg").stat().st_size > 0
    md = twinstack("diff", "--stack", "dev", "-f", "markdown")
    assert (tmp_path / "diff-dev.md").read_text() == md.stdout
