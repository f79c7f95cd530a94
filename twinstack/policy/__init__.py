"""Policy enforcement without the Pulumi CLI.

``run_policy(plan, pack_dir, config)`` starts a CrossGuard policy pack the way the Pulumi
engine does, feeds it every resource of a recorded plan (``twinstack plan``) over the
analyzer gRPC protocol, and returns a :class:`PolicyReport`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "PolicyConfigError": "config",
    "AnalyzerProcess": "host",
    "PolicyPackError": "host",
    "StackContext": "host",
    "PackResult": "report",
    "PolicyRemediation": "report",
    "PolicyReport": "report",
    "PolicyViolation": "report",
    "PlanFormatError": "runner",
    "run_packs": "runner",
    "run_policy": "runner",
}


def __getattr__(name: str) -> Any:
    """Import a submodule when one of its names is first used (keeps the CLI fast)."""
    if name in _WHERE:
        return getattr(import_module(f"twinstack.policy.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'twinstack.policy' has no attribute {name!r}")


__all__ = [
    "AnalyzerProcess",
    "PackResult",
    "PlanFormatError",
    "PolicyConfigError",
    "PolicyPackError",
    "PolicyRemediation",
    "PolicyReport",
    "PolicyViolation",
    "StackContext",
    "run_packs",
    "run_policy",
]
