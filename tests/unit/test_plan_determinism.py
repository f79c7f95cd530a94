"""The same stack gives byte-identical plan JSON on every run (issue 12): the SDK registers
resources concurrently, so the plan orders them itself (twinstack.plan.tree_order)."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

from .helpers import VENV_BIN, base_config, make_project, write_stack


def test_plan_json_is_byte_identical_across_runs(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    cfg = base_config()
    template = cfg["twinstack:services"][0]
    services = []
    for i in range(25):
        svc = copy.deepcopy(template)
        svc["name"] = f"svc{i}"
        svc.pop("ports", None)
        svc["replicas"] = 1
        services.append(svc)
    cfg["twinstack:services"] = services
    cfg["twinstack:storage"][0]["capacityGib"] = 100_000
    write_stack(root, "many", cfg)
    outs = []
    for run in range(3):
        out = root / f"plan-{run}.json"
        subprocess.run(
            [str(VENV_BIN / "twinstack"), "plan", "--stack", "many", "--runtime", "both",
             "--format", "json", "-o", str(out)],
            cwd=root, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    doc = json.loads(outs[0])
    order = [r["urn"] for r in doc["resources"]]
    seen: set[str] = set()
    for rec in doc["resources"]:  # parents come before their children
        assert rec["parent"] is None or rec["parent"] in seen, rec["urn"]
        seen.add(rec["urn"])
    assert len(order) == len(set(order)) > 25 * 5
