"""`twinstack migrate`'s formats without daemons: a volume's files go through a tar stream
(Docker's archive API) and an ext4 image (the VM's data disk, written with ``mke2fs -d``
and read with ``debugfs``) and come back with the same manifest: paths, types, modes,
owners, times, sha256 and hard-link groups. Odd content is the point: empty and large
files, deep trees, spaces, newlines and non-ASCII in names, symlinks, hard links, 0600
files, set-gid directories. Extraction of an archive never writes outside its folder.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinstack.migrate import ext4
from twinstack.migrate.manifest import Manifest, MigrateError, differences, read_tar, read_tree
from twinstack.migrate.sides import write_tar

pytestmark = pytest.mark.skipif(
    shutil.which("mke2fs") is None or shutil.which("debugfs") is None or os.geteuid() != 0,
    reason="needs e2fsprogs and root (owners); ./run test installs and runs as root",
)
MIB = 1 << 20


def odd_tree(root: Path) -> Path:
    """The content the issue lists, with owners and times that differ from the defaults."""
    root.mkdir()
    (root / "empty").write_bytes(b"")
    (root / "large.bin").write_bytes(os.urandom(3 * MIB + 17))
    deep = root
    for i in range(40):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    (deep / "leaf").write_text("bottom\n")
    (root / "with space and é ünïcode").write_text("x")
    (root / "new\nline").write_text("two\nlines")
    (root / "secret").write_text("s")
    os.chmod(root / "secret", 0o600)
    os.chown(root / "secret", 10001, 10001)
    shared = root / "shared"
    shared.mkdir()
    os.chmod(shared, 0o2775)
    os.chown(shared, 0, 10001)
    (shared / "a").write_text("linked")
    os.link(shared / "a", root / "hard-a")
    os.link(shared / "a", deep / "hard-deep")
    os.symlink("shared/a", root / "rel-link")
    os.symlink("/etc/passwd", root / "abs-link")
    os.symlink("missing", root / "dangling")
    os.symlink("shared", root / "dir-link")
    (root / "exec").write_text("#!/bin/sh\n")
    os.chmod(root / "exec", 0o4755)
    os.utime(root / "empty", (1_000_000_000, 1_000_000_000))
    os.chmod(root, 0o750)
    os.chown(root, 10001, 10001)
    return root


def archive_of(tree: Path, top: str = "data") -> bytes:
    """What Docker's archive API returns for a mount path: the tree under its basename."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(tree, arcname=top)
    return buf.getvalue()


def roundtrip_image(tree: Path, work: Path, manifest: Manifest) -> tuple[Manifest, dict[str, Path]]:
    image = work / "disk.raw"
    ext4.build_image(tree, image, label="ts-test", size_bytes=64 * MIB,
                     root=manifest.entries["."])  # fmt: skip
    assert ext4.image_label(image) == "ts-test"
    dump = work / "dump"
    dump.mkdir()
    return ext4.read_image(image, dump)


def test_odd_content_survives_both_ways(tmp_path: Path) -> None:
    tree = odd_tree(tmp_path / "src")
    expected = read_tree(tree)
    assert (
        expected.entries["shared/a"].link
        == expected.entries["hard-a"].link
        == "d0/" + "/".join(f"d{i}" for i in range(1, 40)) + "/hard-deep"
    )  # the group's first path in sort order
    assert expected.entries["shared"].mode == 0o2775

    # container → VM: Docker's stream is extracted, then made into the disk
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    from_stream = read_tar([archive_of(tree)], extract_to=extracted)
    assert differences(expected, from_stream) == []
    assert differences(expected, read_tree(extracted)) == []
    on_disk, paths = roundtrip_image(extracted, tmp_path, from_stream)
    assert differences(expected, on_disk) == []

    # VM → container: the disk's files become the stream Docker extracts
    stream = io.BytesIO()
    write_tar(on_disk, paths, "data", stream, lambda _n: None)
    stream.seek(0)
    back = tmp_path / "back"
    back.mkdir()
    again = read_tar(stream, extract_to=back)
    assert differences(expected, again) == []
    assert differences(expected, read_tree(back)) == []


def test_a_changed_byte_mode_or_owner_is_a_difference(tmp_path: Path) -> None:
    tree = odd_tree(tmp_path / "src")
    before = read_tree(tree)
    (tree / "secret").write_text("S")
    os.utime(tree / "secret", (before.entries["secret"].mtime,) * 2)  # type: ignore[arg-type]
    os.chmod(tree / "exec", 0o755)
    os.chown(tree / "empty", 1, 1)
    diffs = differences(before, read_tree(tree), limit=10)
    assert [d.split(":")[0] for d in diffs] == ["'empty'", "'exec'", "'secret'"]
    assert "sha256" in diffs[2] and "mode" in diffs[1] and "uid" in diffs[0]


def test_manifest_counts_linked_bytes_once(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "a").write_bytes(b"x" * 1000)
    os.link(tree / "a", tree / "b")
    m = read_tree(tree)
    assert (m.files, m.bytes) == (2, 1000)


def test_special_files_are_listed_as_not_carried(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    os.mkfifo(tree / "fifo")
    (tree / "f").write_text("x")
    m = read_tree(tree)
    assert m.skipped == ["fifo"]
    on_disk, _ = roundtrip_image(tree, tmp_path, m)
    assert on_disk.skipped == ["fifo"]
    assert set(on_disk.entries) == {".", "f"}


def test_data_that_does_not_fit_the_disk_is_a_clear_error(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "big").write_bytes(os.urandom(6 * MIB))
    with pytest.raises(MigrateError, match=r"does not fit the VM's data disk .*sizeGib"):
        ext4.build_image(tree, tmp_path / "d.raw", label="x", size_bytes=4 * MIB,
                         root=read_tree(tree).entries["."])  # fmt: skip


def test_an_image_without_a_file_system_is_an_error(tmp_path: Path) -> None:
    blank = tmp_path / "blank.raw"
    blank.write_bytes(b"\0" * MIB)
    with pytest.raises(MigrateError):
        ext4.image_label(blank)


# --------------------------------------------------------------- hostile archives


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    return ti, None


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, target
    return ti, None


@pytest.mark.parametrize(
    "members",
    [
        # a planted symlink, then a file "through" it: the classic archive escape
        [_dir("data"), _link("data/out", "/tmp", tarfile.SYMTYPE),
         (tarfile.TarInfo("data/out/pwned"), b"x")],
        [_dir("data"), _link("data/up", "..", tarfile.SYMTYPE),
         (tarfile.TarInfo("data/up/pwned"), b"x")],
        # a hard link to a file of the host
        [_dir("data"), _link("data/shadow", "/etc/hostname", tarfile.LNKTYPE)],
        [_dir("data"), _link("data/shadow", "data/../../etc/hostname", tarfile.LNKTYPE)],
        # names that climb out
        [_dir("data"), (tarfile.TarInfo("data/../../pwned"), b"x")],
        [(tarfile.TarInfo("/pwned"), b"x")],
    ],
    ids=["through-abs-symlink", "through-dotdot-symlink", "hardlink-abs", "hardlink-dotdot",
         "dotdot-name", "absolute-name"],
)  # fmt: skip
def test_hostile_archive_never_writes_outside(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    before = set(tmp_path.parent.iterdir()), set(Path("/tmp").iterdir())
    with pytest.raises(MigrateError):
        read_tar([_tar(*members)], extract_to=dest)
    assert not (tmp_path / "pwned").exists() and not Path("/tmp/pwned").exists()
    assert (set(tmp_path.parent.iterdir()), set(Path("/tmp").iterdir())) == before


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    names=st.lists(
        st.text(st.characters(blacklist_characters="/\0", blacklist_categories=["Cs"]),
                min_size=1, max_size=40).filter(lambda n: n not in (".", "..", "lost+found")),
        min_size=1, max_size=8, unique=True,
    ),
    payload=st.binary(max_size=2000),
)  # fmt: skip
def test_any_file_name_reads_back_from_the_disk(
    tmp_path_factory: pytest.TempPathFactory, names: list[str], payload: bytes
) -> None:
    work = tmp_path_factory.mktemp("names")
    tree = work / "t"
    tree.mkdir()
    for i, name in enumerate(names):
        if len(os.fsencode(name)) > 255:
            continue
        (tree / name).write_bytes(payload + bytes([i]))
    expected = read_tree(tree)
    on_disk, _ = roundtrip_image(tree, work, expected)
    assert differences(expected, on_disk) == []


@pytest.mark.parametrize("crafted", ["same-name-twice", "directory-under-two-parents"])
def test_a_crafted_disk_is_refused_before_anything_is_dumped(tmp_path: Path, crafted: str) -> None:
    """The guest owns its disk: a duplicate name (a symlink `x` → /tmp and a directory `x`
    holding `pwned`) must not make the dump write through the symlink."""
    tree = tmp_path / "t"
    (tree / "d" / "x").mkdir(parents=True)
    (tree / "d" / "x" / "pwned").write_text("x")
    os.symlink(str(tmp_path / "outside"), tree / "x")
    (tmp_path / "outside").mkdir()
    image = tmp_path / "disk.raw"
    ext4.build_image(tree, image, label="t", size_bytes=16 * MIB, root=read_tree(tree).entries["."])
    # debugfs `ln` adds a directory entry without checking the name or the inode type;
    # into an existing directory ("/") it keeps the source's name: a second "x" in "/"
    target = "/" if crafted == "same-name-twice" else "/again"
    ext4._debugfs(image, [f"ln /d/x {target}"], "crafting", write=True)
    dump = tmp_path / "dump"
    dump.mkdir()
    with pytest.raises(MigrateError, match="inconsistent"):
        ext4.read_image(image, dump)
    assert list((tmp_path / "outside").iterdir()) == []
    assert list(dump.iterdir()) == []
