"""A VM data disk's ext4 file system, read and written on the host without mounting it.

e2fsprogs does both: ``mke2fs -d`` builds the file system from a directory tree
(owners, modes, times, symlinks, hard links, xattrs) and ``debugfs`` lists and dumps one
(``ls -p`` gives inode, mode, owner per entry; ``rdump`` the contents and times). No
kernel module, no mount, no root file system of the guest is touched; the disk image
moves to and from libvirt with ``qemu-img`` and libvirt's volume upload/download.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinstack.migrate.manifest import FS_OWN, Entry, Manifest, MigrateError, file_digest

ROOT_INO = 2
_LS_ENTRY = re.compile(rb"/(\d+)/(\d+)/(\d+)/(\d+)/([^/]*)/(\d*)/\n")


@dataclass(frozen=True)
class Listed:
    path: str
    ino: int
    mode: int  # full st_mode (type bits included)
    uid: int
    gid: int


def _run(argv: list[str], what: str, *, stdin: bytes | None = None) -> bytes:
    try:
        res = subprocess.run(argv, input=stdin, capture_output=True, check=False, timeout=3600)
    except FileNotFoundError:
        raise MigrateError(
            f"{what}: {argv[0]} is not installed (Debian: e2fsprogs, qemu-utils)"
        ) from None
    errors = [
        ln
        for ln in res.stderr.decode(errors="replace").splitlines()
        if ln.strip() and not ln.startswith("debugfs ") and not ln.startswith("mke2fs ")
    ]
    if res.returncode != 0 or (argv[0] == "debugfs" and errors):
        raise MigrateError(f"{what}: {' '.join(errors[-3:]) or f'exit {res.returncode}'}")
    return res.stdout


def _debugfs(image: Path, commands: list[str], what: str, *, write: bool = False) -> bytes:
    """Run debugfs commands (one per line; only inode numbers and our own paths in them)."""
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs", delete=False) as f:
        f.write("\n".join(commands) + "\n")
    try:
        return _run(["debugfs", *(["-w"] if write else []), "-f", f.name, str(image)], what)
    finally:
        os.unlink(f.name)


def list_image(image: Path) -> list[Listed]:
    """Every entry of the file system (root first, parents before children).

    One debugfs run per directory level; entries are parsed from ``ls -p`` output, whose
    fields are separated by ``/`` (the one byte a file name cannot hold), so names with
    spaces, newlines or any other byte read back exactly."""
    out: list[Listed] = []
    level: list[tuple[int, str]] = [(ROOT_INO, ".")]
    seen_dirs = {ROOT_INO}
    seen_paths: set[str] = set()
    while level:
        text = _debugfs(image, [f"ls -p <{ino}>" for ino, _ in level], "listing the disk")
        pos = 0
        nxt: list[tuple[int, str]] = []
        for ino, parent in level:
            header = f"debugfs: ls -p <{ino}>\n".encode()
            if not text.startswith(header, pos):
                raise MigrateError(f"listing the disk: unexpected debugfs output at {pos}")
            pos += len(header)
            while (m := _LS_ENTRY.match(text, pos)) is not None:
                pos = m.end()
                e_ino, mode = int(m.group(1)), int(m.group(2), 8)
                name = os.fsdecode(m.group(5))
                if name in (".", ".."):
                    if name == "." and parent == ".":
                        out.append(Listed(".", e_ino, mode, int(m.group(3)), int(m.group(4))))
                    continue
                if parent == "." and name == FS_OWN and stat.S_ISDIR(mode):
                    continue
                path = name if parent == "." else f"{parent}/{name}"
                # a damaged or crafted file system (the guest owns it) could list a name
                # twice or a directory under two parents; dumping it could then write
                # through a symlink, so such a disk is refused before anything is dumped
                if path in seen_paths or (stat.S_ISDIR(mode) and e_ino in seen_dirs):
                    raise MigrateError(
                        f"the disk's file system is inconsistent ({path!r} is listed twice); "
                        "run e2fsck on it in the VM, then migrate again"
                    )
                seen_paths.add(path)
                out.append(Listed(path, e_ino, mode, int(m.group(3)), int(m.group(4))))
                if stat.S_ISDIR(mode):
                    seen_dirs.add(e_ino)
                    nxt.append((e_ino, path))
            if text.startswith(b"\n", pos):
                pos += 1
        level = nxt
    return out


def root_mtime(image: Path) -> int:
    text = _debugfs(image, [f"stat <{ROOT_INO}>"], "reading the disk's root")
    m = re.search(rb"\bmtime: 0x([0-9a-f]+)", text)
    if m is None:
        raise MigrateError("reading the disk's root: no mtime in debugfs stat")
    return int(m.group(1), 16)


def image_label(image: Path) -> str:
    """The file system's label ("" for none); an error if the image holds no ext2/3/4."""
    return _run(["e2label", str(image)], "reading the disk's label").decode().strip()


def read_image(image: Path, dump_to: Path) -> tuple[Manifest, dict[str, Path]]:
    """Manifest of an ext4 image, its contents dumped under ``dump_to``.

    Returns the manifest (modes, owners and hard links as the file system records them;
    times and contents as ``rdump`` restores them) and, per file and symlink path, where
    its dumped copy is."""
    listed = list_image(image)
    _debugfs(image, [f"rdump / {dump_to}"], "copying files off the disk")
    shutil.rmtree(dump_to / FS_OWN, ignore_errors=True)  # the file system's own
    manifest = Manifest()
    paths: dict[str, Path] = {}
    inodes: dict[str, int] = {}
    digests: dict[int, str] = {}
    for e in listed:
        where = dump_to if e.path == "." else dump_to / e.path
        mode = stat.S_IMODE(e.mode)
        base: dict[str, Any] = {"path": e.path, "mode": mode, "uid": e.uid, "gid": e.gid}
        if stat.S_ISDIR(e.mode):
            mtime = root_mtime(image) if e.path == "." else int(where.lstat().st_mtime)
            manifest.add(Entry(type="dir", mtime=mtime, **base))
        elif stat.S_ISREG(e.mode):
            st = where.lstat()
            if e.ino not in digests:
                digests[e.ino] = file_digest(where)
            manifest.add(Entry(type="file", mtime=int(st.st_mtime), size=st.st_size,
                               sha256=digests[e.ino], **base))  # fmt: skip
            paths[e.path] = where
            inodes[e.path] = e.ino
        elif stat.S_ISLNK(e.mode):
            manifest.add(Entry(type="symlink", target=os.readlink(where), **base))
            paths[e.path] = where
        else:
            manifest.skipped.append(e.path)
    return manifest.with_link_groups(inodes), paths


def build_image(tree: Path, image: Path, *, label: str, size_bytes: int, root: Entry) -> None:
    """A fresh ext4 file system of ``size_bytes`` (sparse) holding ``tree``.

    ``root`` carries the volume root's own mode, owner and time, which ``mke2fs -d`` does
    not take from the tree."""
    with image.open("wb") as f:
        f.truncate(size_bytes)
    try:
        _run(
            ["mke2fs", "-q", "-F", "-t", "ext4", "-L", label,
             "-E", f"root_owner={root.uid}:{root.gid}", "-d", str(tree), str(image)],
            "writing the file system",
        )  # fmt: skip
    except MigrateError as exc:
        if "allocate" in str(exc) or "No space" in str(exc):
            raise MigrateError(
                f"the volume's content does not fit the VM's data disk of "
                f"{size_bytes / 2**30:.1f} GiB ({exc}); raise the volume's sizeGib"
            ) from None
        raise
    cmds = [f"sif <{ROOT_INO}> mode 0{stat.S_IFDIR | root.mode:o}"]
    if root.mtime is not None:
        cmds.append(f"sif <{ROOT_INO}> mtime @{root.mtime}")
    _debugfs(image, cmds, "setting the volume root's mode and time", write=True)
