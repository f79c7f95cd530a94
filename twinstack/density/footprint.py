"""Per-instance footprints from recorded resource inputs, keyed by provider type token.

One reader for three shapes of the same data:

* the offline plan (``twinstack plan --format json``: ``{"resources": [...]}``),
* ``pulumi stack export`` (``{"version": 3, "deployment": {"resources": [...]}}``, with
  ``inputs`` and ``outputs`` per resource and secrets as ciphertext envelopes),
* a bare list of resource dicts, including the shape a policy pack sees
  (``{"type"|"resource_type", "urn", "name", "parent", "inputs"|"props"}``).

Instances are mapped to services by their labels (containers) or description facts
(domains) first, and by walking the parent URN chain up to the ``twinstack:service:Service``
component when those are missing (hand-written or older stacks).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from components.cost import Accelerator
from twinstack.errors import TwinstackError
from twinstack.wire import SIG_KEY, UNKNOWN

Runtime = Literal["vm", "container"]

SECRET_SIG = SIG_KEY  # presence of the special-object key marks a secret envelope
GIB = 1024**3

DOMAIN = "libvirt:index/domain:Domain"
LV_VOLUME = "libvirt:index/volume:Volume"
LV_POOL = "libvirt:index/pool:Pool"
CLOUD_INIT = "libvirt:index/cloudInitDisk:CloudInitDisk"
CONTAINER = "docker:index/container:Container"
DK_VOLUME = "docker:index/volume:Volume"
DK_IMAGE = "docker:index/image:Image"
DK_REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
SERVICE_COMPONENT = "twinstack:service:Service"

_REPLICA_RE = re.compile(r"-(\d+)$")


class FootprintError(TwinstackError):
    """The document is not a plan, a stack export or a list of resources."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource record, normalized from any of the accepted shapes."""

    type: str
    urn: str
    name: str
    parent: str | None
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    id: str | None
    provider: str | None

    def get(self, key: str) -> Any:
        """Input ``key`` (outputs as fallback), with secrets and unknowns as ``None``."""
        value = plain(self.inputs.get(key))
        if value is None:
            value = plain(self.outputs.get(key))
        return value


@dataclass(frozen=True, slots=True)
class Instance:
    """One VM or container as realized, plus the declared size it was made from."""

    name: str
    urn: str
    service: str
    runtime: Runtime
    replica: int | None
    host: str
    vcpus: float
    """Realized CPU: domain vCPUs, or container CPU quota (0 = unlimited)."""
    memory_mib: float
    """Realized memory: guest RAM, or the container's limit (0 = unlimited)."""
    disk_gib: float
    """Realized per-instance disk: root clone + data volumes (VM); 0 for containers (their
    disk is the declared budget)."""
    declared_vcpus: float | None = None
    declared_memory_mib: float | None = None
    declared_disk_gib: float | None = None
    image: str | None = None
    """Shared image (VM base image source, container image reference), one copy per host."""
    accelerator: Accelerator | None = None
    log_cap_gib: float | None = None
    """Container log bound from ``logDriver``/``logOpts``; ``None`` when unbounded."""


@dataclass(frozen=True)
class Footprint:
    """What one plan or stack export deploys, instance by instance."""

    source: str
    stack: str | None
    instances: tuple[Instance, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def runtimes(self) -> list[str]:
        return sorted({i.runtime for i in self.instances})

    @property
    def services(self) -> list[str]:
        return sorted({i.service for i in self.instances})

    def only(self, runtime: str) -> Footprint:
        """The instances of one runtime."""
        return self.as_runtime(runtime, frozenset(), f"{self.source} ({runtime})")

    def as_runtime(self, runtime: str, pinned: frozenset[str], source: str) -> Footprint:
        """What the stack deploys with ``runtime`` as its flag, from a ``both`` plan: the
        instances of that runtime, plus every instance of the services that pin their
        own ``runtime`` (they do not follow the flag)."""
        return Footprint(
            source,
            self.stack,
            tuple(i for i in self.instances if i.runtime == runtime or i.service in pinned),
            self.warnings,
        )


# ------------------------------------------------------------------ value helpers


def plain(value: Any) -> Any:
    """A wire value with secrets and unknowns turned into ``None``."""
    if isinstance(value, Mapping) and SECRET_SIG in value:
        return None
    if value == UNKNOWN:
        return None
    return value


def _num(value: Any) -> float | None:
    value = plain(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_SIZE_MULT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _size_bytes(value: Any) -> float | None:
    """Docker-style size (``10m``, ``1g``; 1024-based like go-units' RAMInBytes)."""
    value = plain(value)
    if not isinstance(value, str):
        return _num(value)
    m = _SIZE_RE.match(value)
    if m is None:
        return None
    return float(m.group(1)) * _SIZE_MULT[m.group(2).lower()]


def _labels(value: Any) -> dict[str, str]:
    """Docker labels as a dict, from the wire list ``[{label, value}]`` or a dict."""
    value = plain(value)
    out: dict[str, str] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            if plain(v) is not None:
                out[str(k)] = str(plain(v))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping) and plain(item.get("label")) is not None:
                v = plain(item.get("value"))
                if v is not None:
                    out[str(item["label"])] = str(v)
    return out


def _name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _stack_of(urn: str) -> str | None:
    if urn.startswith("urn:pulumi:"):
        return urn[len("urn:pulumi:") :].split("::", 1)[0]
    return None


def _replica_of(name: str) -> int | None:
    m = _REPLICA_RE.search(name)
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------- normalization


def resources_of(doc: Any, source: str = "<document>") -> list[Resource]:
    """Resource records of a plan, a stack export, or a list of resource dicts."""
    raw: Any
    if isinstance(doc, Mapping) and "deployment" in doc:
        dep = doc["deployment"]
        raw = dep.get("resources") if isinstance(dep, Mapping) else None
        if raw is None:
            raw = []  # a stack that was never deployed exports no resources
    elif isinstance(doc, Mapping) and "resources" in doc:
        raw = doc["resources"]
    elif isinstance(doc, list):
        raw = doc
    else:
        raise FootprintError(
            f"{source}: not a twinstack plan (`resources`), a `pulumi stack export` "
            "document (`deployment.resources`) or a list of resources"
        )
    if not isinstance(raw, list):
        raise FootprintError(f"{source}: `resources` must be a list")
    out: list[Resource] = []
    for i, rec in enumerate(raw):
        if not isinstance(rec, Mapping):
            raise FootprintError(f"{source}: resources[{i}] is not an object")
        rtype = rec.get("type", rec.get("resource_type"))
        urn = rec.get("urn") or ""
        if not isinstance(rtype, str):
            raise FootprintError(f"{source}: resources[{i}] has no `type`")
        inputs = rec.get("inputs", rec.get("props")) or {}
        outputs = rec.get("outputs") or {}
        if not isinstance(inputs, Mapping) or not isinstance(outputs, Mapping):
            raise FootprintError(f"{source}: resources[{i}] inputs/outputs must be objects")
        name = rec.get("name") or (_name_of(urn) if urn else f"resource-{i}")
        rid = rec.get("id") or plain(outputs.get("id"))
        out.append(
            Resource(
                type=rtype,
                urn=str(urn),
                name=str(name),
                parent=rec.get("parent") or None,
                inputs=inputs,
                outputs=outputs,
                id=str(rid) if isinstance(rid, str) and rid else None,
                provider=rec.get("provider") or None,
            )
        )
    return out


class _Index:
    """Find a resource by the id another resource references (``volumeId``, ``image``)."""

    def __init__(self, resources: Iterable[Resource], keys: Iterable[str]) -> None:
        self.by_key: dict[str, Resource] = {}
        self.by_name: dict[str, Resource] = {}
        for r in resources:
            for k in (r.id, r.urn, f"{r.name}_id", r.name):
                if k:
                    self.by_key.setdefault(k, r)
            for key in keys:
                v = r.get(key)
                if isinstance(v, str) and v:
                    self.by_key.setdefault(v, r)
                    self.by_name.setdefault(v, r)

    def find(self, ref: Any) -> Resource | None:
        ref = plain(ref)
        if not isinstance(ref, str) or not ref:
            return None
        if ref in self.by_key:
            return self.by_key[ref]
        # libvirt volume ids are paths ending in the volume's name
        tail = ref.rsplit("/", 1)[-1]
        return self.by_name.get(tail)


# ---------------------------------------------------------------------- reading


def read_footprint(doc: Any, source: str = "<document>") -> Footprint:
    """Instances (VMs and containers) of a plan, stack export or list of resources."""
    resources = resources_of(doc, source)
    by_urn = {r.urn: r for r in resources if r.urn}
    warnings: list[str] = []
    volumes = _Index((r for r in resources if r.type == LV_VOLUME), ("name",))
    images = _Index(
        (r for r in resources if r.type in (DK_IMAGE, DK_REMOTE_IMAGE)),
        ("imageName", "name", "imageId", "repoDigest"),
    )
    stack: str | None = None
    instances: list[Instance] = []
    for r in resources:
        if stack is None and r.urn:
            stack = _stack_of(r.urn)
        if r.type == DOMAIN:
            instances.append(_domain(r, by_urn, volumes, warnings))
        elif r.type == CONTAINER and r.inputs.get("start") is not False:
            # a container created and never started (a service's secrets writer) runs
            # nothing and holds nothing of the host
            instances.append(_container(r, by_urn, images, warnings))
    instances.sort(key=lambda i: (i.service, i.runtime, i.replica or 0, i.name))
    return Footprint(source, stack, tuple(instances), tuple(warnings))


def _service_from_parents(r: Resource, by_urn: Mapping[str, Resource]) -> str | None:
    seen: set[str] = set()
    cur = r.parent
    while cur and cur not in seen:
        seen.add(cur)
        p = by_urn.get(cur)
        ptype = p.type if p is not None else cur.rsplit("::", 1)[0].rsplit("$", 1)[-1]
        if ptype == SERVICE_COMPONENT:
            return p.name if p is not None else _name_of(cur)
        if p is None:
            return None
        cur = p.parent
    return None


def _service(
    r: Resource, facts: Mapping[str, Any], by_urn: Mapping[str, Resource], warnings: list[str]
) -> str:
    svc = facts.get("service")
    if isinstance(svc, str) and svc:
        return svc
    found = _service_from_parents(r, by_urn)
    if found is not None:
        return found
    warnings.append(f"{r.name}: no service label or Service parent; grouped as its own service")
    m = _REPLICA_RE.search(r.name)
    return r.name[: m.start()] if m else r.name


def _int(value: Any) -> int | None:
    n = _num(value)
    return int(n) if n is not None and n == int(n) else None


def _domain(
    r: Resource, by_urn: Mapping[str, Resource], volumes: _Index, warnings: list[str]
) -> Instance:
    facts: Mapping[str, Any] = {}
    desc = r.get("description")
    if isinstance(desc, str) and desc.strip().startswith("{"):
        try:
            parsed = json.loads(desc)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, Mapping) and isinstance(parsed.get("twinstack"), Mapping):
            facts = parsed["twinstack"]
    # libvirt provider defaults: 512 MiB, 1 vCPU
    memory = _num(r.get("memory"))
    vcpu = _num(r.get("vcpu"))
    if memory is None:
        memory = 512.0
        warnings.append(f"{r.name}: memory not known; libvirt's default 512 MiB assumed")
    if vcpu is None:
        vcpu = 1.0
    disk_bytes = 0.0
    image: str | None = None
    disks = r.get("disks") or []
    for d in disks if isinstance(disks, list) else []:
        if not isinstance(d, Mapping):
            continue
        vol = volumes.find(d.get("volumeId"))
        if vol is None:
            continue
        size = _num(vol.get("size")) or 0.0
        # exports carry empty strings for unset optional outputs, hence `or None`
        base_ref = vol.get("baseVolumeId") or vol.get("baseVolumeName") or None
        if base_ref is not None or vol.get("source"):
            base = volumes.find(base_ref) if base_ref is not None else vol
            if base is not None:
                image = str(base.get("source") or base.get("name") or base.name)
            else:
                image = str(base_ref)
        disk_bytes += size
    dtype = r.get("type")
    acc: Accelerator | None = (
        "kvm" if dtype == "kvm" else "tcg" if dtype in ("qemu", "tcg") else None
    )
    replica = _int(facts.get("replica"))
    return Instance(
        name=r.name,
        urn=r.urn,
        service=_service(r, facts, by_urn, warnings),
        runtime="vm",
        replica=replica if replica is not None else _replica_of(r.name),
        host=str(facts.get("host") or ""),
        vcpus=vcpu,
        memory_mib=memory,
        disk_gib=disk_bytes / GIB,
        declared_vcpus=_num(facts.get("vcpus")),
        declared_memory_mib=_num(facts.get("memoryMib")),
        declared_disk_gib=_num(facts.get("diskGib")),
        image=image,
        accelerator=acc,
    )


def _log_cap(r: Resource) -> float | None:
    driver = r.get("logDriver") or "json-file"
    opts = r.get("logOpts") or {}
    if driver == "none":
        return 0.0
    if driver not in ("json-file", "local") or not isinstance(opts, Mapping):
        return None
    size = _size_bytes(opts.get("max-size"))
    files = _num(opts.get("max-file"))
    if driver == "local":
        size = size if size is not None else 20 * 1024**2
        files = files if files is not None else 5
    if size is None:
        return None  # json-file without max-size grows without bound
    return size * (files if files is not None else 1) / GIB


def _container(
    r: Resource, by_urn: Mapping[str, Resource], images: _Index, warnings: list[str]
) -> Instance:
    labels = _labels(r.get("labels"))
    facts = {k.removeprefix("twinstack."): v for k, v in labels.items()}
    memory = _num(r.get("memory")) or 0.0
    cpus = _num(r.get("cpus")) or 0.0
    declared_mem = _num(facts.get("memory-mib"))
    declared_cpu = _num(facts.get("vcpus"))
    if memory == 0.0 and declared_mem is None:
        warnings.append(f"{r.name}: container has no memory limit; only overheads counted")
    ref = r.get("image")
    img = images.find(ref)
    image: str | None = None
    if img is not None:
        image = str(img.get("imageName") or img.get("name") or img.name)
    elif isinstance(ref, str) and ref:
        image = ref
    service = _service(r, facts, by_urn, warnings)
    replica = _int(facts.get("replica"))
    return Instance(
        name=r.name,
        urn=r.urn,
        service=service,
        runtime="container",
        replica=replica if replica is not None else _replica_of(r.name),
        host=str(facts.get("host") or ""),
        vcpus=cpus,
        memory_mib=memory,
        disk_gib=0.0,
        declared_vcpus=declared_cpu,
        declared_memory_mib=declared_mem,
        declared_disk_gib=_num(facts.get("disk-gib")),
        image=image if image is not None else f"{service}:<unknown image>",
        log_cap_gib=_log_cap(r),
    )


def read_json_file(path: str) -> Any:
    """Load a JSON document, turning I/O and syntax problems into one-line errors."""
    try:
        with open(path, encoding="utf-8") as fh:
            return cast(Any, json.load(fh))
    except FileNotFoundError:
        raise FootprintError(f"{path}: no such file") from None
    except OSError as exc:
        raise FootprintError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise FootprintError(
            f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"
        ) from None
