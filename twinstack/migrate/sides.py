"""The two sides of a service, as deployed: find them by twinstack's labels, stop and start
them, and move a volume's bytes through each daemon's own API.

Docker: the archive API (``GET/PUT /containers/{id}/archive``) reads and writes the files
of a stopped container's volume; a short-lived helper container from the service's own
image empties the volume before a write. libvirt: the domain definition says which
volume backs each data disk (by its guest device, the one the cloud-init user-data
formats with the volume's label); ``virStorageVolDownload`` / ``virStorageVolUpload``
move the disk image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.etree import ElementTree as ET

from components import renderers
from components.spec import ServiceSpec
from twinstack.migrate.manifest import Manifest, MigrateError
from twinstack.realize.daemons import libvirt_module

OnBytes = Callable[[int], None]


@dataclass
class VolumePair:
    """One declared volume of one replica: the Docker volume and the VM's data disk."""

    name: str
    mount_path: str
    label: str
    docker_volume: str
    libvirt_volume: Any
    libvirt_path: str

    @property
    def disk_name(self) -> str:
        return Path(self.libvirt_path).name


@dataclass
class Twin:
    """One replica: its container, its domain and its volumes."""

    replica: int
    container: Any
    domain: Any
    volumes: list[VolumePair] = field(default_factory=list)

    @property
    def container_name(self) -> str:
        return str(self.container.name)

    @property
    def domain_name(self) -> str:
        return str(self.domain.name())


def _deploy_hint(stack: str) -> str:
    return (
        f"deploy both sides first: pulumi config set twinstack:runtime both --stack {stack}; "
        "pulumi up"
    )


def domain_facts(dom: Any) -> dict[str, Any]:
    """The twinstack facts in a domain's description (see components/service.py)."""
    desc = ET.fromstring(dom.XMLDesc(0)).findtext("description") or ""
    try:
        facts = json.loads(desc).get("twinstack", {})
    except (ValueError, AttributeError):
        return {}
    return facts if isinstance(facts, dict) else {}


def find_twins(
    docker: Any, conn: Any, stack: str, svc: ServiceSpec, replicas: list[int] | None
) -> list[Twin]:
    """Both sides of every (chosen) replica, from the labels and definitions twinstack
    deployed; an error names the side that is missing and how to deploy it."""
    containers: dict[int, Any] = {}
    labels = [f"twinstack.stack={stack}", f"twinstack.service={svc.name}",
              "twinstack.runtime=container"]  # fmt: skip
    for c in docker.containers.list(all=True, filters={"label": labels}):
        try:
            containers[int(c.labels.get("twinstack.replica", ""))] = c
        except ValueError:
            continue
    domains: dict[int, Any] = {}
    for dom in conn.listAllDomains(0):
        facts = domain_facts(dom)
        if facts.get("stack") == stack and facts.get("service") == svc.name:
            replica = facts.get("replica")
            if isinstance(replica, int):
                domains[replica] = dom
    wanted = sorted(set(containers) | set(domains)) if replicas is None else replicas
    if not wanted:
        raise MigrateError(
            f"stack {stack}, service {svc.name}: neither a container nor a VM of it is "
            f"deployed; {_deploy_hint(stack)}"
        )
    twins = []
    for r in wanted:
        if r not in containers:
            raise MigrateError(
                f"stack {stack}, service {svc.name}, replica {r}: no container is deployed "
                f"(labels {', '.join(labels)}); {_deploy_hint(stack)}"
            )
        if r not in domains:
            raise MigrateError(
                f"stack {stack}, service {svc.name}, replica {r}: no VM is deployed (no "
                f"domain whose description names it); {_deploy_hint(stack)}"
            )
        twin = Twin(r, containers[r], domains[r])
        twin.volumes = [_pair(conn, twin, svc, i) for i in range(len(svc.volumes))]
        twins.append(twin)
    return twins


def _pair(conn: Any, twin: Twin, svc: ServiceSpec, index: int) -> VolumePair:
    vol = svc.volumes[index]
    mount = next(
        (m for m in twin.container.attrs.get("Mounts", [])
         if m.get("Destination") == vol.mount_path and m.get("Type") == "volume"),
        None,
    )  # fmt: skip
    if mount is None:
        raise MigrateError(
            f"container {twin.container_name}: no Docker volume is mounted at "
            f"{vol.mount_path} (volume {vol.name!r}); run pulumi up to bring it in line"
        )
    dev = renderers.vm_data_device(index).removeprefix("/dev/")
    root = ET.fromstring(twin.domain.XMLDesc(0))
    disk = next(
        (d for d in root.iter("disk")
         if d.get("device") == "disk" and (d.find("target") is not None)
         and d.find("target").get("dev") == dev),  # type: ignore[union-attr]
        None,
    )  # fmt: skip
    if disk is None:
        raise MigrateError(
            f"domain {twin.domain_name}: no data disk {dev} for volume {vol.name!r}; "
            "run pulumi up to bring it in line"
        )
    source = disk.find("source")
    assert source is not None
    libvirt = libvirt_module()
    try:
        if source.get("pool") and source.get("volume"):
            lv = conn.storagePoolLookupByName(source.get("pool")).storageVolLookupByName(
                source.get("volume")
            )
        else:
            lv = conn.storageVolLookupByPath(source.get("file"))
    except libvirt.libvirtError as exc:
        raise MigrateError(
            f"domain {twin.domain_name}: the volume behind {dev} is not in a libvirt pool "
            f"({exc.get_error_message()})"
        ) from None
    return VolumePair(
        vol.name, vol.mount_path, renderers.volume_label(svc, index), str(mount["Name"]), lv,
        lv.path(),
    )  # fmt: skip


# --------------------------------------------------------------------- stop and start


def container_running(c: Any) -> bool:
    c.reload()
    return bool(c.attrs["State"]["Running"])


def stop_container(c: Any) -> None:
    c.stop(timeout=10)  # the container's destroyGraceSeconds


def domain_running(dom: Any) -> bool:
    return bool(dom.isActive())


def stop_domain(dom: Any, timeout_s: float = 180) -> None:
    """Clean shutdown (guest agent, then ACPI): the guest flushes and unmounts its disks."""
    libvirt = libvirt_module()
    if not dom.isActive():
        return
    flags = libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT | libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN
    deadline = time.monotonic() + timeout_s
    asked = 0.0
    while dom.isActive():
        now = time.monotonic()
        if now > deadline:
            raise MigrateError(
                f"domain {dom.name()} did not shut down within {timeout_s:.0f} s; nothing "
                "was copied"
            )
        if now - asked > 10:  # ask again: a request during early boot is lost
            with contextlib.suppress(libvirt.libvirtError):
                dom.shutdownFlags(flags)
            asked = now
        time.sleep(0.5)


# --------------------------------------------------------------------- Docker volumes


def read_container_volume(
    c: Any, mount_path: str, tree: Path | None, on_bytes: OnBytes | None = None
) -> Manifest:
    """The files of the volume mounted at ``mount_path`` (from the archive API)."""
    from twinstack.migrate.manifest import read_tar

    stream, _stat = c.get_archive(mount_path, encode_stream=False)
    return read_tar(stream, extract_to=tree, on_bytes=on_bytes)


def write_tar(
    manifest: Manifest, paths: dict[str, Path], top: str, out: IO[bytes], on_bytes: OnBytes
) -> None:
    """A tar stream of ``manifest`` (contents from ``paths``) under directory ``top``."""
    first_of_group: dict[str, str] = {}
    now = int(time.time())  # symlink times are not read off the disk (see Entry)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for e in manifest.entries.values():
            name = top if e.path == "." else f"{top}/{e.path}"
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid = e.mode, e.uid, e.gid
            ti.mtime = now if e.mtime is None else e.mtime
            if e.type == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif e.type == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, e.target or ""
                tf.addfile(ti)
            elif e.link is not None and e.link in first_of_group:
                ti.type, ti.linkname = tarfile.LNKTYPE, first_of_group[e.link]
                tf.addfile(ti)
            else:
                if e.link is not None:
                    first_of_group[e.link] = name
                ti.size = e.size
                with paths[e.path].open("rb") as f:
                    tf.addfile(ti, f)
                on_bytes(e.size)


def put_tar(
    c: Any, path: str, manifest: Manifest, paths: dict[str, Path], top: str, on_bytes: OnBytes
) -> None:
    """Stream :func:`write_tar`'s archive into ``path`` of container ``c`` (no copy on disk):
    a thread writes the tar into a pipe, the archive API reads the other end in chunks."""
    import docker.errors as derr

    r, w = os.pipe()
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(w, "wb", buffering=1 << 20) as out:
                write_tar(manifest, paths, top, out, on_bytes)
        except BrokenPipeError:
            pass  # the request ended first; its error is the one reported
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=produce, name="twinstack-migrate-tar", daemon=True)
    thread.start()
    try:
        with os.fdopen(r, "rb") as rf:
            ok = c.put_archive(path, iter(lambda: rf.read(1 << 20), b""))
    except derr.APIError as exc:
        raise MigrateError(f"Docker refused the archive: {exc.explanation or exc}") from None
    finally:
        thread.join()
    if failed:
        raise failed[0]
    if not ok:
        raise MigrateError("Docker refused the archive")


@contextlib.contextmanager
def emptied_volume(docker: Any, c: Any, pair: VolumePair, stack: str) -> Iterator[Any]:
    """A helper container from the service's own image with the volume, emptied, at the
    same mount path; it exits at once and stays (stopped) for the archive API to write
    through, then it is removed. Writes go through it, not through the service's
    container, whose root file system may be read-only."""
    import docker.errors as derr
    from docker.types import Mount

    helper = docker.containers.create(
        c.attrs["Image"],
        entrypoint=["find"],
        command=[pair.mount_path, "-mindepth", "1", "-delete"],
        user="0:0",
        network_disabled=True,
        mounts=[Mount(target=pair.mount_path, source=pair.docker_volume, type="volume")],
        labels={"twinstack.stack": stack, "twinstack.migrate-helper": pair.docker_volume},
    )
    try:
        helper.start()
        res = helper.wait(timeout=600)
        if res.get("StatusCode") != 0:
            logs = helper.logs().decode(errors="replace").strip()[-300:]
            raise MigrateError(
                f"emptying Docker volume {pair.docker_volume} failed (exit "
                f"{res.get('StatusCode')}): {logs or 'no output'}; the service image needs "
                "`find`"
            )
        yield helper
    finally:
        with contextlib.suppress(derr.APIError):
            helper.remove(force=True)


# --------------------------------------------------------------------- libvirt volumes


def volume_format(vol: Any) -> str:
    fmt = ET.fromstring(vol.XMLDesc(0)).find("target/format")
    return fmt.get("type", "raw") if fmt is not None else "raw"


@contextlib.contextmanager
def _stream(conn: Any) -> Iterator[Any]:
    """A libvirt stream, finished on success and aborted on any failure (Ctrl-C too)."""
    st = conn.newStream(0)
    try:
        yield st
        st.finish()
    except BaseException:
        with contextlib.suppress(Exception):
            st.abort()
        raise


def download_volume(conn: Any, vol: Any, out: Path, on_bytes: OnBytes) -> None:
    def sink(_s: Any, data: bytes, fh: IO[bytes]) -> int:
        fh.write(data)
        on_bytes(len(data))
        return len(data)

    with out.open("wb") as f, _stream(conn) as st:
        vol.download(st, 0, 0, 0)
        st.recvAll(sink, f)


def upload_volume(conn: Any, vol: Any, src: Path, on_bytes: OnBytes) -> str:
    """Write ``src`` over the volume's file; returns the sha256 of ``src`` as sent.

    libvirt's upload does not shorten the file, so the upload runs on with zeros to the old
    file's end: nothing of the old image stays."""
    libvirt = libvirt_module()
    size = src.stat().st_size
    old = vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]
    total = max(size, old)
    digest = hashlib.sha256()
    left = [total - size]

    def source(_s: Any, n: int, fh: IO[bytes]) -> bytes:
        data = fh.read(n)
        digest.update(data)
        if not data and left[0] > 0:
            data = bytes(min(n, left[0]))
            left[0] -= len(data)
        on_bytes(len(data))
        return data

    with src.open("rb") as f, _stream(conn) as st:
        vol.upload(st, 0, total, 0)
        st.sendAll(source, f)
    return digest.hexdigest()


def volume_digest(conn: Any, vol: Any, length: int, on_bytes: OnBytes) -> str:
    """sha256 of the first ``length`` bytes of the volume's file, read back through libvirt
    (nothing written to disk)."""
    digest = hashlib.sha256()
    left = [length]

    def sink(_s: Any, data: bytes, _o: object) -> int:
        take = data[: left[0]]
        digest.update(take)
        left[0] -= len(take)
        on_bytes(len(data))
        return len(data)

    with _stream(conn) as st:
        vol.download(st, 0, length, 0)
        st.recvAll(sink, None)
    if left[0]:
        raise MigrateError(f"volume {vol.name()} is {length - left[0]} bytes, not {length}")
    return digest.hexdigest()
