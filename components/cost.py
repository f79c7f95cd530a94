"""Host profiles, price book, overhead figures and budget for ``twinstack diff``.

Plain data, validated like the rest of the stack spec (pydantic v2, ``extra="forbid"``,
frozen, camelCase keys). A stack carries it under the ``twinstack:cost`` config key, or
points at a YAML file with ``twinstack:cost: {file: costs/onprem.yaml}``; the same models
validate a standalone cost file and the calibration JSON that ``twinstack measure`` writes.

Every figure has a default so that a stack without a cost block still gets a diff; the
defaults for hosts and prices are illustrative (a mid-size 2-socket server) and the report
says so. Overhead defaults live with their sources in :mod:`twinstack.density.overhead`;
here an ``overheads`` block only *overrides* them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel

from twinstack.errors import SpecError

Accelerator = Literal["kvm", "tcg"]
"""How a VM's CPU runs: ``kvm`` (hardware virtualization) or ``tcg`` (QEMU emulation;
libvirt domain type ``qemu``)."""

HOURS_PER_MONTH = 730.0
"""8760 h / 12: the month every monthly figure uses."""

COST_KEY = "twinstack:cost"


class _Model(BaseModel):
    """Strict about unknown keys, immutable, camelCase keys, field descriptions as schema."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        validate_default=True,
    )


# ------------------------------------------------------------------------ hosts


class Reserved(_Model):
    """Capacity a host keeps for its own OS, the hypervisor/container daemons and headroom."""

    cores: float = Field(
        2.0, ge=0, description="CPU threads kept for the host (not offered to instances)."
    )
    memory_gib: float = Field(
        8.0,
        ge=0,
        description="Memory in GiB kept for the host kernel, page cache floor, libvirtd/dockerd.",
    )
    disk_gib: float = Field(
        50.0, ge=0, description="Disk in GiB kept for the host OS, logs and free-space headroom."
    )


class HostProfile(_Model):
    """One kind of machine instances are packed onto."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9-]{0,62}$",
        description=(
            "Profile name (lower-case letters, digits, '-'); referenced by ``hostProfile`` and\n"
            "``prices.hosts``."
        ),
    )
    cores: int = Field(
        gt=0, le=4096, description="Schedulable CPU threads (logical CPUs) of the machine."
    )
    memory_gib: float = Field(gt=0, le=65536, description="Installed memory in GiB.")
    disk_gib: float = Field(
        gt=0,
        le=10_000_000,
        description="Usable local disk (the storage pool / Docker data root) in GiB.",
    )
    reserved: Reserved = Field(
        default_factory=lambda: Reserved.model_validate({}),
        description="Capacity kept for the host itself.",
    )
    cpu_overcommit: float = Field(
        4.0,
        gt=0,
        le=64,
        description=(
            "vCPUs (or container CPU quota) offered per physical thread; 1.0 means no overcommit."
        ),
    )
    memory_overcommit: float = Field(
        1.0,
        gt=0,
        le=8,
        description=(
            "Memory offered per GiB installed (after the reserve); above 1.0 relies on KSM/\n"
            "ballooning/swap and is risky."
        ),
    )
    disk_overcommit: float = Field(
        1.0,
        gt=0,
        le=64,
        description=(
            "Provisioned disk per GiB available (thin provisioning); 1.0 counts every clone at\n"
            "its full virtual size."
        ),
    )
    accelerator: Accelerator = Field(
        "kvm",
        description="VM acceleration on this host when a domain does not say (``kvm`` or ``tcg``).",
    )

    @model_validator(mode="after")
    def _reserve_fits(self) -> HostProfile:
        for dim, total, kept in (
            ("cores", self.cores, self.reserved.cores),
            ("memoryGib", self.memory_gib, self.reserved.memory_gib),
            ("diskGib", self.disk_gib, self.reserved.disk_gib),
        ):
            if kept >= total:
                raise ValueError(
                    f"profile {self.name!r}: reserved.{dim} ({kept:g}) must be less than "
                    f"{dim} ({total:g})"
                )
        return self


DEFAULT_PROFILE = HostProfile.model_validate(
    {"name": "standard", "cores": 32, "memoryGib": 256, "diskGib": 2000}
)
"""Illustrative 2-socket server (32 threads, 256 GiB, 2 TB local SSD)."""


# ----------------------------------------------------------------------- prices


class HostPrice(_Model):
    """What one machine of a profile costs to own and run."""

    monthly: float = Field(
        ge=0,
        description=(
            "Amortized cost per month (purchase over its service life, support, rack space)."
        ),
    )
    power_watts: float = Field(
        0.0,
        ge=0,
        description=(
            "Average electrical draw in watts (including its share of cooling, if you count it)."
        ),
    )


COST_FILE_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*\.ya?ml"
"""A cost file: a relative YAML path inside the project (letters, digits, . _ -)."""


class PriceBook(_Model):
    """On-prem prices: whole hosts, power, optional per-resource rates and licences."""

    currency: str = Field(
        "EUR", pattern=r"^[A-Z]{3}$", description="ISO 4217 code every amount is in."
    )
    price_per_kwh: float = Field(0.25, ge=0, description="Electricity price per kWh.")
    hosts: dict[str, HostPrice] = Field(
        default_factory=lambda: {
            "standard": HostPrice.model_validate({"monthly": 250.0, "powerWatts": 300.0})
        },
        description="Price per host profile, keyed by profile name; every profile needs one.",
    )
    per_vcpu_monthly: float = Field(
        0.0, ge=0, description="Optional charge per allocated vCPU (after overheads) per month."
    )
    per_memory_gib_monthly: float = Field(
        0.0,
        ge=0,
        description="Optional charge per allocated GiB of memory (after overheads) per month.",
    )
    per_disk_gib_monthly: float = Field(
        0.0, ge=0, description="Optional charge per allocated GiB of disk per month."
    )
    vm_licence_monthly: float = Field(
        0.0,
        ge=0,
        description="Licence per VM per month (guest OS subscription, hypervisor per-VM fees).",
    )


# -------------------------------------------------------------------- overheads


class VmmOverride(_Model):
    """Hypervisor-process figures for one accelerator (unset = built-in default)."""

    memory_mib: float | None = Field(
        None, ge=0, description="Host memory the QEMU process holds beyond the guest's RAM, in MiB."
    )
    cpu_cores: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Host CPU the QEMU process's own threads take per VM (emulator, I/O), in cores."
        ),
    )
    startup_seconds: float | None = Field(
        None, ge=0, description="Seconds from create to ready (cloud-init final)."
    )


class VmOverrides(_Model):
    """VM overhead figures (unset = built-in default)."""

    guest_os_memory_mib: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Memory the guest OS itself uses (kernel, systemd, agents), added to the service's\n"
            "declared memory because the guest must hold both."
        ),
    )
    guest_os_disk_gib: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Disk the guest OS writes into its overlay (journal, package state, cloud-init)."
        ),
    )
    cloud_init_disk_mib: float | None = Field(
        None, ge=0, description="Size of the per-VM cloud-init ISO."
    )
    base_image_gib: float | None = Field(
        default=None,
        ge=0,
        description="On-disk size of a base image, counted once per host that runs a clone of it.",
    )
    images: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Base-image sizes in GiB by image source (URL or path), overriding ``baseImageGib``."
        ),
    )
    kvm: VmmOverride = Field(
        default_factory=lambda: VmmOverride.model_validate({}), description="QEMU under KVM."
    )
    tcg: VmmOverride = Field(
        default_factory=lambda: VmmOverride.model_validate({}),
        description="QEMU under TCG (software emulation).",
    )


class ContainerOverrides(_Model):
    """Container overhead figures (unset = built-in default)."""

    shim_memory_mib: float | None = Field(
        default=None,
        ge=0,
        description="Memory of the per-container runtime shim (containerd-shim-runc-v2).",
    )
    cpu_cores: float | None = Field(
        None, ge=0, description="Host CPU the runtime takes per container, in cores."
    )
    log_gib: float | None = Field(
        None, ge=0, description="Disk for the json-file log when ``logOpts`` do not bound it."
    )
    image_gib: float | None = Field(
        None, ge=0, description="Size of an image's layers, counted once per host that runs it."
    )
    images: dict[str, float] = Field(
        default_factory=dict,
        description="Image sizes in GiB by image reference, overriding ``imageGib``.",
    )
    startup_seconds: float | None = Field(None, ge=0, description="Seconds from create to running.")


class Overheads(_Model):
    """Overrides of the built-in overhead figures."""

    vm: VmOverrides = Field(
        default_factory=lambda: VmOverrides.model_validate({}), description="VM figures."
    )
    container: ContainerOverrides = Field(
        default_factory=lambda: ContainerOverrides.model_validate({}),
        description="Container figures.",
    )


class Calibration(_Model):
    """The calibration file ``twinstack measure`` writes (JSON); its figures override the
    built-in defaults and the stack's ``overheads`` and are reported as measured."""

    version: Literal[1] = Field(1, description="Schema version of this file.")
    measured_at: datetime | None = Field(
        None, description="When the figures were measured (ISO 8601)."
    )
    machine: str | None = Field(
        None, description="Which machine was measured (hostname, CPU model)."
    )
    tool: str | None = Field(None, description="What measured them (``twinstack measure 0.1.0``).")
    overheads: Overheads = Field(
        default_factory=lambda: Overheads.model_validate({}),
        description="The measured figures; leave out what was not measured.",
    )
    samples: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "How many measurements back each figure, keyed by figure name\n(``vm.tcg.memoryMib``)."
        ),
    )
    notes: str | None = Field(None, description="Free text: method, caveats.")


# ----------------------------------------------------------------------- budget


class Budget(_Model):
    """Limits the budget policy enforces, read by the same model as ``twinstack diff``."""

    max_monthly_cost: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Highest acceptable monthly cost of the stack as deployed (hosts needed, power,\n"
            "rates, licences)."
        ),
    )
    min_density_ratio: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description=(
            "Lowest acceptable ratio, per VM-realized service, of its instances per host to the\n"
            "instances per host it would get as a container (1.0 = as dense as a container)."
        ),
    )


# --------------------------------------------------------------------- the spec


class CostSpec(_Model):
    """Host profiles, price book, overhead overrides and budget for ``twinstack diff``."""

    file: Path | None = Field(
        default=None,
        description=(
            "A YAML file holding (part of) this block, validated the same way; keys written next\n"
            "to ``file`` override the file's. A relative path resolves against the project\n"
            "directory (where Pulumi.yaml is)."
        ),
    )
    profiles: list[HostProfile] = Field(
        default_factory=lambda: [DEFAULT_PROFILE],
        min_length=1,
        description="Host profiles instances are packed onto.",
    )
    default_profile: str | None = Field(
        default=None,
        description="Profile of hosts not listed in ``hostProfile``; default the first profile.",
    )
    host_profile: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Profile of each stack host (a ``hosts`` key): each host names a pool of identical\n"
            "machines of that profile."
        ),
    )
    prices: PriceBook = Field(
        default_factory=lambda: PriceBook.model_validate({}), description="Prices."
    )
    overheads: Overheads = Field(
        default_factory=lambda: Overheads.model_validate({}),
        description=(
            "Overrides of the built-in overhead figures (a calibration file wins over these)."
        ),
    )
    calibration_file: Path | None = Field(
        default=None,
        description=(
            "Calibration JSON written by ``twinstack measure``; its figures are reported as\n"
            "measured."
        ),
    )
    budget: Budget | None = Field(default=None, description="Limits for the budget policy.")

    @model_validator(mode="before")
    @classmethod
    def _include_file(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping) or data.get("file") is None:
            return data
        ref = data["file"]
        if not isinstance(ref, str | Path):
            return data  # the field validator reports the bad type
        ctx = info.context if isinstance(info.context, Mapping) else {}
        base = Path(ctx["base_dir"]) if ctx.get("base_dir") is not None else _project_dir()
        path = Path(ref)
        if path.is_absolute() and path.is_relative_to(base.resolve()):
            path = path.relative_to(base.resolve())  # as merged below: already resolved
        rel = path.as_posix()
        # a stack file may only point at files of its own project: a relative, normalized
        # path (the cost-file grammar), never '..' nor an absolute path
        if (
            path.is_absolute()
            or re.fullmatch(COST_FILE_PATTERN, rel) is None
            or any(part in (".", "..") for part in rel.split("/"))
        ):
            raise ValueError(
                f"file: {str(ref)[:120]!r} is not allowed; allowed: a relative path inside "
                f"the project ({base}) without '..' (pattern {COST_FILE_PATTERN})"
            )
        path = base / path
        if not path.resolve().is_relative_to(base.resolve()):
            raise ValueError(f"file: {str(ref)[:120]!r} leads outside the project ({base})")
        raw = _read_yaml_mapping(path, error=ValueError)
        if "file" in raw:
            raise ValueError(f"{path}: file: a cost file must not reference another file")
        try:
            cls.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(format_error(exc, source=str(path), prefix="")) from None
        merged = {**raw, **{k: v for k, v in data.items() if k != "file"}}
        merged["file"] = str(path)
        return merged

    @model_validator(mode="after")
    def _cross(self) -> CostSpec:
        names = [p.name for p in self.profiles]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"profiles: duplicate profile name(s) {dupes}")
        allowed = ", ".join(names)
        if self.default_profile is not None and self.default_profile not in names:
            raise ValueError(
                f"defaultProfile: {self.default_profile!r} is not a profile; allowed: {allowed}"
            )
        for host, prof in self.host_profile.items():
            if prof not in names:
                raise ValueError(
                    f"hostProfile.{host}: {prof!r} is not a profile; allowed: {allowed}"
                )
        missing = [n for n in names if n not in self.prices.hosts]
        if missing:
            raise ValueError(
                f"prices.hosts: no price for profile(s) {missing}; add e.g. "
                f"`prices: {{hosts: {{{missing[0]}: {{monthly: 250, powerWatts: 300}}}}}}`"
            )
        extra = sorted(set(self.prices.hosts) - set(names))
        if extra:
            raise ValueError(f"prices.hosts: {extra} are not profiles; allowed: {allowed}")
        return self

    def profile(self, name: str) -> HostProfile:
        """The profile called ``name``."""
        return next(p for p in self.profiles if p.name == name)

    def profile_for_host(self, host: str | None) -> HostProfile:
        """The profile of stack host ``host`` (default profile when not mapped)."""
        name = self.host_profile.get(host or "") or self.default_profile or self.profiles[0].name
        return self.profile(name)


# ---------------------------------------------------------------------- loading


def _fmt_loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str] | None:
    cur: Any = model
    skip_key = False
    for part in loc[:-1]:
        if isinstance(part, int) or skip_key:
            skip_key = False
            continue
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            return None
        field = next(
            (f for n, f in cur.model_fields.items() if part in (f.alias, n)),
            None,
        )
        if field is None:
            return None
        skip_key = getattr(field.annotation, "__origin__", None) is dict
        cur = _model_in(field.annotation)
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return sorted(f.alias or n for n, f in cur.model_fields.items())
    return None


def _model_in(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in getattr(tp, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


_STEPS = {"int", "str", "float", "bool", "list", "dict", "function-after", "union"}


def format_error(
    exc: ValidationError,
    *,
    source: str,
    prefix: str = COST_KEY,
    model: type[BaseModel] | None = None,
) -> str:
    """One line naming the file, the key path, the bad value and what is allowed."""
    model = model or CostSpec
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _STEPS))
    path = _fmt_loc(loc)
    key = f"{prefix}.{path}" if prefix and path else (prefix or path)
    where = f"{source}: {key}: " if key else f"{source}: "
    value = err.get("input")
    kind = err["type"]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        what = f"allowed keys here: {', '.join(allowed)}" if allowed else "see docs/density.md"
        return f"{where}unknown key {loc[-1]!r}; {what}"
    if kind == "missing":
        return f"{where}required key is missing"
    if kind == "literal_error":
        return f"{where}{value!r} is not allowed; allowed: {err.get('ctx', {}).get('expected')}"
    if kind == "value_error" and isinstance(value, Mapping):
        return f"{where}{msg}"
    return f"{where}got {value!r}; {msg[:1].lower()}{msg[1:]}"


def _project_dir() -> Path:
    """The nearest directory upward from the CWD holding Pulumi.yaml (else the CWD)."""
    here = Path.cwd()
    return next((d for d in (here, *here.parents) if (d / "Pulumi.yaml").is_file()), here)


def _read_yaml_mapping(path: Path, *, error: type[Exception] = SpecError) -> dict[str, Any]:
    if path.suffix != ".json":
        # a cost file comes with the stack file: read it within the same bounds
        from components.spec import load_yaml_file

        try:
            doc = load_yaml_file(path, "file")
        except SpecError as exc:
            raise error(str(exc)) from None
        if doc is None:
            return {}
        if not isinstance(doc, dict):
            raise error(f"{path}: must be a mapping of keys to values, got {type(doc).__name__}")
        return doc
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "msg", None) or str(exc)
        raise error(f"{path}:{where} not valid JSON: {problem}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise error(f"{path}: must be a mapping of keys to values, got {type(doc).__name__}")
    return doc


def cost_spec_from_config(
    value: Any, *, source: str, base_dir: Path | None = None, prefix: str = COST_KEY
) -> CostSpec:
    """Validate a ``twinstack:cost`` value (``None`` → all defaults).

    Raises :class:`SpecError` naming ``source``, the key path, the bad value and what is
    allowed.
    """
    if value is None:
        return CostSpec.model_validate({})
    ctx = {"base_dir": base_dir} if base_dir is not None else None
    try:
        return CostSpec.model_validate(value, context=ctx)
    except ValidationError as exc:
        raise SpecError(format_error(exc, source=source, prefix=prefix)) from None


def load_cost_file(path: Path) -> CostSpec:
    """Read a cost YAML file: a bare cost block, or a stack file (its ``twinstack:cost``)."""
    doc = _read_yaml_mapping(path)
    if isinstance(doc.get("config"), dict):
        return cost_spec_from_config(doc["config"].get(COST_KEY), source=str(path))
    return cost_spec_from_config(doc, source=str(path), base_dir=path.parent, prefix="")


def load_calibration(path: Path) -> Calibration:
    """Read and validate a calibration JSON file (see docs/density.md for the schema)."""
    doc = _read_yaml_mapping(path)
    try:
        return Calibration.model_validate(doc)
    except ValidationError as exc:
        raise SpecError(format_error(exc, source=str(path), prefix="", model=Calibration)) from None


def calibration_schema() -> dict[str, Any]:
    """JSON Schema of the calibration file."""
    return Calibration.model_json_schema(by_alias=True)


def cost_schema() -> dict[str, Any]:
    """JSON Schema of a ``twinstack:cost`` block / cost file."""
    return CostSpec.model_json_schema(by_alias=True)
