"""The Pulumi program's entry: read config once, build the stack, export outputs.

``__main__.py`` calls :func:`run`. Under ``pulumi up`` the engine supplies config; under
``twinstack plan`` the mocks runner supplies the same keys from the stack file. The code
path after reading config is identical.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from components.spec import PROJECT, StackSpec, spec_from_config
from components.stack import build_stack
from twinstack.errors import TwinstackError

STACK_FILE_ENV = "TWINSTACK_STACK_FILE"
"""Set by ``twinstack plan`` when it plans a stack file outside ``stacks/``."""


def stack_file_label(stack: str) -> str:
    """How errors name the stack file (the project's ``stackConfigDir`` is ``stacks``)."""
    return os.environ.get(STACK_FILE_ENV) or f"stacks/Pulumi.{stack}.yaml"


def all_config() -> tuple[dict[str, Any], set[str]]:
    """Every config key the engine passed, JSON values decoded, and the secret keys."""
    raw: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = value
            out[key] = decoded if isinstance(decoded, dict | list) else value
        else:
            out[key] = value
    secrets = {k for k in out if runtime_config.is_config_secret(k)}
    secrets |= set(runtime_config.get_config_secret_keys_env())
    return out, secrets


def check_secrets(spec: StackSpec, config: dict[str, Any], source: str) -> None:
    """Every secret a service references must be set (as a secret) in the stack config."""
    for i, svc in enumerate(spec.services):
        kind = "build" if svc.build is not None else "image"
        for env, key in svc.secrets.items():
            if f"{PROJECT}:{key}" not in config:
                raise TwinstackError(
                    f"{spec.locate(source, ('services', i, kind, 'secrets', env))}: config "
                    f"key {key!r} is not set; run `pulumi config set --secret {key} <value>`"
                )


def load_spec() -> StackSpec:
    """Validate this stack's config into a spec (raises TwinstackError).

    ``twinstack:serviceFiles`` are read relative to the project directory: the engine runs
    the program there, and so does ``twinstack plan``.
    """
    stack = pulumi.get_stack()
    source = stack_file_label(stack)
    config, secret_keys = all_config()
    spec_keys = {k: v for k, v in config.items() if k not in secret_keys}
    spec = spec_from_config(spec_keys, source=source)
    check_secrets(spec, config, source)
    return spec


def run() -> None:
    """The whole program: spec → components → outputs. Errors become ``pulumi.RunError``."""
    try:
        spec = load_spec()
    except TwinstackError as exc:
        raise pulumi.RunError(str(exc)) from None
    cfg = pulumi.Config(PROJECT)
    outputs = build_stack(spec, stack_name=pulumi.get_stack(), secret=cfg.require_secret)
    for key, value in outputs.items():
        pulumi.export(key, value)
