"""Reading a recorded plan (docs/plan-format.md): records by type, ids, plain values."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from twinstack.errors import TwinstackError
from twinstack.wire import SIG_KEY as SECRET_SIG_KEY
from twinstack.wire import UNKNOWN

DOCKER_NETWORK = "docker:index/network:Network"
DOCKER_VOLUME = "docker:index/volume:Volume"
DOCKER_REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
DOCKER_CONTAINER = "docker:index/container:Container"
LIBVIRT_NETWORK = "libvirt:index/network:Network"
LIBVIRT_POOL = "libvirt:index/pool:Pool"
LIBVIRT_VOLUME = "libvirt:index/volume:Volume"
LIBVIRT_CLOUDINIT = "libvirt:index/cloudInitDisk:CloudInitDisk"
LIBVIRT_DOMAIN = "libvirt:index/domain:Domain"


def plain(value: Any) -> Any:
    """Unwrap secret envelopes (the harness needs values); refuse unknowns."""
    if isinstance(value, dict):
        if SECRET_SIG_KEY in value:
            return plain(value.get("value"))
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if value == UNKNOWN:
        raise TwinstackError(
            "the plan holds unknown values (planned with --preview); apply a plan made "
            "without --preview"
        )
    return value


@dataclass(frozen=True)
class Record:
    """One recorded custom resource."""

    type: str
    name: str
    inputs: dict[str, Any]
    urn: str

    def digest(self) -> str:
        """Hash of the inputs: a changed input means replace (the harness's diff)."""
        blob = json.dumps(self.inputs, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class Plan:
    """A plan document with lookups the appliers need."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("resources"), list):
            raise TwinstackError("not a twinstack plan (no `resources` list)")
        self.doc = doc
        self.stack: str = str(doc.get("stack", ""))
        self.records: list[Record] = []
        for raw in doc["resources"]:
            if not raw.get("custom"):
                continue
            rec = Record(
                type=raw["type"],
                name=raw["name"],
                inputs=plain(raw.get("inputs", {})),
                urn=raw.get("urn", ""),
            )
            self.records.append(rec)
        self._ids: dict[str, Record] = {}
        for raw, rec in zip(
            (r for r in doc["resources"] if r.get("custom")), self.records, strict=True
        ):
            if raw.get("id"):  # plans record the mocks' ids; exports the real ones
                self._ids[str(raw["id"])] = rec

    def of_type(self, token: str) -> Iterator[Record]:
        return (r for r in self.records if r.type == token)

    def by_id(self, ref: str, token: str | None = None) -> Record:
        rec = self._ids.get(ref)
        if rec is None or (token is not None and rec.type != token):
            raise TwinstackError(f"plan of stack {self.stack!r}: no {token or 'resource'} {ref!r}")
        return rec

    def pool_path(self, pool_name: str) -> str:
        for rec in self.of_type(LIBVIRT_POOL):
            if rec.inputs.get("name") == pool_name:
                return str(rec.inputs["target"]["path"])
        raise TwinstackError(f"plan of stack {self.stack!r}: no libvirt pool {pool_name!r}")


def labels_of(inputs: Mapping[str, Any]) -> dict[str, str]:
    """Docker's wire-format labels (a list of {label, value}) as a dict."""
    return {str(x["label"]): str(x["value"]) for x in inputs.get("labels", [])}
