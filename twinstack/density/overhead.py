"""What an instance takes beyond its declared size: the overhead figures and their sources.

Three layers, later wins: the built-in defaults below (each with its source), the stack's
``twinstack:cost.overheads`` block, and a calibration file written by ``twinstack measure``
(reported as *measured*). Every figure the report uses says which layer it came from.

Sources of the defaults
-----------------------
* **Measured on these machines** (the project's CI/dev hosts, 2025):
  a container from a local image starts in ~0.4-1.3 s; a Debian 12 VM with cloud-init
  reaches ``cloud-init status: done`` in ~60 s under TCG, and its qemu process holds
  ~1.1 GiB RSS for a 512 MiB guest. Under TCG QEMU reserves a large translation-block
  cache (its default is 1 GiB for system emulation since QEMU 5.0), which is where the
  ~600 MiB beyond guest RAM goes.
* **Firecracker** (firecracker-microvm/firecracker, SPECIFICATION.md): a VMM can run with
  <= 5 MiB of memory overhead and boot a guest to user space in <= 125 ms. That is the
  floor a minimal KVM VMM reaches; QEMU with a full device model sits above it and a
  Debian userland with cloud-init boots far slower, so our KVM figures are larger.
* **Felter, Ferreira, Rajamony, Rubio (IBM Research, 2015), "An Updated Performance
  Comparison of Virtual Machines and Linux Containers"** (ISPASS 2015): Docker's CPU and
  memory overhead is negligible (equal to native); KVM's CPU overhead is small for
  CPU-bound work and concentrates in I/O paths. Hence zero CPU overhead per container and
  a small per-VM CPU figure for KVM.
* **Assumptions** (not yet measured here; ``twinstack measure`` replaces them): guest OS
  memory/disk, QEMU-under-KVM memory, KVM boot time, shim memory, image sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from components.cost import Accelerator, Calibration, CostSpec, Overheads

_MEASURED = "measured on these machines"
_FELTER = "Felter et al. 2015 (IBM Research): container CPU/memory overhead negligible"


@dataclass(frozen=True, slots=True)
class Default:
    """A built-in figure: value, unit and where it comes from."""

    value: float
    unit: str
    source: str
    measured: bool = False


DEFAULTS: dict[str, Default] = {
    # --- VM ---------------------------------------------------------------------------
    # A guest must hold its own OS next to the service; the declared memory is the
    # service's working set, so the VM gets this on top.
    "vm.guestOsMemoryMib": Default(
        128.0,
        "MiB",
        "assumption: used memory of a freshly booted Debian 12 cloud image "
        "(kernel, systemd, journald, cloud-init leftovers)",
    ),
    "vm.guestOsDiskGib": Default(
        0.5,
        "GiB",
        "assumption: guest writes into its overlay (journal, apt state, cloud-init)",
    ),
    "vm.cloudInitDiskMib": Default(
        1.0, "MiB", "NoCloud ISO holding user-data/meta-data (a few hundred KiB), rounded up"
    ),
    "vm.baseImageGib": Default(
        0.5,
        "GiB",
        "Debian 12 genericcloud qcow2 is ~0.3-0.4 GB on disk (cloud.debian.org), rounded up; "
        "counted once per host",
    ),
    # QEMU under KVM: above Firecracker's <= 5 MiB VMM floor (full device model, I/O
    # buffers, guest page tables) but without TCG's translation cache.
    "vm.kvm.memoryMib": Default(
        100.0,
        "MiB",
        "assumption: QEMU process beyond guest RAM under KVM; Firecracker's published "
        "<= 5 MiB is the floor of a minimal VMM",
    ),
    "vm.kvm.cpuCores": Default(
        0.05,
        "cores",
        "Felter et al. 2015 (IBM Research): KVM CPU overhead small outside I/O paths; "
        "assumption for QEMU's emulator/I/O threads",
    ),
    "vm.kvm.startupSeconds": Default(
        15.0,
        "s",
        "assumption: Debian + cloud-init under KVM; Firecracker's <= 125 ms boot is the "
        "VMM floor, the guest userland dominates",
    ),
    # Measured: qemu RSS ~1.1 GiB for a 512 MiB guest under TCG -> ~600 MiB beyond RAM.
    "vm.tcg.memoryMib": Default(
        600.0, "MiB", f"{_MEASURED}: qemu RSS ~1.1 GiB for a 512 MiB guest under TCG", True
    ),
    "vm.tcg.cpuCores": Default(
        0.1,
        "cores",
        "assumption: QEMU main loop + I/O threads under TCG (guest work itself runs "
        "several times slower; not modelled as capacity)",
    ),
    "vm.tcg.startupSeconds": Default(
        60.0, "s", f"{_MEASURED}: Debian VM reaches cloud-init final in ~60 s under TCG", True
    ),
    # --- container ----------------------------------------------------------------------
    "container.shimMemoryMib": Default(
        8.0,
        "MiB",
        "containerd-shim-runc-v2 holds a few MiB RSS per container; assumption 8 MiB",
    ),
    "container.cpuCores": Default(0.0, "cores", _FELTER),
    "container.logGib": Default(
        0.1,
        "GiB",
        "Docker's `local` log driver default cap (5 files x 20 MB) applied when logOpts "
        "do not bound json-file",
    ),
    "container.imageGib": Default(
        0.25,
        "GiB",
        "assumption: debian:bookworm-slim (~75 MB) plus the service's packages; "
        "counted once per host",
    ),
    "container.startupSeconds": Default(
        1.3, "s", f"{_MEASURED}: container from a local image starts in ~0.4-1.3 s", True
    ),
}


@dataclass(frozen=True, slots=True)
class Figure:
    """A figure as used: value, unit, source text and whether it was measured."""

    name: str
    value: float
    unit: str
    source: str
    measured: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.name,
            "value": self.value,
            "unit": self.unit,
            "source": self.source,
            "measured": self.measured,
        }


def _flatten(model: BaseModel, prefix: str = "") -> dict[str, Any]:
    """``Overheads`` → ``{"vm.kvm.memoryMib": 90.0, "vm.images": {...}, ...}`` (set values)."""
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        key = f"{prefix}{field.alias or name}"
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out.update(_flatten(value, f"{key}."))
        elif isinstance(value, dict):
            if value:
                out[key] = dict(value)
        elif value is not None:
            out[key] = value
    return out


class OverheadModel:
    """The resolved overhead figures for one analysis."""

    def __init__(
        self,
        overrides: Overheads | None = None,
        calibration: Calibration | None = None,
        calibration_source: str | None = None,
    ) -> None:
        self.figures: dict[str, Figure] = {
            k: Figure(k, d.value, d.unit, f"default: {d.source}", d.measured)
            for k, d in DEFAULTS.items()
        }
        self._images: dict[str, dict[str, Figure]] = {"vm": {}, "container": {}}
        self.calibrated = calibration is not None
        if overrides is not None:
            self._apply(_flatten(overrides), "stack config (twinstack:cost.overheads)", False)
        if calibration is not None:
            when = f", {calibration.measured_at:%Y-%m-%d}" if calibration.measured_at else ""
            where = f" on {calibration.machine}" if calibration.machine else ""
            src = f"measured ({calibration_source or 'calibration file'}{where}{when})"
            self._apply(_flatten(calibration.overheads), src, True)
        self.used: set[str] = set()

    @classmethod
    def from_cost(
        cls,
        cost: CostSpec,
        calibration: Calibration | None = None,
        calibration_source: str | Path | None = None,
    ) -> OverheadModel:
        return cls(
            cost.overheads,
            calibration,
            str(calibration_source) if calibration_source is not None else None,
        )

    def _apply(self, flat: dict[str, Any], source: str, measured: bool) -> None:
        for key, value in flat.items():
            if key in ("vm.images", "container.images"):
                runtime = key.split(".", 1)[0]
                for ref, gib in value.items():
                    name = f"{key}[{ref}]"
                    self._images[runtime][ref] = Figure(name, float(gib), "GiB", source, measured)
                continue
            unit = DEFAULTS[key].unit
            self.figures[key] = Figure(key, float(value), unit, source, measured)

    def __getitem__(self, key: str) -> float:
        self.used.add(key)
        return self.figures[key].value

    def vmm(self, accelerator: Accelerator, what: str) -> float:
        """``what`` of ``memoryMib``, ``cpuCores``, ``startupSeconds`` for an accelerator."""
        return self[f"vm.{accelerator}.{what}"]

    def image_gib(self, runtime: str, ref: str | None) -> float:
        """Size of a shared image (VM base image / container image), counted once per host."""
        if ref is not None and ref in self._images[runtime]:
            fig = self._images[runtime][ref]
            self.used.add(fig.name)
            return fig.value
        return self["vm.baseImageGib" if runtime == "vm" else "container.imageGib"]

    def used_figures(self) -> list[Figure]:
        """The figures an analysis actually used, in a stable order."""
        out = [self.figures[k] for k in sorted(self.used) if k in self.figures]
        for runtime in ("vm", "container"):
            out.extend(
                fig for ref, fig in sorted(self._images[runtime].items()) if fig.name in self.used
            )
        return out
