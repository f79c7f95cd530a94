"""Golden cases: spec → Dockerfile, spec → cloud-init user-data and spec → recorded
resources, each case under both runtimes.

Each case is ``cases/<case>/stack.yaml``; what it must produce is under
``cases/<case>/expected/``. On a difference the test prints a unified diff. After an
intended change, regenerate with ``TWINSTACK_UPDATE_GOLDEN=1 pytest tests/golden`` and
review the diff of ``expected/`` like code.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from components import renderers
from components.spec import load_stack
from twinstack.plan import plan_stack

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CASES = sorted(p.name for p in (HERE / "cases").iterdir() if (p / "stack.yaml").is_file())
UPDATE = os.environ.get("TWINSTACK_UPDATE_GOLDEN") == "1"


def _name(urn: str | None) -> str | None:
    """The resource name at the end of a URN (provider references end in ``::<id>``)."""
    if urn is None:
        return None
    parts = urn.split("::")
    return parts[3] if len(parts) > 3 else parts[-1]


def normalize(doc: dict[str, Any]) -> str:
    """Recorded resources without URNs: type, name, parent name, provider name, options,
    dependency names and the full wire inputs (sorted), in a stable order."""
    rows = [
        {
            "type": r["type"],
            "name": r["name"],
            "parent": _name(r["parent"]),
            "provider": _name(r["provider"]),
            "custom": r["custom"],
            "protect": r["protect"],
            "deleteBeforeReplace": r["deleteBeforeReplace"],
            "dependencies": sorted(str(_name(d)) for d in r["dependencies"]),
            "aliases": r["aliases"],
            "inputs": r["inputs"],
        }
        for r in doc["resources"]
    ]
    rows.sort(key=lambda r: (r["type"], r["name"]))
    body = {"resources": rows, "outputs": doc["outputs"]}
    return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def check(expected: Path, actual: str) -> None:
    if UPDATE:
        expected.parent.mkdir(parents=True, exist_ok=True)
        expected.write_text(actual, encoding="utf-8")
        return
    assert expected.is_file(), (
        f"{expected} is missing; run TWINSTACK_UPDATE_GOLDEN=1 pytest tests/golden"
    )
    want = expected.read_text(encoding="utf-8")
    if want != actual:
        diff = "".join(
            difflib.unified_diff(
                want.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{expected.relative_to(REPO)} (expected)",
                tofile="actual",
            )
        )
        pytest.fail(
            f"{expected.name} differs from the golden file "
            f"(TWINSTACK_UPDATE_GOLDEN=1 to accept):\n{diff}",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _build_contexts_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # rendered Docker build contexts are written under the CWD
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("case", CASES)
def test_rendered_files(case: str) -> None:
    spec = load_stack(HERE / "cases" / case / "stack.yaml")
    out = HERE / "cases" / case / "expected"
    for svc in spec.services:
        if svc.build is not None:
            check(out / f"{svc.name}.Dockerfile", renderers.render_dockerfile(svc))
        user_data = renderers.render_cloud_init(
            svc,
            hostname=f"{case}-{svc.name}-0",
            secret_values=renderers.secret_placeholders(svc),
        )
        check(out / f"{svc.name}.user-data", user_data)


@pytest.mark.parametrize("runtime", ["vm", "container"])
@pytest.mark.parametrize("case", CASES)
def test_recorded_resources(case: str, runtime: str) -> None:
    doc = plan_stack(case, runtime, root=REPO, stack_file=HERE / "cases" / case / "stack.yaml")
    check(HERE / "cases" / case / "expected" / f"resources-{runtime}.json", normalize(doc))


def test_every_case_has_expected_files() -> None:
    for case in CASES:
        have = {p.name for p in (HERE / "cases" / case / "expected").glob("*")}
        assert {"resources-vm.json", "resources-container.json"} <= have, case
