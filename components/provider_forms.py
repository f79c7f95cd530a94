"""Inputs in the form the pinned providers store back.

A Terraform-bridged provider diffs the program's inputs against the state its last Read
stored. Where Read normalizes a value, an input written differently differs on every
`pulumi up` of an unchanged stack, and for a ``ForceNew`` field that means a replacement
each time. So twinstack writes those fields exactly as the providers read them back:

* Docker ``cpus`` (terraform-provider-docker ``nanoInt64ToDecimalString``, the version
  bundled by pulumi-docker 5.2.0): Read turns NanoCPUs into a decimal string with nine
  places; when that string holds exactly nine ``0`` characters it is re-rounded to one
  decimal place (``1`` → ``"1.0"``, ``0.5`` → ``"0.5"``, and lossy: ``0.05`` → ``"0.1"``),
  otherwise trailing zeros are trimmed (``0.25`` → ``"0.25"``, ``10`` → ``"10."``).
* Docker healthcheck ``interval``, ``timeout`` and ``startPeriod``
  (terraform-provider-docker stores Docker's nanoseconds back as Go's
  ``time.Duration.String()``): ``60`` s → ``"1m0s"``, ``3600`` s → ``"1h0m0s"``; below a
  minute ``"30s"`` either way.
* libvirt ``cmdlines`` (terraform-provider-libvirt v0.8.1, bundled by pulumi-libvirt
  0.5.4): Create joins every ``k=v`` and every ``_`` value, sorted, with spaces; Read splits
  that line into maps of ``k=v`` (a repeated key starts a new map) followed by one map
  ``{"_": "bare words"}``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

_NANO = Decimal(10) ** 9


def docker_cpus(vcpus: float) -> str:
    """The ``cpus`` string terraform-provider-docker reads back for ``vcpus`` CPUs."""
    nanos = int((Decimal(str(vcpus)) * _NANO).to_integral_value(rounding=ROUND_HALF_UP))
    if nanos == 0:
        return "0"
    value = Decimal(nanos) / _NANO
    nine = f"{value:.9f}"
    if nine.count("0") == 9:
        # big.Rat.FloatString rounds halves away from zero
        return f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}"
    return nine.rstrip("0")


def docker_cpus_exact(vcpus: float) -> bool:
    """Whether the provider's read-back of ``vcpus`` is the same quantity."""
    return Decimal(docker_cpus(vcpus)) == Decimal(str(vcpus))


def docker_duration(seconds: int) -> str:
    """Whole seconds as Go's ``time.Duration.String()`` writes them (what the docker provider
    reads back for a healthcheck duration): ``90`` → ``"1m30s"``, ``3661`` → ``"1h1m1s"``."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def libvirt_cmdlines(cmdline: str) -> list[dict[str, str]]:
    """The ``cmdlines`` list the libvirt provider reads back for a kernel command line."""
    line = " ".join(sorted(cmdline.split()))
    maps: list[dict[str, str]] = []
    current: dict[str, str] = {}
    bare: list[str] = []
    for word in line.split(" ") if line else []:
        key, sep, value = word.partition("=")
        if not sep:
            bare.append(word)
            continue
        if key in current:
            maps.append(current)
            current = {}
        current[key] = value
    if current:
        maps.append(current)
    if bare:
        maps.append({"_": " ".join(bare)})
    return maps
