"""Decode each resource once per analyzer call, not once per policy.

pulumi-policy's Python analyzer (1.21.0, ``pulumi_policy/policy.py``) turns a resource's
properties into Python inside its loop over the pack's policies: for every policy it runs
``json_format.MessageToDict``, ``deserialize_properties`` and ``unknown_checking_proxy``
(which walks the whole value) on the same message again. ``Analyze`` therefore decodes a
container 19 times in twinstack-container-security, and ``AnalyzeStack`` decodes the whole
stack once per stack policy. At 1,000 services that decoding was most of a pack's time, under
``twinstack policy`` and under ``pulumi preview --policy-pack`` alike.

:func:`install` wraps the analyzer's ``Analyze`` and ``AnalyzeStack`` so that, for the length of
one call, those three steps are memoised by message identity: every policy of the call sees
the same decoded, proxied value, built once. The protocol, the order of policies, their
arguments and their diagnostics are unchanged; ``Remediate`` (whose policies may change the
properties they are given) is left as it is. Validation policies must not change
``args.props`` — twinstack's do not, and pulumi-policy gives them no way to hand a change back.

Packs call :func:`install` before constructing their ``PolicyPack``. If the installed
pulumi-policy does not have the names this relies on, nothing is changed.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_local = threading.local()
_installed = False


def _memo() -> dict[tuple[str, int], tuple[Any, Any]] | None:
    memo: dict[tuple[str, int], tuple[Any, Any]] | None = getattr(_local, "memo", None)
    return memo


def _once(kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(value)`` memoised by ``value``'s identity while a wrapped call runs on this
    thread (the memo holds ``value`` itself, so an identity is never reused meanwhile)."""

    @functools.wraps(fn)
    def call(value: Any, *args: Any, **kwargs: Any) -> Any:
        memo = _memo()
        if memo is None or args or kwargs:
            return fn(value, *args, **kwargs)
        key = (kind, id(value))
        hit = memo.get(key)
        if hit is not None and hit[0] is value:
            return hit[1]
        result = fn(value)
        memo[key] = (value, result)
        return result

    return call


def _per_call(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Any, request: Any, context: Any) -> Any:
        _local.memo = {}
        try:
            return method(self, request, context)
        finally:
            _local.memo = None

    return call


class _JsonFormat:
    """Stands in for ``google.protobuf.json_format`` inside ``pulumi_policy.policy``."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.MessageToDict = _once("dict", module.MessageToDict)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def install() -> bool:
    """Patch pulumi-policy's analyzer in this process; True if it is (now) patched."""
    global _installed
    if _installed:
        return True
    try:
        from pulumi_policy import policy
    except ImportError:
        return False
    servicer = getattr(policy, "_PolicyAnalyzerServicer", None)
    needed = ("json_format", "deserialize_properties", "unknown_checking_proxy")
    if servicer is None or not all(hasattr(policy, n) for n in needed):
        return False
    if not all(callable(getattr(servicer, m, None)) for m in ("Analyze", "AnalyzeStack")):
        return False
    policy.json_format = _JsonFormat(policy.json_format)  # type: ignore[assignment]
    policy.deserialize_properties = _once("props", policy.deserialize_properties)
    policy.unknown_checking_proxy = _once("proxy", policy.unknown_checking_proxy)
    servicer.Analyze = _per_call(servicer.Analyze)
    servicer.AnalyzeStack = _per_call(servicer.AnalyzeStack)
    _installed = True
    return True
