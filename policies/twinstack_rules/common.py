"""Helpers shared by the rule modules.

Rules receive ``args.props`` as pulumi-policy's unknown-checking proxy: reading a value
that is unknown during preview raises ``UnknownValueError``, which the SDK turns into an
advisory "can't run policy ... during preview" diagnostic, exactly as under the engine.
So rules read only the properties they need, and never catch that error.
"""

from __future__ import annotations

import functools
import ipaddress
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

# libyaml's parser where PyYAML was built with it (the wheels are): the same YAML 1.1 safe
# schema as yaml.safe_load, several times faster on the user-data every VM carries.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAMLError = yaml.YAMLError

# Provider type tokens (docs/plan-format.md).
DOCKER_CONTAINER = "docker:index/container:Container"
DOCKER_IMAGE = "docker:index/image:Image"
DOCKER_REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
DOCKER_VOLUME = "docker:index/volume:Volume"
DOCKER_NETWORK = "docker:index/network:Network"
LIBVIRT_DOMAIN = "libvirt:index/domain:Domain"
LIBVIRT_NETWORK = "libvirt:index/network:Network"
LIBVIRT_POOL = "libvirt:index/pool:Pool"
LIBVIRT_VOLUME = "libvirt:index/volume:Volume"
LIBVIRT_CLOUD_INIT = "libvirt:index/cloudInitDisk:CloudInitDisk"

# Host paths whose exposure to a workload compromises the host (CIS Docker 5.5).
SENSITIVE_HOST_PATHS = ["/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr"]

Report = Callable[..., None]
Validate = Callable[[Any, Report], None]


def for_types(*types: str) -> Callable[[Validate], Validate]:
    """Run a validation only for resources of the given type tokens."""

    def wrap(fn: Validate) -> Validate:
        def validate(args: Any, report: Report) -> None:
            if args.resource_type in types:
                fn(args, report)

        validate.__name__ = fn.__name__
        validate.__doc__ = fn.__doc__
        validate.__wrapped__ = fn  # type: ignore[attr-defined]
        # what the policy can answer: twinstack's harness asks it about these types only
        validate.resource_types = frozenset(types)  # type: ignore[attr-defined]
        return validate

    return wrap


ANALYZED_TYPES: dict[str, frozenset[str]] = {}
"""Resource policy name → the resource types it answers, for every policy built with
:func:`resource_policy` from a :func:`for_types` validation."""


def resource_policy(**kwargs: Any) -> Any:
    """A ``ResourceValidationPolicy`` (same arguments) whose types are recorded in
    :data:`ANALYZED_TYPES` when its validation is type-filtered."""
    from pulumi_policy import ResourceValidationPolicy

    policy = ResourceValidationPolicy(**kwargs)
    types = getattr(kwargs.get("validate"), "resource_types", None)
    if types is not None:  # (Analyze only: a remediation is asked about every resource)
        ANALYZED_TYPES[policy.name] = types
    return policy


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with libyaml's parser when there is one (raises :data:`YAMLError`)."""
    return yaml.load(text, Loader=_SafeLoader)


@functools.lru_cache(maxsize=16)
def load_yaml_shared(text: str) -> Any:
    """:func:`load_yaml`, memoised for rules that read one document more than once (a VM's
    user-data: runtime parity's facts and its secret declarations). The result is shared:
    read it, never change it."""
    return load_yaml(text)


def config(args: Any, key: str, default: Any) -> Any:
    """A policy config value (the engine fills in schema defaults; this covers direct calls)."""
    value = args.get_config().get(key)
    return default if value is None else value


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for wildcards and anything else."""
    address = address.strip().strip("[]")
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.split("/")[0]).is_loopback
    except ValueError:
        return False


def normpath(path: str) -> str:
    """Absolute, normalised POSIX path (``//etc/./x/..`` -> ``/etc``)."""
    return posixpath.normpath("/" + path.strip().lstrip("/"))


def under(path: str, prefixes: Iterable[str]) -> str | None:
    """The first prefix that ``path`` equals or lies under (``/`` only matches itself)."""
    path = normpath(path)
    for prefix in prefixes:
        prefix = normpath(prefix)
        if prefix == "/":
            if path == "/":
                return prefix
            continue
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return None


def docker_labels(props: Mapping[str, Any]) -> dict[str, str]:
    """Docker ``labels`` (a list of ``{label, value}``) as a dict."""
    out: dict[str, str] = {}
    for item in props.get("labels") or []:
        key = item.get("label")
        if isinstance(key, str):
            out[key] = str(item.get("value", ""))
    return out


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def never_started(props: Any) -> bool:
    """A container created with ``start: false``: it holds a configuration and files (a
    twinstack service's secrets writer) and runs no process, so rules about a running
    container's behaviour (its root file system's writes, its health) do not apply."""
    start = props.get("start")
    return start is False or (isinstance(start, str) and start.strip().lower() == "false")


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str | bytes, Mapping)):
        return [value]
    return list(value)


def num(value: Any) -> float | None:
    """A number from a wire value (numbers arrive as floats, some as strings: cpus="0.5")."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(str(value).strip())
    except ValueError:
        return None


# ----------------------------------------------------------- shared by several rule modules


def secret_looking_key(key: str) -> bool:
    """Whether an environment variable's *name* looks like a secret.

    The heuristic is docker-no-env-secrets' (``container.SECRET_KEY_RE``), so a service is
    judged the same in both runtimes. Imported on use: ``container`` imports this module.
    """
    from twinstack_rules.container import SECRET_KEY_RE

    return bool(SECRET_KEY_RE.search(key))


def credential_looking_value(value: str) -> bool:
    """Whether a value looks like a credential (``container.SECRET_VALUE_RES``: private
    keys, AWS/GitHub/Slack tokens), whatever its variable is called."""
    from twinstack_rules.container import SECRET_VALUE_RES

    return any(rx.search(value) for rx in SECRET_VALUE_RES)


SECRETS_DIR = "/run/secrets"
"""Where twinstack's containers read their secrets: ``/run/secrets/<ENV>`` on a read-only
volume, named by ``<ENV>_FILE`` in the environment (``components.service``)."""


SECRETS_LOADER = "/usr/local/lib/twinstack/secrets-env"
"""The entrypoint of twinstack's built images with secrets: exports each ``<ENV>`` from its
file, then runs its arguments (``components.renderers.SECRETS_LOADER_SCRIPT``)."""


def secret_file_env(key: str, value: str) -> str | None:
    """The variable a ``<ENV>_FILE=/run/secrets/<ENV>`` entry stands for (``<ENV>``), else
    ``None``."""
    if key.endswith("_FILE") and len(key) > 5 and value == f"{SECRETS_DIR}/{key[:-5]}":
        return key[:-5]
    return None


SECRET_PLACEHOLDER_RE = re.compile(r"\[secret:[^\]\s]+\]")
"""The offline plan's stand-in for a Pulumi secret value (``renderers.secret_placeholders``
and ``twinstack.plan``): a value containing one was filled from a secret."""


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN_VALUE: Any = _Unknown()
"""What :func:`peek` returns for a value that is unknown during preview."""


def peek(props: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``props.get(key, default)``, but :data:`UNKNOWN_VALUE` instead of raising when the
    value is unknown during preview.

    Only for references a rule can resolve another way, such as the id of a resource still
    to be created (unknown in every preview; the dependency URNs say the same thing). Every
    other value is read normally, so that the SDK reports its "can't run policy" advisory.
    """
    from pulumi_policy.proxy import UnknownValueError

    try:
        return props.get(key, default)
    except UnknownValueError:
        return UNKNOWN_VALUE
