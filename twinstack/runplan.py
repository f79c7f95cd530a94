"""``./run plan`` in one process: every example stack planned as vm and as container, the
policy packs on the plan of the runtime each stack declares, and the cost/density diff.

The same functions the commands call (``twinstack plan --save-json``, ``twinstack policy
--plan``, ``twinstack diff --save-markdown --chart``), without an interpreter start and the
imports per step: the work is the same, the files in ``out/`` are the same.

Exit 0, 1 when a pack reports a mandatory violation (after every stack ran), 2 when a
step could not run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from twinstack.errors import TwinstackError


def run(out: Path) -> int:
    from components.spec import load_stack
    from twinstack.density.command import Format
    from twinstack.density.diffing import build_report, render
    from twinstack.density.report import render_chart
    from twinstack.plan import plan_stack, project_root, stack_names
    from twinstack.policy.cli import discover_packs
    from twinstack.policy.runner import run_packs
    from twinstack.render import plan_text

    root = project_root()
    out.mkdir(parents=True, exist_ok=True)
    packs = discover_packs(root)
    failed = False
    for stack in stack_names(root):
        plans = {}
        for runtime in ("vm", "container"):
            print(f"=== plan: stack {stack}, runtime {runtime} ===", flush=True)
            doc = plan_stack(stack, runtime, root=root)
            path = out / f"plan-{stack}-{runtime}.json"
            path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
            sys.stdout.write(plan_text(doc))
            print(f"wrote {path}", file=sys.stderr)
            plans[runtime] = doc
        declared = load_stack(root / "stacks" / f"Pulumi.{stack}.yaml").runtime
        print(f"=== policy: stack {stack} (declared runtime {declared}) ===", flush=True)
        both = plan_stack(stack, "both", root=root)  # the diff's plan; `both` stacks' too
        report = run_packs(plans.get(declared, both), packs, None, root=root)
        print(report.render_text(), flush=True)
        failed = failed or not report.passed
        print(f"=== diff: stack {stack}, vm vs container ===", flush=True)
        diff = build_report(stack=stack, from_state=None, calibration=None, cost_file=None,
                            both_plan=both)  # fmt: skip
        diff_doc = diff.to_json()
        sys.stdout.write(render(diff_doc, Format.text))
        (out / f"diff-{stack}.md").write_text(render(diff_doc, Format.markdown), encoding="utf-8")
        render_chart(diff_doc, out / f"diff-{stack}.svg")
        print(f"wrote {out / f'diff-{stack}.md'} and {out / f'diff-{stack}.svg'}", file=sys.stderr)
    print(f"run: plans, diffs and charts written to {out}/", file=sys.stderr)
    return 1 if failed else 0


def main() -> None:
    try:
        code = run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out"))
    except TwinstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
