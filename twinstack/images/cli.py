"""``twinstack images``: build or reuse the local Debian base images."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from twinstack.errors import TwinstackError
from twinstack.images.build import DEFAULT_CACHE, DEFAULT_PUBLISH, Which, build_images

app = typer.Typer(
    help="Local Debian base images (container + VM), built from Debian packages.",
    no_args_is_help=True,
)


@app.callback()
def _images() -> None:
    """Local Debian base images (container + VM), built from Debian packages."""


@app.command("build")
def build(
    cache: Annotated[
        Path, typer.Option(help="Cache directory (artifacts keyed by the recipe hash).")
    ] = DEFAULT_CACHE,
    only: Annotated[
        str, typer.Option(help="Build only `container` or `vm` (default both).")
    ] = "all",
    publish: Annotated[
        Path, typer.Option(help="Where the VM disk, kernel and initrd get stable names.")
    ] = DEFAULT_PUBLISH,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Build the base images, or reuse them when the recipe is unchanged."""
    if only not in ("all", "container", "vm"):
        raise TwinstackError(f"--only: {only!r} is not allowed; allowed: all, container, vm")
    which: Which = only  # type: ignore[assignment]

    def log(msg: str) -> None:
        print(f"images: {msg}", file=sys.stderr, flush=True)

    result = build_images(cache, which=which, publish=publish, log=log)
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
        return
    reused = ", ".join(f"{k}={'reused' if v else 'built'}" for k, v in result.reused.items())
    print(f"recipe      {result.key}  ({reused})")
    if result.container_tag:
        print(f"container   {result.container_tag}  (also {result.container_alias})")
    if result.disk:
        print(f"vm disk     {result.disk}")
        print(f"vm kernel   {result.kernel}")
        print(f"vm initrd   {result.initrd}")
        print(f"vm cmdline  {result.cmdline}")
    print("seconds     " + ", ".join(f"{k}={v:.1f}" for k, v in result.seconds.items()))


def main() -> None:
    """Run the images app alone (``python -m twinstack.images``), errors without traceback."""
    try:
        app()
    except TwinstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
