"""``twinstack measure`` (registered in :mod:`twinstack.cli` with one line)."""

from __future__ import annotations

import enum
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from twinstack.errors import TwinstackError


class RuntimeChoice(enum.StrEnum):
    vm = "vm"
    container = "container"
    both = "both"


class RichUi:
    """Progress bars per phase, the harness's steps as dim lines above them."""

    def __init__(self, progress: Progress, verbose: bool) -> None:
        self.progress = progress
        self.verbose = verbose
        self.task: TaskID | None = None

    def log(self, message: str) -> None:
        if self.verbose or not message.startswith(("removed ", "virsh vol-create")):
            self.progress.console.print(f"[dim]{escape(message)}[/]")

    def phase(self, title: str, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.progress.tasks[-1].total)
            self.progress.stop_task(self.task)
        self.task = self.progress.add_task(title, total=total)

    def advance(self, detail: str = "") -> None:
        if self.task is not None:
            self.progress.advance(self.task)


def measure_command(
    stack: Annotated[str, typer.Option("--stack", "-s", help="Stack whose service to measure.")],
    service: Annotated[str, typer.Option("--service", help="Service to measure.")],
    runtime: Annotated[
        RuntimeChoice, typer.Option("--runtime", "-r", help="vm, container or both.")
    ] = RuntimeChoice.both,
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=100, help="Instances per runtime.")
    ] = 2,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for the report, chart, calibration.")
    ] = Path("out/measure"),
    window: Annotated[
        float, typer.Option("--window", min=1.0, help="Idle-CPU sampling window (seconds).")
    ] = 10.0,
    as_stack: Annotated[
        str,
        typer.Option("--as-stack", help="Stack name of the measured instances (name prefix)."),
    ] = "measure",
    cidr: Annotated[
        str, typer.Option("--cidr", help="Address block for the measurement's network(s).")
    ] = "10.213.96.0/24",
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="Time bare docker run / virsh.")
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Every harness step.")] = False,
) -> None:
    """Launch N instances of a service as containers and/or VMs on this host; report boot
    time, memory, disk and idle CPU per instance against bare baselines, and write a
    calibration file for `twinstack diff --calibration`. Tears everything down at the end
    (also on Ctrl-C)."""
    from twinstack.measure.report import write_outputs
    from twinstack.measure.runner import Interrupted, Options, Runner

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    runtimes = ["container", "vm"] if runtime is RuntimeChoice.both else [runtime.value]
    opts = Options(stack=stack, service=service, runtimes=runtimes, count=count,
                   window_s=window, as_stack=as_stack, cidr=cidr, baseline=baseline)  # fmt: skip
    start = time.monotonic()
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, transient=False,
    )  # fmt: skip
    runner: Runner | None = None
    try:
        with progress:
            runner = Runner(opts, RichUi(progress, verbose))
            raw = runner.run()
        doc = write_outputs(out, raw, runner.plans)
    except (KeyboardInterrupt, Interrupted):
        err.print("[bold red]interrupted[/]: everything measure created was torn down")
        raise typer.Exit(130) from None
    except TwinstackError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    _summary(err, doc, time.monotonic() - start)


def _summary(err: Console, doc: dict[str, Any], seconds: float) -> None:
    for rt, sec in doc["runtimes"].items():
        s = sec.get("createToHealthyS") or {}
        ratio = (sec.get("baseline") or {}).get("ratio") or {}
        mem = (sec.get("memoryPerInstanceMib") or {}).get("hostMib") or {}
        tag = (
            " [yellow](TCG: not representative of KVM)[/]"
            if sec.get("acceleration") == "tcg"
            else ""
        )
        err.print(
            f"[bold]{rt}[/]{tag}: {sec['healthy']}/{len(sec['instances'])} healthy; create→healthy "
            f"p50 {s.get('p50', '-')} s (max {s.get('max', '-')}); tool/bare "
            f"{ratio.get('p50', '-')}x; memory/instance p50 {mem.get('p50', '-')} MiB"
        )
    for label, path in doc["files"].items():
        err.print(f"wrote {label}: {path}")
    err.print(f"measure took {seconds:.0f} s; use: twinstack diff --stack {doc['stack']} "
              f"--calibration {doc['files']['calibration']}")  # fmt: skip
    failed = [
        i["name"]
        for sec in doc["runtimes"].values()
        for i in sec["instances"]
        if i.get("createToHealthyS") is None
    ]
    if failed:
        err.print(f"[bold red]not healthy:[/] {', '.join(failed)} (see the report)")
        raise typer.Exit(1)
