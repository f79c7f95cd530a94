"""Policy pack twinstack-container-security: container security (CIS Docker Benchmark 1.6)."""

from __future__ import annotations

import sys
from pathlib import Path

# The engine runs `python -m pulumi.policy <engine> <pack dir>`, which puts only the pack
# directory on sys.path; the shared rule library is its sibling.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack
from twinstack_rules import container, decode_once

decode_once.install()  # each resource decoded once per call, not once per policy
PolicyPack(
    name="twinstack-container-security",
    description="Container security for pulumi-docker resources (CIS Docker Benchmark 1.6).",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=list(container.POLICIES),
)
