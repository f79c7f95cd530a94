"""What a volume holds, as a comparable list: path, type, size, mode, owner, time, sha256.

Both sides of a migration are described the same way, from a tar stream (Docker's
archive API) or from an ext4 image read with debugfs, and the migration reports success
only if the source's manifest equals the target's.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from twinstack.errors import TwinstackError

CHUNK = 1 << 20
FS_OWN = "lost+found"
"""The ext4 root's own directory (mke2fs makes it): never copied, never compared."""


class MigrateError(TwinstackError):
    """A migration step failed; the message says what happened and each side's state."""


@dataclass(frozen=True)
class Entry:
    """One file system object. ``path`` is relative to the volume root ("." is the root).

    ``link`` names the first path (in sort order) of a hard-link group, for every member
    of the group, so the same grouping compares equal whichever member a format lists
    first. Symlink times are not compared (neither debugfs nor Docker's archive API
    restores them)."""

    path: str
    type: str  # dir | file | symlink
    mode: int
    uid: int
    gid: int
    mtime: int | None = None
    size: int = 0
    sha256: str | None = None
    target: str | None = None
    link: str | None = None

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["mode"] = f"{self.mode:04o}"
        return {k: v for k, v in d.items() if v is not None}


@dataclass
class Manifest:
    entries: dict[str, Entry] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    """Paths of special files (FIFOs, sockets, devices): not carried either way."""

    @property
    def files(self) -> int:
        return sum(1 for e in self.entries.values() if e.type == "file")

    @property
    def bytes(self) -> int:
        return sum(
            e.size for e in self.entries.values() if e.type == "file" and e.link in (None, e.path)
        )

    def add(self, entry: Entry) -> None:
        self.entries[entry.path] = entry

    def with_link_groups(self, inodes: dict[str, Any]) -> Manifest:
        """Fill ``link`` from a path → identity map (paths sharing one are hard links)."""
        groups: dict[Any, list[str]] = {}
        for path, ident in inodes.items():
            groups.setdefault(ident, []).append(path)
        out = Manifest(skipped=list(self.skipped))
        for path, e in self.entries.items():
            members = groups.get(inodes.get(path), [])
            link = min(members) if len(members) > 1 else None
            out.add(Entry(**{**asdict(e), "link": link}))
        return out


def differences(source: Manifest, target: Manifest, limit: int = 5) -> list[str]:
    """Human-readable differences (at most ``limit``), empty when the two are equal."""
    out: list[str] = []
    for path in sorted(set(source.entries) | set(target.entries)):
        a, b = source.entries.get(path), target.entries.get(path)
        if a == b:
            continue
        if a is None:
            out.append(f"{path!r}: only in the target")
        elif b is None:
            out.append(f"{path!r}: missing in the target")
        else:
            fields = [k for k in asdict(a) if getattr(a, k) != getattr(b, k)]
            out.append(
                f"{path!r}: "
                + ", ".join(f"{k} {getattr(a, k)!r} → {getattr(b, k)!r}" for k in fields)
            )
        if len(out) >= limit:
            break
    return out


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _kind(mode: int) -> str | None:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return None


class _Chunks(io.RawIOBase):
    """A raw stream over an iterator of byte chunks (Docker's archive stream), no copies
    beyond the one into the reader's buffer."""

    def __init__(self, chunks: Iterable[bytes], on_bytes: Any = None) -> None:
        self._it: Iterator[bytes] = iter(chunks)
        self._cur = memoryview(b"")
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not len(self._cur):
            try:
                chunk = next(self._it)
            except StopIteration:
                return 0
            if self._on_bytes is not None:
                self._on_bytes(len(chunk))
            self._cur = memoryview(chunk)
        n = min(len(b), len(self._cur))
        b[:n] = self._cur[:n]
        self._cur = self._cur[n:]
        return n


def _relative(name: str) -> str:
    """A member name of Docker's archive of a mount path ("data/x/y") → "x/y" ("." root)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise MigrateError(f"archive member {name!r} is outside the volume")
    rest = parts[1:]
    return "/".join(rest) if rest else "."


def read_tar(
    chunks: Iterable[bytes] | IO[bytes],
    *,
    extract_to: Path | None = None,
    on_bytes: Any = None,
) -> Manifest:
    """Manifest of a Docker archive stream of one mount path; optionally extract it.

    Extraction never leaves ``extract_to``: member names are checked with the standard
    library's ``tar`` filter (absolute names and names that resolve outside through a
    symlink are refused), hard-link targets must be earlier members, and files are created
    with ``O_NOFOLLOW | O_EXCL``. Modes, owners (numeric) and times are applied as
    recorded, directories last, so set-gid directories and 0600 files survive."""
    src = (
        chunks
        if hasattr(chunks, "read")
        else io.BufferedReader(_Chunks(chunks, on_bytes), buffer_size=CHUNK)
    )
    manifest = Manifest()
    inodes: dict[str, Any] = {}
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    dest = extract_to.resolve() if extract_to is not None else None
    # stream mode reads in `bufsize` pieces (10 KiB by default, several times slower)
    with tarfile.open(fileobj=src, mode="r|", bufsize=CHUNK) as tf:  # type: ignore[call-overload]
        for member in tf:
            rel = _relative(member.name)
            if rel == "." and not member.isdir():
                raise MigrateError(
                    f"archive member {member.name!r}: the volume root is not a directory"
                )
            try:
                _member(tf, member, rel, dest, manifest, inodes, dirs)
            except OSError as exc:
                raise MigrateError(f"archive member {member.name!r}: {exc.strerror}") from None
    for path, member in reversed(dirs):  # children first: their times are set
        _apply_attrs(path, member)
    return manifest.with_link_groups(inodes)


def _member(
    tf: tarfile.TarFile, member: tarfile.TarInfo, rel: str, dest: Path | None, manifest: Manifest,
    inodes: dict[str, Any], dirs: list[tuple[Path, tarfile.TarInfo]],
) -> None:  # fmt: skip
    mode = member.mode & 0o7777
    base: dict[str, Any] = {"path": rel, "mode": mode, "uid": member.uid, "gid": member.gid}
    target = None
    if dest is not None:
        target = dest if rel == "." else dest / rel
        if rel != ".":
            _check_inside(dest, target, member)
    if member.isdir():
        manifest.add(Entry(type="dir", mtime=int(member.mtime), **base))
        if target is not None:
            target.mkdir(exist_ok=True)
            dirs.append((target, member))
    elif member.isreg():
        h = hashlib.sha256()
        fh = tf.extractfile(member)
        assert fh is not None
        out = None
        if target is not None:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            out = os.fdopen(fd, "wb")
        try:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
                if out is not None:
                    out.write(chunk)
        finally:
            if out is not None:
                out.close()
        manifest.add(
            Entry(type="file", mtime=int(member.mtime), size=member.size,
                  sha256=h.hexdigest(), **base)
        )  # fmt: skip
        inodes[rel] = rel
        if target is not None:
            _apply_attrs(target, member)
    elif member.issym():
        manifest.add(Entry(type="symlink", target=member.linkname, **base))
        if target is not None:
            os.symlink(member.linkname, target)
            os.lchown(target, member.uid, member.gid)
    elif member.islnk():
        first = _relative(member.linkname)
        prior = manifest.entries.get(first)
        if prior is None or prior.type != "file":
            raise MigrateError(
                f"archive hard link {member.name!r}: no earlier file {member.linkname!r}"
            )
        manifest.add(Entry(**{**asdict(prior), "path": rel}))
        inodes[rel] = inodes[first]
        if target is not None and dest is not None:
            os.link(dest / first, target, follow_symlinks=False)
    else:
        manifest.skipped.append(rel)


def _check_inside(dest: Path, target: Path, member: tarfile.TarInfo) -> None:
    try:
        tarfile.tar_filter(member, str(dest))
    except tarfile.FilterError as exc:
        raise MigrateError(f"archive member {member.name!r} refused: {exc}") from None
    # no symlink anywhere above the new entry (a planted link must not redirect a write)
    parent = target.parent
    if os.path.realpath(parent) != str(parent):
        raise MigrateError(f"archive member {member.name!r} would be written through a symlink")


def _apply_attrs(path: Path, member: tarfile.TarInfo) -> None:
    os.chown(path, member.uid, member.gid, follow_symlinks=False)
    os.chmod(path, member.mode & 0o7777)  # after chown: chown clears set-gid
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def read_tree(root: Path, *, hash_files: bool = True) -> Manifest:
    """Manifest of a directory tree on this host (hard links by inode)."""
    manifest = Manifest()
    inodes: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [".", *sorted(dirnames), *sorted(filenames)]:
            full = Path(dirpath) if name == "." else Path(dirpath) / name
            rel = os.path.relpath(full, root)
            st = full.lstat()
            kind = _kind(st.st_mode)
            if kind is None:
                manifest.skipped.append(rel)
                continue
            if kind == "dir" and name != ".":
                continue  # listed as "." of its own walk step (symlinked dirs are symlinks)
            base: dict[str, Any] = {
                "path": rel,
                "type": kind,
                "mode": stat.S_IMODE(st.st_mode),
                "uid": st.st_uid,
                "gid": st.st_gid,
            }
            if kind == "symlink":
                manifest.add(Entry(target=os.readlink(full), **base))
            elif kind == "dir":
                manifest.add(Entry(mtime=int(st.st_mtime), **base))
            else:
                digest = file_digest(full) if hash_files else None
                manifest.add(Entry(mtime=int(st.st_mtime), size=st.st_size, sha256=digest, **base))
                inodes[rel] = (st.st_dev, st.st_ino)
    return manifest.with_link_groups(inodes)
