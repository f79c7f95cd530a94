"""Running twinstack's program under a Pulumi CLI that has no Python language host.

tools/engine/build.sh builds the Pulumi CLI and the libvirt and docker provider plugins here;
the Python language host is not served (tools/engine/README.md). Such a CLI still runs the program
*inline*: the Automation API serves it from this process (`pulumi up --client …`). Policy
packs, which the CLI would start through the language host when given as directories, are
given as small executable launchers instead, which the CLI starts directly as analyzers.

Used by the engine tests (tests/integration/test_engine.py) and bench/engine_preview.py.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKS = ("guardrails", "vm-security", "container-security")


@dataclass(frozen=True)
class Engine:
    """A Pulumi CLI with the provider plugins installed, offline, in a private PULUMI_HOME."""

    bindir: Path  # tools/engine/build.sh's output: pulumi, pulumi-resource-{libvirt,docker}
    state: Path  # PULUMI_HOME, the file backend, the pack launchers
    env: dict[str, str]
    packs: list[str]

    @property
    def pulumi(self) -> Path:
        return self.bindir / "pulumi"

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """Run the CLI (e.g. ``state unprotect``); a failure raises with its stderr."""
        done = subprocess.run(
            [str(self.pulumi), *args], cwd=cwd, env={**os.environ, **self.env},
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pulumi {' '.join(args)}: {done.stderr.strip()[-2000:]}")
        return done

    def stack(self, name: str, work_dir: Path) -> Any:
        """Create or select stack ``name`` of twinstack's program, inline; the stack settings
        are ``Pulumi.<name>.yaml`` in ``work_dir`` (or its ``stackConfigDir``).

        Relative paths (service files, the build contexts the program writes and the docker
        provider builds) resolve against this process's working directory, for the program
        and the providers alike: for an inline program the CLI starts the providers there, not
        in ``work_dir`` (the language host would start both in the project directory)."""
        from pulumi import automation as auto

        from twinstack.program import run

        settings = None
        if not any((work_dir / f"Pulumi.{ext}").exists() for ext in ("yaml", "yml", "json")):
            settings = auto.ProjectSettings(name="twinstack", runtime="python")
        return auto.create_or_select_stack(
            name,
            project_name="twinstack",
            program=run,
            opts=auto.LocalWorkspaceOptions(
                work_dir=str(work_dir),
                pulumi_home=self.env["PULUMI_HOME"],
                pulumi_command=auto.PulumiCommand(
                    root=str(self.bindir.parent), skip_version_check=True
                ),
                env_vars=self.env,
                project_settings=settings,
            ),
        )


PROVIDERS = ("libvirt", "docker")  # the provider plugins build.sh builds


def plugin_version(provider: str) -> str:
    """The plugin version the pinned SDK of ``provider`` (pulumi_libvirt, pulumi_docker) asks
    the engine for: its pulumi-plugin.json."""
    import importlib.util
    import json

    spec = importlib.util.find_spec(f"pulumi_{provider}")
    assert spec is not None and spec.origin is not None, f"pulumi_{provider} is not installed"
    meta = Path(spec.origin).parent / "pulumi-plugin.json"
    return str(json.loads(meta.read_text())["version"])


def pack_launcher(pack: Path, into: Path) -> Path:
    """An executable analyzer for the pack directory ``pack``, in ``into/<pack name>/``.

    The CLI starts an executable policy-pack path with the engine's address as its only
    argument and reads the ``PulumiPolicy.yaml`` beside it; the launcher runs the pack the way
    the language host would (``python -u -m pulumi.policy <address> <pack dir>``)."""
    dst = into / pack.name
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(pack / "PulumiPolicy.yaml", dst / "PulumiPolicy.yaml")
    run = dst / "run-pack"
    src, python = shlex.quote(str(pack)), shlex.quote(sys.executable)
    run.write_text(f'#!/bin/sh\ncd {src} || exit 1\nexec {python} -u -m pulumi.policy "$1" {src}\n')
    run.chmod(run.stat().st_mode | stat.S_IXUSR)
    return run


def offline_engine(bindir: Path, state: Path, *, install: bool = True) -> Engine:
    """Set up ``state`` (PULUMI_HOME, a file backend, pack launchers) for the CLI in
    ``bindir``: passphrase secrets, no update checks, no plugin downloads or ambient plugins,
    and (``install``) the provider plugins installed from ``bindir``."""
    home, backend = state / "home", state / "backend"
    home.mkdir(parents=True, exist_ok=True)
    backend.mkdir(parents=True, exist_ok=True)
    env = {
        "PULUMI_HOME": str(home),
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_CONFIG_PASSPHRASE": "twinstack-offline-engine",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
    }
    packs = [str(pack_launcher(ROOT / "policies" / p, state / "packs")) for p in PACKS]
    engine = Engine(bindir, state, env, packs)
    if not install:
        return engine
    for provider in PROVIDERS:
        engine.run(
            "plugin", "install", "resource", provider, plugin_version(provider),
            "--file", str(bindir / f"pulumi-resource-{provider}"), cwd=state,
        )  # fmt: skip
    return engine
