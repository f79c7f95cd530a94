"""Shared chart plumbing for ``diff`` and ``measure`` (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twinstack.errors import TwinstackError


def chart_format(path: Path, option: str) -> str:
    """``svg`` or ``png`` from the file name, or a clear error naming ``option``."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png"):
        raise TwinstackError(f"{option} {path}: use a .svg or .png file name")
    return fmt


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, fmt: str, option: str) -> None:
    """Write ``fig`` reproducibly (no timestamp in SVGs) and always close it."""
    plt = pyplot()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    except OSError as exc:
        raise TwinstackError(f"{option} {path}: cannot write: {exc.strerror}") from None
    finally:
        plt.close(fig)
