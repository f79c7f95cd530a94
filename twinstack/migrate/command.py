"""``twinstack migrate`` (registered in :mod:`twinstack.cli` with one line)."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from twinstack.errors import TwinstackError


class Target(enum.StrEnum):
    vm = "vm"
    container = "container"


class Fmt(enum.StrEnum):
    text = "text"
    json = "json"


def _replicas(value: str) -> list[int] | None:
    if value == "all":
        return None
    if not value.isdigit() or len(value) > 4:
        raise TwinstackError(f"--replica: {value!r} is not allowed; allowed: a number or all")
    return [int(value)]


def migrate_command(
    stack: Annotated[str, typer.Option("--stack", "-s", help="Deployed stack.")],
    service: Annotated[str, typer.Option("--service", help="Service whose volumes move.")],
    to: Annotated[
        Target, typer.Option("--to", help="Side that receives the data: vm or container.")
    ],
    replica: Annotated[str, typer.Option("--replica", help="Replica number, or all.")] = "all",
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List what would move and an estimate; change nothing."),
    ] = False,
    fmt: Annotated[Fmt, typer.Option("--format", "-f", help="text or json.")] = Fmt.text,
    stack_file: Annotated[
        Path | None,
        typer.Option("--stack-file", help="The stack file (default: stacks/Pulumi.<stack>.yaml)."),
    ] = None,
) -> None:
    """Copy a service's volumes between its container and its VM (both deployed, e.g.
    `runtime: both`), stopping both during the copy and verifying every file."""
    from twinstack.cli import fail

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        result = _run(stack, service, to.value, replica, dry_run, fmt, stack_file, err)
    except TwinstackError as exc:
        raise fail(str(exc)) from None
    if fmt is Fmt.json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        Console(highlight=False, soft_wrap=True).print(_text(result), markup=False)


def _run(
    stack: str, service: str, to: str, replica: str, dry_run: bool, fmt: Fmt,
    stack_file: Path | None, err: Console,
) -> dict[str, Any]:  # fmt: skip
    from components.grammar import STACK_NAME
    from components.spec import load_stack
    from twinstack.migrate.run import migrate
    from twinstack.plan import project_root
    from twinstack.realize import docker_client, libvirt_conn

    try:
        STACK_NAME.check(stack)
    except ValueError as exc:
        raise TwinstackError(f"--stack: {stack!r} {exc}") from None
    root = project_root()
    path = stack_file or root / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise TwinstackError(f"--stack {stack}: no stack file {path}")
    spec = load_stack(path)
    svc = next((s for s in spec.services if s.name == service), None)
    if svc is None:
        names = ", ".join(s.name for s in spec.services) or "none"
        raise TwinstackError(f"{path}: no service {service!r}; services: {names}")
    if not svc.volumes:
        raise TwinstackError(f"{path}: service {service} declares no volumes: nothing to migrate")
    replicas = _replicas(replica)
    if replicas is not None and replicas[0] >= svc.replicas:
        raise TwinstackError(
            f"--replica {replica}: service {service} has {svc.replicas} replica(s) (0 to {svc.replicas - 1})"
        )
    docker, conn = docker_client(), libvirt_conn()
    show = fmt is Fmt.text and err.is_terminal
    with _progress(err, show) as progress:
        res = migrate(
            docker=docker, conn=conn, root=root, stack=stack, svc=svc, to=to,
            replicas=replicas, dry_run=dry_run, progress=progress,
            log=(lambda m: err.print(f"[dim]{escape(m)}[/]")) if fmt is Fmt.text else (lambda _m: None),
        )  # fmt: skip
    return res.as_json()


class _progress:
    """Byte progress bars on stderr (a terminal, text output), else nothing."""

    def __init__(self, console: Console, show: bool) -> None:
        self.show = show
        self.console = console
        self.bars: Any = None

    def __enter__(self) -> Any:
        if not self.show:
            return lambda _d, _t: lambda _n: None
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.bars = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), console=self.console, transient=True,
        )  # fmt: skip
        self.bars.start()

        def task(description: str, total: int | None) -> Any:
            tid = self.bars.add_task(description, total=total)
            return lambda n: self.bars.advance(tid, n)

        return task

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.stop()


def _text(res: dict[str, Any]) -> str:
    head = "would move" if res["dryRun"] else "moved"
    lines = [f"stack {res['stack']}, service {res['service']}: {head} data to the {res['to']}"]
    if res.get("resumed"):
        lines.append(f"  note: {res['resumed']}")
    for r in res["replicas"]:
        lines.append(f"  replica {r['replica']}: {r['source']} → {r['target']}")
        for v in r["volumes"]:
            line = f"    {v['name']} ({v['mountPath']}): {v['files']} files, {v['bytes']:,} bytes"
            if not res["dryRun"]:
                line += f", {v['seconds']} s ({v['mbPerS']} MB/s), verified"
            if v["skipped"]:
                line += f"; special files not carried: {', '.join(v['skipped'][:5])}"
            lines.append(line)
        if r["readySeconds"]:
            lines.append(
                "    healthy again: "
                + ", ".join(f"{k} after {s} s" for k, s in sorted(r["readySeconds"].items()))
            )
    if res["dryRun"]:
        lines.append(f"  estimated copy time: {res['estimatedSeconds']} s (plus restarts)")
    else:
        lines.append(f"  done in {res['seconds']} s")
    return "\n".join(lines)
