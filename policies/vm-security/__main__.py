"""Policy pack twinstack-vm-security: VM security for pulumi-libvirt resources."""

from __future__ import annotations

import sys
from pathlib import Path

# The engine runs `python -m pulumi.policy <engine> <pack dir>`, which puts only the pack
# directory on sys.path; the shared rule library is its sibling.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack
from twinstack_rules import decode_once, vm

decode_once.install()  # each resource decoded once per call, not once per policy
PolicyPack(
    name="twinstack-vm-security",
    description="VM security for pulumi-libvirt resources (libvirt/QEMU security guidance).",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=list(vm.POLICIES),
)
