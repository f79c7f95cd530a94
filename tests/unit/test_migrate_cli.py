"""`twinstack migrate` refuses bad arguments before it touches a daemon, and its journal
is a lock that also reports an interrupted earlier run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from twinstack.migrate.manifest import MigrateError
from twinstack.migrate.run import Journal

from .test_cli import twinstack


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stack", "dev", "--service", "api", "--to", "vm", "--replica", "x"],
         "--replica: 'x' is not allowed; allowed: a number or all"),
        (["--stack", "dev", "--service", "api", "--to", "vm", "--replica", "7"],
         "--replica 7: service api has 1 replica(s) (0 to 0)"),
        (["--stack", "dev", "--service", "nope", "--to", "vm"],
         "no service 'nope'; services: web, api, worker"),
        (["--stack", "../etc", "--service", "api", "--to", "vm"], "--stack: '../etc'"),
        (["--stack", "nothere", "--service", "api", "--to", "vm"], "no stack file"),
        (["--stack", "dev", "--service", "web", "--to", "vm"], "declares no volumes"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str) -> None:
    res = twinstack("migrate", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in " ".join(res.stderr.split()), res.stderr
    assert "Traceback" not in res.stderr


def test_to_must_be_vm_or_container() -> None:
    res = twinstack("migrate", "--stack", "dev", "--service", "api", "--to", "both")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_journal_is_a_lock_and_reports_an_interrupted_run(tmp_path: Path) -> None:
    first = Journal(tmp_path, "s", "api")
    assert first.acquire() is None
    first.update(phase="copying volume data", to="vm")
    first.add("stopped", "container s-api-0")
    # a second run while the first is alive: refused
    alive = subprocess.Popen(["sleep", "60"])
    try:
        state = json.loads(first.path.read_text())
        first.path.write_text(json.dumps({**state, "pid": alive.pid}))
        with pytest.raises(MigrateError, match=rf"another twinstack migrate \(pid {alive.pid}\)"):
            Journal(tmp_path, "s", "api").acquire()
    finally:
        alive.kill()
        alive.wait()
    # the first run dies without cleaning up: its pid is gone
    sleeper = subprocess.Popen(["true"])
    sleeper.wait()
    state = json.loads(first.path.read_text())
    first.path.write_text(json.dumps({**state, "pid": sleeper.pid}))
    note = Journal(tmp_path, "s", "api").acquire()
    assert note is not None
    assert "did not complete (copying volume data)" in note and "container s-api-0" in note
    assert json.loads(first.path.read_text())["pid"] == os.getpid()
