"""Shared helpers for the unit tests: small stack files in tmp dirs, planned offline."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from twinstack.plan import SIG_KEY, plan_stack

REPO = Path(__file__).resolve().parents[2]
# the policy packs' format readers (policies/ is the packs' own import root)
if str(REPO / "policies") not in sys.path:
    sys.path.insert(0, str(REPO / "policies"))
from twinstack_rules import formats  # noqa: E402

VENV_BIN = REPO / ".venv" / "bin"

BASE: dict[str, Any] = {
    "twinstack:runtime": "both",
    "twinstack:networks": [{"name": "apps", "cidr": "10.10.0.0/24"}],
    "twinstack:storage": [{"name": "data", "path": "/var/lib/ts/data", "capacityGib": 500}],
    "twinstack:vmImage": {"source": "/var/lib/ts/images/debian.qcow2"},
    "twinstack:services": [
        {
            "name": "web",
            "build": {"command": ["python3", "-m", "http.server", "8080"]},
            "ports": [{"name": "http", "port": 8080, "hostPort": 18080}],
            "replicas": 2,
        },
        {
            "name": "api",
            "build": {"command": ["/usr/local/bin/api"]},
            "resources": {"memoryMib": 256},
            "volumes": [{"name": "db", "mountPath": "/var/lib/api"}],
        },
    ],
}
"""A small valid stack config (both runtimes) that error cases mutate."""


def base_config() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def make_project(root: Path) -> Path:
    """A throwaway project dir: the real Pulumi.yaml and __main__.py, an empty stacks/."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(REPO / "__main__.py", root / "__main__.py")
    (root / "stacks").mkdir(exist_ok=True)
    return root


def write_stack(root: Path, stack: str, config: dict[str, Any]) -> Path:
    path = root / "stacks" / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False), encoding="utf-8")
    return path


def plan(
    root: Path, stack: str, config: dict[str, Any], runtime: str | None = None
) -> dict[str, Any]:
    """Write ``config`` as stack ``stack`` under ``root`` and plan it offline."""
    write_stack(root, stack, config)
    return plan_stack(stack, runtime, root=root)


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and SIG_KEY in value


def reveal(value: Any) -> Any:
    """The value inside a secret envelope (recursively); plain values unchanged."""
    if is_secret(value):
        return reveal(value.get("value"))
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def of_type(doc: dict[str, Any], typ: str) -> list[dict[str, Any]]:
    return [r for r in doc["resources"] if r["type"] == typ]


def by_name(doc: dict[str, Any], typ: str, name: str) -> dict[str, Any]:
    found = [r for r in of_type(doc, typ) if r["name"] == name]
    assert len(found) == 1, f"expected one {typ} named {name!r}, got {len(found)}"
    return found[0]


def by_urn(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["urn"]: r for r in doc["resources"]}


def provider_urn(ref: str | None) -> str | None:
    """A provider reference is ``<urn>::<id>``; return the URN."""
    if ref is None:
        return None
    return ref.rsplit("::", 1)[0]


def labels(inputs: dict[str, Any]) -> dict[str, str]:
    """Docker's ``labels`` list of ``{label, value}`` as a dict."""
    return {item["label"]: item["value"] for item in inputs.get("labels", [])}


def user_data(doc_or_record: dict[str, Any]) -> dict[str, Any]:
    """A CloudInitDisk record's user-data, parsed (secret envelope removed)."""
    text = reveal(doc_or_record["inputs"]["userData"])
    assert text.startswith("#cloud-config\n")
    parsed = yaml.safe_load(text)
    assert isinstance(parsed, dict)
    return parsed


def written_file(ud: dict[str, Any], path: str) -> str | None:
    for f in ud.get("write_files", []):
        if f["path"] == path:
            return str(f["content"])
    return None


def parse_env_file(text: str) -> dict[str, str]:
    """Variables of a systemd EnvironmentFile, decoded by the policies' reader."""
    return formats.read_env_file(text)


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"
