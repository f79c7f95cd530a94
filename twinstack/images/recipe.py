"""What the local base images are made of, and the content key of that recipe.

The recipe is plain data; its hash (the *key*) names every artifact in the cache and the
container tag, so a changed package list or guest config gives new artifacts and an
unchanged recipe reuses the old ones. The Debian mirror is deliberately not part of the
key: it is where the packages come from, not what they are (pin a snapshot mirror for
bit-for-bit rebuilds).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from twinstack.errors import TwinstackError

BUILDER_VERSION = 3
"""Bump when the build steps change in a way the recipe fields do not show."""

CONTAINER_REPOSITORY = "twinstack/debian-base"

# The guest configuration baked into the VM base disk. Each file is part of the key.
_GUEST_FILES: dict[str, str] = {
    # Root is the whole virtio disk (no partition table): matches the direct-boot
    # cmdline `root=/dev/vda`.
    "/etc/fstab": "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n",
    # Only the NoCloud seed ISO (volid `cidata`): no probing of network metadata services.
    "/etc/cloud/cloud.cfg.d/90-twinstack.cfg": (
        "datasource_list: [NoCloud, None]\n"
        "datasource:\n"
        "  NoCloud:\n"
        "    fs_label: cidata\n"
        # cloud-init renders networkd config; systemd-networkd is enabled in the image.
        "system_info:\n"
        "  network:\n"
        "    renderers: [networkd, eni]\n"
        # minbase has only the C.UTF-8 locale and no sshd: keep those modules quiet
        # instead of failing (a failed module makes `cloud-init status` report error).
        "locale: C.UTF-8\n"
        "ssh_genkeytypes: []\n"
    ),
    # Mirrors `docker run --log-opt max-size`: a tiny journal keeps TCG guests quick.
    "/etc/systemd/journald.conf.d/10-twinstack-base.conf": "[Journal]\nSystemMaxUse=30M\n",
    "/etc/hostname": "localhost\n",
}

_GUEST_ENABLE = ("systemd-networkd.service", "systemd-networkd.socket")
# Timers and units that would reach the network or burn CPU under TCG emulation.
_GUEST_MASK = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-networkd-wait-online.service",
)


@dataclass(frozen=True)
class Recipe:
    """How the two base images are built from Debian packages."""

    suite: str = "bookworm"
    variant: str = "minbase"
    # In both images: the example services and the renderers' health probe (bash
    # /dev/tcp) need nothing else; python3 serves the example HTTP services offline.
    base_packages: tuple[str, ...] = ("python3",)
    # Only in the VM disk: a kernel for direct boot, an init, cloud-init and its helpers,
    # and the guest agent the tests use to look inside.
    vm_packages: tuple[str, ...] = (
        "linux-image-cloud-amd64",
        "systemd-sysv",
        "udev",
        "dbus",
        "cloud-init",
        "qemu-guest-agent",
        "e2fsprogs",
        "iproute2",
        "sudo",
    )
    guest_files: tuple[tuple[str, str], ...] = tuple(sorted(_GUEST_FILES.items()))
    guest_enable: tuple[str, ...] = _GUEST_ENABLE
    guest_mask: tuple[str, ...] = _GUEST_MASK
    vm_disk_mib: int = 2048
    """Size of the VM root filesystem (the clones grow to the spec's diskGib)."""
    cmdline: str = "root=/dev/vda rw console=ttyS0"
    builder_version: int = BUILDER_VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def key(self) -> str:
        """Content hash of the recipe (12 hex digits)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def base_key(self) -> str:
        """Hash of the part both images share (the base rootfs)."""
        part = {
            "suite": self.suite,
            "variant": self.variant,
            "base": self.base_packages,
            "v": self.builder_version,
        }
        return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def container_tag(self) -> str:
        """The recipe-keyed tag, e.g. ``twinstack/debian-base:bookworm-<hash>``."""
        return f"{CONTAINER_REPOSITORY}:{self.suite}-{self.base_key()}"

    @property
    def container_alias(self) -> str:
        """The stable tag stacks use as their ``build.base``."""
        return f"{CONTAINER_REPOSITORY}:{self.suite}"


# ------------------------------------------------------------------------- mirror


def _deb822_entries(text: str) -> list[tuple[list[str], list[str], list[str]]]:
    """(types, uris, suites) of each stanza of a deb822 ``.sources`` file."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            k, _, v = line.partition(":")
            fields[k.strip().lower()] = v.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        out.append(
            (
                fields.get("types", "").split(),
                fields.get("uris", "").split(),
                fields.get("suites", "").split(),
            )
        )
    return out


def _one_line_entries(text: str) -> list[tuple[list[str], list[str], list[str]]]:
    out = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3:
            out.append(([words[0]], [words[1]], [words[2]]))
    return out


def debian_mirror(suite: str = "bookworm", apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's own apt sources use for ``suite``.

    ``TWINSTACK_DEBIAN_MIRROR`` overrides it. Security and updates suites are skipped;
    an entry for ``suite`` wins over any other Debian entry.
    """
    env = os.environ.get("TWINSTACK_DEBIAN_MIRROR")
    if env:
        return env
    entries: list[tuple[list[str], list[str], list[str]]] = []
    files = [apt_dir / "sources.list"]
    src_d = apt_dir / "sources.list.d"
    if src_d.is_dir():
        files += sorted(p for p in src_d.iterdir() if p.suffix in {".list", ".sources"})
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        entries += _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
    fallback = None
    for types, uris, suites in entries:
        if "deb" not in types or not uris:
            continue
        plain = [s for s in suites if "-" not in s and "/" not in s]
        if suite in plain:
            return uris[0]
        if fallback is None and plain and uris[0].rstrip("/").endswith("/debian"):
            fallback = uris[0]
    if fallback is not None:
        return fallback
    raise TwinstackError(
        f"no Debian mirror for {suite!r} in {apt_dir}/sources.list or sources.list.d/; "
        "set TWINSTACK_DEBIAN_MIRROR to a Debian archive URL"
    )
