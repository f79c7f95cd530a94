"""Which libvirt domain type works on this host: ``kvm`` where it really runs, else ``qemu``.

``/dev/kvm`` existing is not enough: under nested virtualisation KVM guests can hang
before the kernel prints anything. So boot the base image's kernel once under
``-accel kvm`` (no fallback) and look for the kernel's banner on the serial port, with
a bounded wait. ``TWINSTACK_DOMAIN_TYPE`` (``kvm``/``qemu``) skips the probe.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal

DomainType = Literal["kvm", "qemu"]


def detect_domain_type(kernel: Path, *, timeout_s: float = 10.0) -> DomainType:
    """``kvm`` when a KVM guest prints the kernel banner within ``timeout_s``, else ``qemu``."""
    forced = os.environ.get("TWINSTACK_DOMAIN_TYPE")
    if forced in ("kvm", "qemu"):
        return forced  # type: ignore[return-value]
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None or not os.access("/dev/kvm", os.R_OK | os.W_OK) or not kernel.is_file():
        return "qemu"
    with tempfile.TemporaryDirectory(prefix="twinstack-kvm-") as tmp:
        serial = Path(tmp) / "serial.log"
        proc = subprocess.Popen(
            [qemu, "-accel", "kvm", "-m", "128", "-kernel", str(kernel), "-append",
             "console=ttyS0 panic=-1", "-no-reboot", "-display", "none", "-monitor", "none",
             "-serial", f"file:{serial}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and proc.poll() is None:
                if serial.is_file() and b"Linux version" in serial.read_bytes():
                    return "kvm"
                time.sleep(0.2)
            return "qemu"
        finally:
            proc.kill()
            proc.wait()
