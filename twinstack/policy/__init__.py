"""Policy enforcement without the Pulumi CLI.

``run_policy(plan, pack_dir, config)`` starts a CrossGuard policy pack the way the Pulumi
engine does, feeds it every resource of a recorded plan (``twinstack plan``) over the
analyzer gRPC protocol, and returns a :class:`PolicyReport`.
"""

from __future__ import annotations

from twinstack.policy.config import PolicyConfigError
from twinstack.policy.host import AnalyzerProcess, PolicyPackError, StackContext
from twinstack.policy.report import PackResult, PolicyRemediation, PolicyReport, PolicyViolation
from twinstack.policy.runner import PlanFormatError, run_packs, run_policy

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
