"""The ``twinstack`` command line.

Every command turns a :class:`~twinstack.errors.TwinstackError` into one message on
stderr and exit code 2; no traceback reaches a user. Anything else that escapes a command
is a bug: :func:`main` reports it as one "internal error" line, also exit 2 (the command
could not run), and ``TWINSTACK_DEBUG=1`` shows its traceback.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from twinstack.errors import TwinstackError

app = typer.Typer(
    name="twinstack",
    help="Declare a service once; deploy it as libvirt VMs or Docker containers; compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEBUG_ENV = "TWINSTACK_DEBUG"
"""Set (non-empty) to let an internal error's traceback through."""

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error and return the Exit to raise."""
    _err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    return typer.Exit(code)


@app.command()
def plan(
    stack: Annotated[
        list[str] | None, typer.Option("--stack", "-s", help="Stack name (repeatable).")
    ] = None,
    all_stacks: Annotated[bool, typer.Option("--all", help="Every stack in stacks/.")] = False,
    runtime: Annotated[
        str | None,
        typer.Option("--runtime", "-r", help="Override the stack's runtime: vm|container|both."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead.")
    ] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Run as a preview (unknown computed values).")
    ] = False,
    save_json: Annotated[
        Path | None,
        typer.Option("--save-json", help="Also write the plan JSON here (one plan, two outputs)."),
    ] = None,
) -> None:
    """Run the program offline under Pulumi's mocks and show every resource it declares."""
    from twinstack import plan as planner
    from twinstack.render import plan_text

    if fmt not in ("text", "json"):
        raise fail(f"--format: {fmt!r} is not allowed; allowed: text, json")
    root = planner.project_root()
    names = planner.stack_names(root) if all_stacks else list(stack or [])
    if not names:
        raise fail("name a stack with --stack NAME, or use --all")
    docs: list[dict[str, Any]] = []
    for name in names:
        try:
            docs.append(planner.plan_stack(name, runtime, root=root, preview=preview))
        except TwinstackError as exc:
            raise fail(str(exc)) from None
    as_json = json.dumps(docs[0] if len(docs) == 1 else docs, indent=2, sort_keys=False) + "\n"
    text = as_json if fmt == "json" else "\n".join(plan_text(d) for d in docs)
    if save_json is not None:
        save_json.write_text(as_json, encoding="utf-8")
        _err.print(f"wrote {save_json}")
    if output is not None:
        output.write_text(text, encoding="utf-8")
        _err.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead.")
    ] = None,
    service_file: Annotated[
        bool,
        typer.Option("--service-file", help="The schema of a service file (`services: [...]`)."),
    ] = False,
) -> None:
    """Print the JSON Schema of a stack file (generated from the spec models)."""
    from components.spec import json_schema, service_file_schema

    text = json.dumps(service_file_schema() if service_file else json_schema(), indent=2) + "\n"
    if output is not None:
        output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Stack files to check.")],
) -> None:
    """Validate stack files without planning (exit 2 on the first error)."""
    from components.spec import load_stack

    for f in files:
        try:
            spec = load_stack(f)
        except TwinstackError as exc:
            raise fail(str(exc)) from None
        _out.print(f"{f}: ok ({len(spec.services)} services, runtime {spec.runtime})")


# --- commands contributed by other modules (one import + one registration each) ---------
# Each module imports only typer at load time and the rest inside its command, so that
# `validate` and `--help` answer without loading pulumi, matplotlib or libvirt.
from twinstack.density.command import diff_command  # noqa: E402 (issue 4: diff)

app.command("diff")(diff_command)
from twinstack.policy.cli import policy_command  # noqa: E402 (issue 3: policy)

app.command("policy")(policy_command)
from twinstack.images.cli import app as images_app  # noqa: E402 (issue 5: images)

app.add_typer(images_app, name="images")
from twinstack.measure.command import measure_command  # noqa: E402 (issue 6: measure)

app.command("measure")(measure_command)
from twinstack.migrate.command import migrate_command  # noqa: E402 (issue 11: migrate)

app.command("migrate")(migrate_command)


def main() -> None:
    """Console-script entry point."""
    # A command is one short process: the cyclic collector's passes over a plan's millions
    # of live objects cost a quarter of a 1,000-service plan (measured: 40.5 s → 30.4 s,
    # +2 % peak memory), and nothing is left to collect at exit (see _exit_now).
    gc.disable()
    try:
        _run()
    except SystemExit as done:
        _exit_now(done.code)


def _exit_now(code: object) -> None:
    """Exit without tearing the heap down: a plan holds millions of objects, and the
    interpreter's final collection and module teardown (seconds at 1,000 services) do no
    work anyone needs. twinstack registers no exit handlers; output is flushed here."""
    if isinstance(code, str):
        _err.print(code)
        code = 1
    status = 0 if code is None else int(code) if isinstance(code, int) else 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to do
            stream.flush()
    os._exit(status)


def _run() -> None:
    try:
        app()
    except TwinstackError as exc:  # a command that forgot to convert its error
        _err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        _err.print("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:  # a bug: still one line, exit 2 ("could not run"), no traceback
        if os.environ.get(DEBUG_ENV):
            raise
        what = " ".join(f"{type(exc).__name__}: {exc}".split())
        if len(what) > 300:
            what = f"{what[:300]}…"
        _err.print(
            f"[bold red]error:[/] internal error ({escape(what)}); this is a bug in twinstack, "
            f"please report it (set {DEBUG_ENV}=1 for the traceback)"
        )
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
