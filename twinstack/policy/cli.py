"""``twinstack policy``: enforce the policy packs on recorded plans, like
``pulumi preview --policy-pack`` would, without the Pulumi CLI.

Exit codes: 0 no mandatory violation; 1 at least one mandatory violation; 2 the check could
not run (bad stack/config, a pack that crashed or hung) — never a silent pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from twinstack.errors import TwinstackError
from twinstack.policy.limits import DEFAULT_CALL_TIMEOUT

if TYPE_CHECKING:
    from twinstack.policy.report import PolicyReport


def discover_packs(root: Path) -> list[Path]:
    """Every directory under ``policies/`` with a ``PulumiPolicy.yaml``, sorted."""
    return sorted(p.parent for p in (root / "policies").glob("*/PulumiPolicy.yaml"))


def _check_all(
    root: Path,
    stacks: list[str],
    all_stacks: bool,
    runtime: str | None,
    plan_file: Path | None,
    preview: bool,
    run: Callable[..., PolicyReport],
) -> list[PolicyReport]:
    from components.spec import PROJECT
    from twinstack.plan import load_plan, plan_stack_apart, stack_file_of, stack_names

    if plan_file is not None:
        if stacks or all_stacks:
            raise TwinstackError("--plan cannot be combined with --stack/--all-stacks")
        return [run(load_plan(plan_file))]
    names = stack_names(root) if all_stacks else stacks
    if not names:
        raise TwinstackError("give --stack NAME, --all-stacks, or --plan FILE.json")
    # Each stack in the runtime it declares (or the --runtime override); a stack that
    # declares `both` realizes both runtimes in one plan, which is what parity needs.
    # Planned in a child process that sends each resource as it is registered: the packs
    # analyze it meanwhile, as under the engine, and the SDK's objects of a large plan
    # (GiBs at thousands of services) never enter this process.
    reports: list[PolicyReport] = []
    for name in names:
        stack_file_of(name, root)  # a missing stack is named before any pack starts
        head = {"project": PROJECT, "stack": name, "stackFile": f"stacks/Pulumi.{name}.yaml"}

        def produce(feed: Callable[[Any], None], name: str = name) -> dict[str, Any]:
            return plan_stack_apart(
                name, runtime, root=root, preview=preview, on_record=feed,
                on_forked=getattr(feed, "start", None),
            )  # fmt: skip

        reports.append(run(head, produce))
    return reports


def policy_command(
    stack: Annotated[
        list[str] | None, typer.Option("--stack", "-s", help="Stack to check (repeatable).")
    ] = None,
    all_stacks: Annotated[
        bool, typer.Option("--all-stacks", help="Check every stack in stacks/ (for CI).")
    ] = False,
    runtime: Annotated[
        str | None,
        typer.Option("--runtime", "-r", help="Override the stack's runtime: vm|container|both."),
    ] = None,
    pack: Annotated[
        list[Path] | None,
        typer.Option("--pack", "-p", help="Policy pack directory (repeatable; default: all)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Policy config (pulumi --policy-pack-config format)."),
    ] = None,
    plan: Annotated[
        Path | None, typer.Option("--plan", help="Check a recorded plan JSON instead.")
    ] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Plan with unknown outputs, as during preview.")
    ] = False,
    output: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    timeout: Annotated[
        float,
        typer.Option("--timeout", help="Seconds a pack may take to start or to answer a call."),
    ] = DEFAULT_CALL_TIMEOUT,
) -> None:
    """Enforce the policy packs on stacks through the Pulumi analyzer protocol.

    Exit 1 on any mandatory violation, 2 if the check itself failed.
    """
    from rich.console import Console

    from twinstack.plan import project_root
    from twinstack.policy.config import load_config_file
    from twinstack.policy.runner import run_packs

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        if output not in ("text", "json"):
            raise TwinstackError(f"--format: {output!r} is not allowed; allowed: text, json")
        root = project_root()
        pack_dirs = [p.resolve() for p in pack] if pack else discover_packs(root)
        config_doc = load_config_file(config) if config is not None else None

        def run(plan: dict[str, Any], produce: Any = None) -> PolicyReport:
            return run_packs(
                plan,
                pack_dirs,
                config_doc,
                produce=produce,
                root=root,
                startup_timeout=timeout,
                call_timeout=timeout,
                config_source=str(config) if config is not None else "policy config",
                strict_config=not pack,
            )

        reports = _check_all(root, list(stack or []), all_stacks, runtime, plan, preview, run)
    except TwinstackError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    if output == "json":
        typer.echo(json.dumps([r.to_dict() for r in reports], indent=2, sort_keys=True))
    else:
        for report in reports:
            typer.echo(report.render_text())
    if any(not r.passed for r in reports):
        raise typer.Exit(1)


def main() -> None:
    """``python -m twinstack.policy.cli`` (the same command without the twinstack app)."""
    typer.run(policy_command)


if __name__ == "__main__":
    main()
