"""Policy results, printed the way ``pulumi preview --policy-pack`` prints them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from twinstack.policy.wire import display_type

_LEVEL_RANK = {"remediate": 0, "mandatory": 1, "advisory": 2, "disabled": 3}
_SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "": 4}


def urn_type(urn: str) -> str:
    """The type token of a URN (the last ``$``-separated element of the type chain)."""
    parts = urn.split("::")
    if len(parts) < 4:
        return ""
    return parts[2].split("$")[-1]


def urn_name(urn: str) -> str:
    parts = urn.split("::")
    return "::".join(parts[3:]) if len(parts) >= 4 else ""


@dataclass(frozen=True)
class PolicyViolation:
    """One diagnostic a pack reported (resource or stack policy)."""

    pack: str
    pack_version: str
    policy: str
    level: str
    description: str
    message: str
    urn: str
    stack_policy: bool = False
    severity: str = ""

    @property
    def resource_type(self) -> str:
        return urn_type(self.urn)

    @property
    def resource_name(self) -> str:
        return urn_name(self.urn)

    @property
    def detail(self) -> str:
        """The rule's own message, without the policy description the SDK prepends."""
        if self.message.startswith(self.description + "\n"):
            return self.message[len(self.description) + 1 :]
        return self.message

    def heading(self) -> str:
        severity = f" [severity: {self.severity}]" if self.severity else ""
        clause = ""
        if self.urn:
            clause = f"  ({display_type(self.resource_type)}: {self.resource_name})"
        return f"[{self.level}]{severity}  {self.policy}{clause}"


@dataclass(frozen=True)
class PolicyRemediation:
    """A remediation a pack applied to a resource's inputs before analysis."""

    pack: str
    pack_version: str
    policy: str
    description: str
    urn: str
    before: dict[str, Any]
    after: dict[str, Any]

    def heading(self) -> str:
        return (
            f"[remediate]  {self.policy}  "
            f"({display_type(urn_type(self.urn))}: {urn_name(self.urn)})"
        )


@dataclass
class PackResult:
    name: str
    version: str
    path: str
    violations: list[PolicyViolation] = field(default_factory=list)
    remediations: list[PolicyRemediation] = field(default_factory=list)
    not_applicable: list[tuple[str, str]] = field(default_factory=list)
    levels: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.name}@v{self.version}"

    def sorted_violations(self) -> list[PolicyViolation]:
        return sorted(
            self.violations,
            key=lambda v: (
                _LEVEL_RANK.get(v.level, 99),
                _SEVERITY_RANK.get(v.severity, 99),
                v.policy,
                v.urn,
            ),
        )

    @property
    def status(self) -> str:
        if any(v.level == "mandatory" for v in self.violations):
            return "❌"
        if self.violations:
            return "⚠️"
        return "✅"


@dataclass
class PolicyReport:
    """Everything the packs said about one plan (one stack in one runtime)."""

    stack: str
    runtime: str
    resources: int
    packs: list[PackResult] = field(default_factory=list)

    @property
    def violations(self) -> list[PolicyViolation]:
        return [v for p in self.packs for v in p.sorted_violations()]

    @property
    def mandatory(self) -> list[PolicyViolation]:
        return [v for v in self.violations if v.level == "mandatory"]

    @property
    def advisory(self) -> list[PolicyViolation]:
        return [v for v in self.violations if v.level == "advisory"]

    @property
    def remediations(self) -> list[PolicyRemediation]:
        return [r for p in self.packs for r in p.remediations]

    @property
    def passed(self) -> bool:
        return not self.mandatory

    def render_text(self) -> str:
        lines = [
            f"Stack {self.stack} (runtime {self.runtime}): {self.resources} resources analyzed",
            "Policies:",
        ]
        for pack in sorted(self.packs, key=lambda p: p.key):
            lines.append(f"    {pack.status} {pack.key} (local: {pack.path})")
            for rem in pack.remediations:
                lines.append(f"        - {rem.heading()}")
            for v in pack.sorted_violations():
                lines.append(f"        - {v.heading()}")
                message = v.message.rstrip("\n")
                lines.extend(f"          {line}" for line in message.split("\n"))
        mandatory, advisory = len(self.mandatory), len(self.advisory)
        verdict = "FAILED" if mandatory else "passed"
        lines.append(
            f"{verdict}: {mandatory} mandatory, {advisory} advisory violation(s), "
            f"{len(self.remediations)} remediation(s)"
        )
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "runtime": self.runtime,
            "resources": self.resources,
            "passed": self.passed,
            "packs": [
                {
                    "name": p.name,
                    "version": p.version,
                    "path": p.path,
                    "enforcementLevels": dict(sorted(p.levels.items())),
                    "violations": [
                        {
                            **asdict(v),
                            "resourceType": v.resource_type,
                            "resourceName": v.resource_name,
                        }
                        for v in p.sorted_violations()
                    ],
                    "remediations": [asdict(r) for r in p.remediations],
                    "notApplicable": [
                        {"policy": name, "reason": reason} for name, reason in p.not_applicable
                    ],
                }
                for p in self.packs
            ],
        }
