"""Turn recorded plan resources into the analyzer protocol's messages.

This mirrors what the Pulumi engine sends a policy pack (``pkg/resource/plugin/
analyzer_plugin.go``): properties are marshalled with ``KeepUnknowns`` and ``KeepSecrets``
(so the unknown sentinel strings and the secret envelope reach the pack unchanged), keys
starting with ``__`` are skipped (``SkipInternalKeys``), the resource options carry
``protect`` / ``deleteBeforeReplace`` (+ "defined") / aliases / parent, and the provider
resource travels with its own inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import struct_pb2  # type: ignore[import-untyped, unused-ignore]
from pulumi.runtime.proto import analyzer_pb2


def _skip_internal(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            str(k): _skip_internal(v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.startswith("__"))
        }
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_skip_internal(v) for v in value]
    return value


def to_struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    """Wire-format properties as a protobuf Struct (numbers become doubles, as in the engine)."""
    struct = struct_pb2.Struct()
    struct.update(_skip_internal(props))
    return struct


def provider_urn(reference: str | None) -> str | None:
    """A provider reference is ``<urn>::<id>``; return the URN part."""
    if not reference:
        return None
    urn, sep, _id = reference.rpartition("::")
    return urn if sep else reference


def display_type(type_token: str) -> str:
    """``docker:index/container:Container`` -> ``docker:index:Container`` (engine display)."""
    parts = type_token.split(":")
    if len(parts) != 3 or not parts[2]:
        return type_token
    pkg, module, name = parts
    if "/" not in module:
        return type_token
    head, _, file = module.rpartition("/")
    if file != name[:1].lower() + name[1:]:
        return type_token
    return f"{pkg}:{head}:{name}"


def _options(res: Mapping[str, Any]) -> analyzer_pb2.AnalyzerResourceOptions:
    dbr = res.get("deleteBeforeReplace")
    timeouts = res.get("customTimeouts") or {}
    return analyzer_pb2.AnalyzerResourceOptions(
        protect=bool(res.get("protect", False)),
        ignoreChanges=list(res.get("ignoreChanges") or []),
        deleteBeforeReplace=bool(dbr),
        deleteBeforeReplaceDefined=dbr is not None,
        additionalSecretOutputs=list(res.get("additionalSecretOutputs") or []),
        aliases=[a for a in (res.get("aliases") or []) if isinstance(a, str)],
        customTimeouts=analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(
            create=float(timeouts.get("create", 0) or 0),
            update=float(timeouts.get("update", 0) or 0),
            delete=float(timeouts.get("delete", 0) or 0),
        ),
        parent=str(res.get("parent") or ""),
    )


def _provider(
    res: Mapping[str, Any],
    by_urn: Mapping[str, Mapping[str, Any]],
    cache: dict[str, analyzer_pb2.AnalyzerProviderResource] | None = None,
) -> analyzer_pb2.AnalyzerProviderResource | None:
    urn = provider_urn(res.get("provider"))
    if urn is None or urn not in by_urn:
        return None
    if cache is not None and urn in cache:
        return cache[urn]
    prov = by_urn[urn]
    message = analyzer_pb2.AnalyzerProviderResource(
        type=str(prov.get("type", "")),
        properties=to_struct(prov.get("inputs") or {}),
        urn=urn,
        name=str(prov.get("name", "")),
    )
    if cache is not None:
        cache[urn] = message
    return message


def analyze_request(
    res: Mapping[str, Any],
    by_urn: Mapping[str, Mapping[str, Any]],
    providers: dict[str, analyzer_pb2.AnalyzerProviderResource] | None = None,
) -> analyzer_pb2.AnalyzeRequest:
    """The ``Analyze`` / ``Remediate`` request for one recorded resource.

    ``providers`` caches the provider messages by URN (many resources share a provider).
    """
    req = analyzer_pb2.AnalyzeRequest(
        type=str(res["type"]),
        properties=to_struct(res.get("inputs") or {}),
        urn=str(res["urn"]),
        name=str(res["name"]),
        options=_options(res),
    )
    provider = _provider(res, by_urn, providers)
    if provider is not None:
        req.provider.CopyFrom(provider)
    return req


def analyzer_resource(
    res: Mapping[str, Any],
    by_urn: Mapping[str, Mapping[str, Any]],
    providers: dict[str, analyzer_pb2.AnalyzerProviderResource] | None = None,
) -> analyzer_pb2.AnalyzerResource:
    """One entry of the ``AnalyzeStack`` request.

    The engine sends each resource's final state; in a preview that is the inputs plus
    unknowns for computed outputs, which is what the recorded plan holds.
    """
    msg = analyzer_pb2.AnalyzerResource(
        type=str(res["type"]),
        properties=to_struct(res.get("inputs") or {}),
        urn=str(res["urn"]),
        name=str(res["name"]),
        options=_options(res),
        parent=str(res.get("parent") or ""),
        dependencies=[d for d in (res.get("dependencies") or []) if isinstance(d, str)],
    )
    provider = _provider(res, by_urn, providers)
    if provider is not None:
        msg.provider.CopyFrom(provider)
    return msg


def stack_resource(
    request: analyzer_pb2.AnalyzeRequest, res: Mapping[str, Any]
) -> analyzer_pb2.AnalyzerResource:
    """:func:`analyzer_resource` of ``res`` from its :func:`analyze_request` (the same
    properties, options and provider, copied rather than built again)."""
    msg = analyzer_pb2.AnalyzerResource(
        type=request.type,
        urn=request.urn,
        name=request.name,
        parent=str(res.get("parent") or ""),
        dependencies=[d for d in (res.get("dependencies") or []) if isinstance(d, str)],
    )
    msg.properties.CopyFrom(request.properties)
    msg.options.CopyFrom(request.options)
    if request.HasField("provider"):
        msg.provider.CopyFrom(request.provider)
    return msg


def struct_to_python(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Protobuf Struct back to plain Python (for remediated properties)."""
    from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]

    result: dict[str, Any] = json_format.MessageToDict(struct)
    return result
