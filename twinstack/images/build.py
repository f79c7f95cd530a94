"""Build the local Debian base images from Debian packages only (no image downloads).

* container: ``debootstrap --variant=minbase`` (+ the recipe's base packages) → a rootfs
  tarball → ``docker import`` as ``twinstack/debian-base:<suite>-<hash>``, also tagged
  ``twinstack/debian-base:<suite>`` (the tag stacks use as ``build.base``).
* VM: the same rootfs plus a kernel, systemd, cloud-init and the qemu guest agent
  (installed with apt in a chroot) → ``mkfs.ext4 -d`` into a raw image →
  ``qemu-img convert -O qcow2``; the kernel and initrd are copied out for direct boot.

Artifacts live in a cache directory keyed by the recipe hash and are reused when nothing
changed; a stable copy is published (default ``/var/lib/twinstack/images``) so stack
files can name absolute paths that do not depend on where the repository is checked out.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from twinstack.errors import TwinstackError
from twinstack.images.recipe import Recipe, debian_mirror
from twinstack.realize.daemons import docker_client

DEFAULT_CACHE = Path(".twinstack/images")
DEFAULT_PUBLISH = Path("/var/lib/twinstack/images")

Log = Callable[[str], None]
Which = Literal["all", "container", "vm"]


@dataclass
class ImageSet:
    """What a build produced (or found in the cache)."""

    key: str
    container_tag: str | None = None
    container_alias: str | None = None
    disk: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str = ""
    reused: dict[str, bool] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "container": {"tag": self.container_tag, "alias": self.container_alias},
            "vm": {
                "disk": str(self.disk) if self.disk else None,
                "kernel": str(self.kernel) if self.kernel else None,
                "initrd": str(self.initrd) if self.initrd else None,
                "cmdline": self.cmdline,
            },
            "reused": self.reused,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
        }


def _run(cmd: list[str], *, what: str, env: dict[str, str] | None = None) -> None:
    """Run a build step; on failure raise with the step's last output lines."""
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except FileNotFoundError:
        raise TwinstackError(
            f"{what}: `{cmd[0]}` is not installed; `bash scripts/daemons.sh start` installs "
            "the Debian packages the image build needs"
        ) from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise TwinstackError(f"{what} failed (exit {proc.returncode}):\n{tail}")


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _timed(out: dict[str, float], name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        out[name] = out.get(name, 0.0) + time.monotonic() - start


def _need_root() -> None:
    if os.geteuid() != 0:
        raise TwinstackError("building images needs root (debootstrap, chroot, mount)")


# ------------------------------------------------------------------------- base rootfs


def _base_tarball(cache: Path, recipe: Recipe, log: Log, times: dict[str, float]) -> Path:
    """The minbase rootfs (+ base packages) as a tarball, built once per base key."""
    final = cache / f"base-{recipe.base_key()}"
    tarball = final / "rootfs.tar"
    if tarball.is_file():
        return tarball
    _need_root()
    mirror = debian_mirror(recipe.suite)
    work = cache / f".tmp-base-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    work.mkdir(parents=True)
    try:
        log(f"debootstrap --variant={recipe.variant} {recipe.suite} (mirror {mirror})")
        with _timed(times, "debootstrap"):
            cmd = ["debootstrap", f"--variant={recipe.variant}"]
            if recipe.base_packages:
                cmd.append("--include=" + ",".join(recipe.base_packages))
            _run(
                [*cmd, recipe.suite, str(rootfs), mirror],
                what="debootstrap",
            )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / junk).glob("*"):
                if p.is_file():
                    p.unlink()
        (rootfs / "etc/resolv.conf").write_text("")
        (rootfs / "etc/hostname").write_text("localhost\n")
        with _timed(times, "tar"):
            _run(
                [
                    "tar",
                    "--numeric-owner",
                    "--xattrs",
                    "-C",
                    str(rootfs),
                    "-cf",
                    str(work / "rootfs.tar"),
                    ".",
                ],
                what="tar rootfs",
            )
        shutil.rmtree(rootfs)
        (work / "manifest.json").write_text(
            json.dumps(
                {
                    "baseKey": recipe.base_key(),
                    "suite": recipe.suite,
                    "packages": list(recipe.base_packages),
                },
                indent=2,
            )
        )
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


# ------------------------------------------------------------------------- container


def _container(
    tarball: Path, recipe: Recipe, docker_host: str | None, log: Log, times: dict[str, float]
) -> bool:
    """Import the rootfs as the base image; return True when it was already there."""
    import docker.errors

    client = docker_client(docker_host)
    try:
        try:
            image = client.images.get(recipe.container_tag)
            reused = True
        except docker.errors.ImageNotFound:
            log(f"docker import → {recipe.container_tag}")
            repo, tag = recipe.container_tag.rsplit(":", 1)
            with _timed(times, "docker-import"):
                client.api.import_image_from_file(
                    str(tarball), repository=repo, tag=tag, changes=['CMD ["/bin/bash"]']
                )
            image = client.images.get(recipe.container_tag)
            reused = False
        alias_repo, alias_tag = recipe.container_alias.rsplit(":", 1)
        image.tag(alias_repo, alias_tag)
        return reused
    finally:
        client.close()


# ------------------------------------------------------------------------- VM disk


@contextlib.contextmanager
def _chroot_mounts(root: Path) -> Iterator[None]:
    """/proc, /sys, a private /dev and /dev/pts inside ``root`` while apt runs in a chroot.

    /dev is a fresh tmpfs with only the character devices packages need, never the
    host's /dev: maintainer scripts (udev, qemu-guest-agent) `chgrp kvm /dev/kvm` with
    the *chroot's* kvm gid and would change the host's device node.
    """
    mounted: list[Path] = []
    try:
        for src, rel, args in (
            ("proc", "proc", ["-t", "proc"]),
            ("sysfs", "sys", ["-t", "sysfs", "-o", "ro"]),
            ("tmpfs", "dev", ["-t", "tmpfs", "-o", "mode=755,size=16m"]),
        ):
            target = root / rel
            target.mkdir(parents=True, exist_ok=True)
            _run(["mount", *args, src, str(target)], what=f"mount {rel} in the VM rootfs")
            mounted.append(target)
        for name in ("null", "zero", "full", "random", "urandom", "tty"):
            node = root / "dev" / name
            node.touch()
            _run(["mount", "--bind", f"/dev/{name}", str(node)], what=f"bind /dev/{name}")
            mounted.append(node)
        for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                           ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                           ("ptmx", "pts/ptmx")):  # fmt: skip
            (root / "dev" / name).symlink_to(link)
        pts = root / "dev" / "pts"
        pts.mkdir()
        _run(["mount", "-t", "devpts", "-o", "newinstance", "devpts", str(pts)], what="devpts")
        mounted.append(pts)
        yield
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)
        _umount_all(root)


def _umount_all(root: Path) -> None:
    """Lazily unmount everything below ``root`` (deepest first)."""
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts") as fh:
        points = [line.split()[1] for line in fh if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _vm_rootfs(rootfs: Path, recipe: Recipe, log: Log, times: dict[str, float]) -> None:
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")  # no service starts inside the chroot
    policy.chmod(0o755)
    shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    apt_env = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
    with _chroot_mounts(rootfs):
        log("apt-get install (VM packages) in the chroot")
        with _timed(times, "vm-apt"):
            _run(
                ["chroot", str(rootfs), "apt-get", "update", "-qq"],
                what="apt-get update",
                env=apt_env,
            )
            _run(
                [
                    "chroot",
                    str(rootfs),
                    "apt-get",
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    *recipe.vm_packages,
                ],
                what="apt-get install " + " ".join(recipe.vm_packages),
                env=apt_env,
            )
            _run(["chroot", str(rootfs), "apt-get", "clean"], what="apt-get clean")
        for unit in recipe.guest_enable:
            _run(["chroot", str(rootfs), "systemctl", "enable", unit], what=f"enable {unit}")
        for unit in recipe.guest_mask:
            _run(["chroot", str(rootfs), "systemctl", "mask", unit], what=f"mask {unit}")
    for lists in (rootfs / "var/lib/apt/lists").glob("*"):
        if lists.is_file():
            lists.unlink()
    for path, content in recipe.guest_files:
        target = rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    # a fresh identity per clone: systemd fills an empty machine-id on first boot
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (rootfs / "etc/resolv.conf").write_text("")
    policy.unlink()


def _kernel_files(rootfs: Path) -> tuple[Path, Path]:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise TwinstackError(f"no kernel/initrd in {rootfs}/boot after installing the kernel")
    return kernels[-1], initrds[-1]


def _vm_disk(
    cache: Path, tarball: Path, recipe: Recipe, log: Log, times: dict[str, float]
) -> tuple[Path, bool]:
    final = cache / f"vm-{recipe.key()}"
    manifest = final / "manifest.json"
    if manifest.is_file() and all(
        (final / n).is_file() for n in ("disk.qcow2", "vmlinuz", "initrd.img")
    ):
        return final, True
    _need_root()
    work = cache / f".tmp-vm-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    rootfs.mkdir(parents=True)
    try:
        with _timed(times, "vm-extract"), tarfile.open(tarball) as tf:
            tf.extractall(rootfs, filter="fully_trusted")
        _vm_rootfs(rootfs, recipe, log, times)
        kernel, initrd = _kernel_files(rootfs)
        shutil.copyfile(kernel, work / "vmlinuz")
        shutil.copyfile(initrd, work / "initrd.img")
        raw = work / "disk.raw"
        log(f"mkfs.ext4 -d → {recipe.vm_disk_mib} MiB, qemu-img convert → qcow2")
        with _timed(times, "vm-mkfs"):
            _run(
                [
                    "mkfs.ext4",
                    "-q",
                    "-F",
                    "-L",
                    "root",
                    "-d",
                    str(rootfs),
                    str(raw),
                    f"{recipe.vm_disk_mib}M",
                ],
                what="mkfs.ext4 -d",
            )
        shutil.rmtree(rootfs)
        with _timed(times, "vm-qcow2"):
            _run(
                ["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "disk.qcow2")],
                what="qemu-img convert",
            )
        raw.unlink()
        (work / "manifest.json").write_text(
            json.dumps(
                {
                    "key": recipe.key(),
                    "kernel": kernel.name,
                    "initrd": initrd.name,
                    "cmdline": recipe.cmdline,
                    "packages": [*recipe.base_packages, *recipe.vm_packages],
                },
                indent=2,
            )
        )
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
    finally:
        # rootfs may still hold mount points if a step failed half-way: umount first
        _umount_all(rootfs)
        shutil.rmtree(work, ignore_errors=True)
    return final, False


DEBIAN_VERSIONS = {"bookworm": "12", "trixie": "13"}


def published_names(dest: Path, suite: str) -> dict[str, Path]:
    """Stable paths of the VM artifacts, as the example stack files name them."""
    version = DEBIAN_VERSIONS.get(suite, suite)
    return {
        "disk.qcow2": dest / f"debian-{version}-twinstack.qcow2",
        "vmlinuz": dest / "vmlinuz",
        "initrd.img": dest / "initrd.img",
    }


def _publish(src_dir: Path, dest: Path, suite: str, key: str) -> tuple[Path, Path, Path]:
    """Copy the VM artifacts to stable names (replaced only when the key changed).

    A running domain whose base volume was uploaded from the old disk is unaffected: the
    pool holds its own copy (as `pulumi up` would have uploaded it).
    """
    dest.mkdir(parents=True, exist_ok=True)
    names = published_names(dest, suite)
    stamp = dest / ".twinstack-key"
    current = stamp.read_text().strip() if stamp.is_file() else ""
    if current != key or not all(p.is_file() for p in names.values()):
        for src, target in names.items():
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(src_dir / src, tmp)
            tmp.chmod(0o644)
            tmp.replace(target)
        stamp.write_text(key + "\n")
    return names["disk.qcow2"], names["vmlinuz"], names["initrd.img"]


def _prune(cache: Path, keep: set[str]) -> None:
    """Drop cache entries of other recipes (each VM disk is ~0.5 GB)."""
    for entry in cache.iterdir():
        if entry.is_dir() and entry.name.startswith(("base-", "vm-")) and entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)


def build_images(
    cache: Path = DEFAULT_CACHE,
    recipe: Recipe | None = None,
    *,
    which: Which = "all",
    publish: Path | None = DEFAULT_PUBLISH,
    docker_host: str | None = None,
    log: Log = lambda _msg: None,
) -> ImageSet:
    """Build (or reuse) the base images; see the module docstring."""
    recipe = recipe or Recipe()
    cache = cache.resolve()
    result = ImageSet(key=recipe.key(), cmdline=recipe.cmdline)
    times = result.seconds
    start = time.monotonic()
    with _locked(cache):
        base_existed = (cache / f"base-{recipe.base_key()}" / "rootfs.tar").is_file()
        with _timed(times, "base-rootfs"):
            tarball = _base_tarball(cache, recipe, log, times)
        result.reused["base-rootfs"] = base_existed
        if which in ("all", "container"):
            with _timed(times, "container"):
                result.reused["container"] = _container(tarball, recipe, docker_host, log, times)
            result.container_tag = recipe.container_tag
            result.container_alias = recipe.container_alias
        if which in ("all", "vm"):
            with _timed(times, "vm"):
                vm_dir, result.reused["vm"] = _vm_disk(cache, tarball, recipe, log, times)
            if publish is not None:
                with _timed(times, "publish"):
                    result.disk, result.kernel, result.initrd = _publish(
                        vm_dir, publish, recipe.suite, recipe.key()
                    )
            else:
                result.disk = vm_dir / "disk.qcow2"
                result.kernel = vm_dir / "vmlinuz"
                result.initrd = vm_dir / "initrd.img"
        _prune(cache, {f"base-{recipe.base_key()}", f"vm-{recipe.key()}"})
    times["total"] = time.monotonic() - start
    return result
