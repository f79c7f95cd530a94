"""Policy pack twinstack-guardrails: limits, VM/container parity, delete-before-replace,
budget."""

from __future__ import annotations

import sys
from pathlib import Path

# The engine runs `python -m pulumi.policy <engine> <pack dir>`, which puts only the pack
# directory on sys.path; the shared rule library is its sibling.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack
from twinstack_rules import budget, decode_once, guardrails

decode_once.install()  # each resource decoded once per call, not once per policy
budget.preload()  # before serving: the first AnalyzeStack does not wait for imports
PolicyPack(
    name="twinstack-guardrails",
    description=(
        "Stack guardrails: limits within bounds, VM/container parity, delete-before-replace, "
        "budget."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[*guardrails.POLICIES, *budget.POLICIES],
)
