"""``twinstack diff``: the command line of the cost and density comparison.

Only typer loads with this module; the comparison (:mod:`twinstack.density.diffing`) and
what it needs load when the command runs, so other commands start fast.
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

from twinstack.errors import TwinstackError


class Format(enum.StrEnum):
    """Report formats."""

    text = "text"
    markdown = "markdown"
    json = "json"


def diff_command(
    stack: Annotated[
        str | None,
        typer.Option("--stack", "-s", help="Plan this stack as vm and as container; compare."),
    ] = None,
    from_state: Annotated[
        list[Path] | None,
        typer.Option(
            "--from-state",
            help="`pulumi stack export` JSON of a deployed stack (give two to compare them, "
            "or one of a `both` stack).",
        ),
    ] = None,
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="text, markdown (PR comment) or json.")
    ] = Format.text,
    chart: Annotated[
        Path | None,
        typer.Option("--chart", help="Also draw instances/host and monthly cost (.svg/.png)."),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option("--calibration", help="Calibration JSON from `twinstack measure`."),
    ] = None,
    cost_file: Annotated[
        Path | None,
        typer.Option("--cost", help="Cost YAML (profiles, prices) instead of twinstack:cost."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
    ] = None,
    save_markdown: Annotated[
        Path | None,
        typer.Option("--save-markdown", help="Also write the markdown report here."),
    ] = None,
) -> None:
    """Compare cost and density of VMs and containers for the same services."""
    from twinstack.density.diffing import build_report, render
    from twinstack.density.report import render_chart

    err = typer.echo
    try:
        report = build_report(
            stack=stack, from_state=from_state, calibration=calibration, cost_file=cost_file
        )
        doc = report.to_json()
        text = render(doc, fmt)
        if chart is not None:
            render_chart(doc, chart)
        if save_markdown is not None:
            try:
                save_markdown.write_text(render(doc, Format.markdown), encoding="utf-8")
            except OSError as exc:
                raise TwinstackError(
                    f"--save-markdown {save_markdown}: cannot write: {exc.strerror}"
                ) from None
        if output is not None:
            try:
                output.write_text(text, encoding="utf-8")
            except OSError as exc:
                raise TwinstackError(f"--output {output}: cannot write: {exc.strerror}") from None
    except TwinstackError as exc:
        err(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if output is None:
        sys.stdout.write(text)
    else:
        err(f"wrote {output}", err=True)
    if chart is not None:
        err(f"wrote {chart}", err=True)
    if save_markdown is not None:
        err(f"wrote {save_markdown}", err=True)
