"""Helpers for the policy tests.

Every rule is exercised through the real analyzer protocol: each pack process is started
once per test module (the way the engine starts it) and the tests send it ``Analyze`` /
``AnalyzeStack`` requests built from plan-format resources.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinstack.policy import config as cfg
from twinstack.policy.host import AnalyzerProcess, StackContext
from twinstack.policy.wire import analyze_request, analyzer_resource

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
if str(POLICIES) not in sys.path:
    sys.path.insert(0, str(POLICIES))  # the rule library, as the packs import it
FIXTURES = Path(__file__).resolve().parent / "fixtures"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
URN_PREFIX = "urn:pulumi:test::twinstack::"


def urn(type_token: str, name: str) -> str:
    return f"{URN_PREFIX}{type_token}::{name}"


def resource(type_token: str, name: str, inputs: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A plan-format resource record (docs/plan-format.md)."""
    return {
        "urn": urn(type_token, name),
        "type": type_token,
        "name": name,
        "custom": True,
        "inputs": copy.deepcopy(dict(inputs)),
        **extra,
    }


@dataclass(frozen=True)
class Diag:
    policy: str
    level: str
    message: str
    urn: str


class Pack:
    """A running pack plus helpers to configure it and analyze synthetic resources."""

    def __init__(self, proc: AnalyzerProcess) -> None:
        self.proc = proc
        self.info = proc.get_analyzer_info()

    def configure(self, config: Mapping[str, Any] | None = None) -> None:
        entries = cfg.reconcile(self.info, config)
        self.proc.configure(cfg.to_proto(entries))

    def analyze(self, res: Mapping[str, Any]) -> list[Diag]:
        response = self.proc.analyze(analyze_request(res, {}))
        return [
            Diag(d.policyName, cfg.level_name(d.enforcementLevel), d.message, res["urn"])
            for d in response.diagnostics
        ]

    def analyze_stack(self, resources: list[dict[str, Any]]) -> list[Diag]:
        by_urn = {r["urn"]: r for r in resources}
        response = self.proc.analyze_stack([analyzer_resource(r, by_urn) for r in resources])
        return [
            Diag(d.policyName, cfg.level_name(d.enforcementLevel), d.message, d.urn)
            for d in response.diagnostics
        ]


def start_pack(pack_dir: Path) -> Iterator[Pack]:
    with AnalyzerProcess(
        pack_dir, StackContext(stack="test"), startup_timeout=60, call_timeout=30
    ) as proc:
        proc.handshake()
        proc.configure_stack()
        pack = Pack(proc)
        pack.configure(None)
        yield pack


Mutator = Callable[[dict[str, Any]], None]


def set_path(props: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.0.c`` in nested props."""
    keys = path.split(".")
    node: Any = props
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def del_path(props: dict[str, Any], path: str) -> None:
    keys = path.split(".")
    node: Any = props
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    del node[keys[-1]]


def unknown_message(policy: str, pack: str, prop: str, kind: str = "string") -> str:
    """The SDK's preview diagnostic for a policy that read an unknown value."""
    return (
        f"can't run policy '{policy}' from policy pack '{pack}@v0.0.1' during preview: "
        f"{kind} value at .{prop} can't be known during preview"
    )
