"""Fuzzing stack files: whatever the bytes, validation ends in a TwinstackError or a spec.

Examples start from the example stack (stacks/Pulumi.dev.yaml), parsed, and mutate it:
leaves replaced by random JSON-ish values, arbitrary text, huge numbers or the wrong type;
keys deleted and added; secrets referenced, set, or set as plain text; values shared
(aliases, even recursive ones) and nested alias bombs; then the YAML text gets syntax junk,
raw bytes or is cut short.

* In-process (many examples): `load_stack`, what `twinstack validate` runs, raises only
  TwinstackError, with a one-line message naming the file, within a bounded time.
* Through the real CLI (a few examples, repeatable): `twinstack plan` and
  `twinstack validate` exit 0 or 2 with no traceback, and nothing is written outside the
  temporary project's `.twinstack/build`.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from components.spec import load_stack
from twinstack.errors import TwinstackError

from .helpers import REPO, VENV_BIN, make_project

DEV: dict[str, Any] = yaml.safe_load((REPO / "stacks" / "Pulumi.dev.yaml").read_text())
MAX_SECONDS_PER_EXAMPLE = 5.0  # a runaway guard (typical: a few ms), not a speed target

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=10**50, max_value=10**300),  # huge numbers
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    st.text(max_size=4).map(lambda s: s * 5000),  # long text
    st.sampled_from(["vm", "container", "both", "web", "0755", "/srv", "10.0.0.0/8", "yes"]),
)
_value = st.recursive(
    _leaf,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_text, kids, max_size=4),
    max_leaves=12,
)
_key = st.one_of(
    _text,
    st.sampled_from(
        [
            "twinstack:runtime", "twinstack:services", "twinstack:apiToken", "twinstack:",
            "twinstack:cost", "docker:host", "name", "build", "image", "secrets", "ports",
            "resources", "replicas", "command", "files", "path", "content", "<<",
        ]
    ),
)  # fmt: skip

JUNK = [
    "&a ", "*a", "*undefined", "<<: *a\n", "!!binary ", "!!python/object:os.system ",
    "!custom ", "[", "]", "{", "}", ": ", "- ", "\t", "\n---\n", "%YAML 1.2\n---\n", "? ",
    "|\n", ">-\n", "'", '"', "# c\n", "\n  ", "\n      - ", "&b [*b]", "\\", "\x00", "\x1b",
    "\ufeff", "9" * 5000, "[" * 200, "2024-01-01", "=", "~", ".nan", "0x" + "f" * 300,
]  # fmt: skip


def _nodes(node: Any, path: tuple[Any, ...] = (), seen: set[int] | None = None) -> Iterator[Any]:
    """Every path into ``node`` (shared or recursive values visited once)."""
    seen = set() if seen is None else seen
    yield path
    if isinstance(node, dict | list):
        if id(node) in seen:
            return
        seen.add(id(node))
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in list(items):
            yield from _nodes(v, (*path, k), seen)


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _bomb(levels: int) -> list[Any]:
    node: list[Any] = ["lol"] * 10
    for _ in range(levels):
        node = [node] * 10  # shared: dumped as anchors and aliases
    return node


@st.composite
def stack_files(draw: st.DrawFn, max_edits: int = 4, max_text_edits: int = 3) -> bytes:
    doc: Any = copy.deepcopy(DEV)
    for _ in range(draw(st.integers(0, max_edits))):
        op = draw(st.sampled_from(["replace", "delete", "add", "secret", "share", "bomb"]))
        paths = list(_nodes(doc))
        path = draw(st.sampled_from(paths))
        if op == "replace":
            doc = _set(doc, path, draw(_value))
        elif op == "delete" and path:
            del _get(doc, path[:-1])[path[-1]]
        elif op == "add":
            target = _get(doc, path)
            if isinstance(target, dict):
                target[draw(_key)] = draw(_value)
            elif isinstance(target, list):
                target.append(draw(_value))
        elif op == "secret" and isinstance(doc, dict) and isinstance(doc.get("config"), dict):
            cfg = doc["config"]
            services = cfg.get("twinstack:services")
            if isinstance(services, list) and services and isinstance(services[0], dict):
                src = services[0].get("build") or services[0].get("image")
                if isinstance(src, dict):
                    src["secrets"] = {"API_TOKEN": draw(st.sampled_from(["apiToken", "x.y"]))}
            how = draw(st.sampled_from(["secure", "plain", "unset"]))
            if how == "secure":
                cfg["twinstack:apiToken"] = {"secure": "v1:AAAA"}
            elif how == "plain":
                cfg["twinstack:apiToken"] = "hunter2"
        elif op == "share":
            other = draw(st.sampled_from(paths))
            doc = _set(doc, path, _get(doc, other))  # an alias; recursive if `other` is above
        elif op == "bomb":
            doc = _set(doc, path, _bomb(draw(st.integers(1, 9))))
    try:
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=draw(st.booleans()))
    except (yaml.YAMLError, ValueError, RecursionError):
        text = yaml.safe_dump(DEV, sort_keys=False)  # a value PyYAML cannot write
    data = text.encode("utf-8")
    for _ in range(draw(st.integers(0, max_text_edits))):
        kind = draw(st.sampled_from(["junk", "bytes", "cut"]))
        at = draw(st.integers(0, len(data)))
        if kind == "junk":
            data = data[:at] + draw(st.sampled_from(JUNK)).encode("utf-8") + data[at:]
        elif kind == "bytes":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        else:
            data = data[:at]
    return data


def _kind(msg: str) -> str:
    """A label for --hypothesis-show-statistics: what kind of error an example hit."""
    for kind in (
        "not valid YAML",
        "UTF-8",
        "expands to",
        "recursive",
        "nested more",
        "tag",
        "is empty",
        "unknown key",
        "not allowed",
        "secret",
        "integer of",
    ):
        if kind in msg:
            return kind
    return "other spec error"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stack_files())
def test_validation_raises_only_twinstack_errors(workdir: Path, data: bytes) -> None:
    path = workdir / "Pulumi.fuzz.yaml"
    path.write_bytes(data)
    start = time.process_time()
    try:
        load_stack(path)
        event("valid")
    except TwinstackError as exc:  # anything else fails the test, with its traceback
        msg = str(exc)
        event(_kind(msg.removeprefix(str(path))))
        assert str(path) in msg, msg
        assert "\n" not in msg, msg
        assert len(msg) < 2000, msg[:500]
    elapsed = time.process_time() - start
    assert elapsed < MAX_SECONDS_PER_EXAMPLE, f"{elapsed:.2f} s for {len(data)} bytes"


# ------------------------------------------------------------------ the real command line


def _snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``root``: files with (size, mtime), folders as ``None``."""
    out: dict[str, tuple[int, int] | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[str((Path(dirpath) / name).relative_to(root))] = None
        for name in filenames:
            p = Path(dirpath) / name
            st_ = p.lstat()
            out[str(p.relative_to(root))] = (st_.st_size, st_.st_mtime_ns)
    return out


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# half the examples keep valid YAML, so that some plans get as far as writing build contexts
@given(st.one_of(stack_files(max_edits=2, max_text_edits=0), stack_files()))
def test_cli_exits_0_or_2_and_writes_only_build_contexts(data: bytes) -> None:
    base = Path(tempfile.mkdtemp(prefix="twinstack-fuzz-cli-"))
    try:
        project = make_project(base / "proj")
        (base / "home").mkdir()
        (base / "tmp").mkdir()
        path = project / "stacks" / "Pulumi.fuzz.yaml"
        path.write_bytes(data)
        env = {
            "PATH": "/usr/bin:/bin",
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "HOME": str(base / "home"),
            "TMPDIR": str(base / "tmp"),
        }
        before = _snapshot(base)
        twinstack = str(VENV_BIN / "twinstack")
        # the two commands in parallel: the suite must stay within a minute on two cores
        procs = {
            "plan": subprocess.Popen(
                [twinstack, "plan", "--stack", "fuzz"],
                cwd=project,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            "validate": subprocess.Popen(
                [twinstack, "validate", str(path)],
                cwd=project,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        }
        for name, proc in procs.items():
            try:
                _out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise AssertionError(f"{name} did not finish in 60 s") from None
            event(f"{name}: exit {proc.returncode}")
            assert proc.returncode in (0, 2), f"{name}: exit {proc.returncode}: {err[-2000:]}"
            assert "Traceback" not in err, f"{name}: {err[-2000:]}"
            assert "internal error" not in err, f"{name}: {err[-2000:]}"
            if proc.returncode == 2:
                line = err.strip()
                assert line.startswith("error: ") and "\n" not in line, f"{name}: {err[-2000:]}"
        # validated once, in one place: what validate accepts, plan accepts, and vice versa
        assert procs["plan"].returncode == procs["validate"].returncode
        after = _snapshot(base)
        build = str(Path("proj") / ".twinstack" / "build")
        changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
        outside = sorted(p for p in changed if p != build and not p.startswith(build + os.sep))
        assert set(outside) <= {"proj/.twinstack"}, outside  # .twinstack: made by plan
    finally:
        shutil.rmtree(base, ignore_errors=True)
