"""`twinstack migrate` against real dockerd and libvirtd (issue 11).

The example `api` service deployed as both twins (stack `itmig`, network 10.213.9.0/24).
Data written through the container's own HTTP interface is read back through the VM's
after `migrate --to vm`, and back again after `--to container`; odd content (empty and
large files, deep trees, odd names, symlinks, hard links, 0600 files, set-gid dirs)
rides along and comes back with the same manifest. A run killed mid-copy leaves the
source intact and serving, and the next run completes.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.spec import ServiceSpec, load_stack
from twinstack.migrate.manifest import Manifest, differences, read_tar
from twinstack.migrate.run import migrate
from twinstack.realize import apply_plan, wait_container
from twinstack.realize.guest import guest_exec, wait_vm

from ._support import CLIENT, ROOT, PlanFn, derived_stack, example_service, teardown_stack, timed

pytestmark = pytest.mark.integration

STACK = "itmig"
NAME = f"{STACK}-api-0"
MOUNT = "/var/lib/api"
VM_TIMEOUT_S = float(os.environ.get("TWINSTACK_VM_TIMEOUT_S", "600"))
CLI = [sys.executable, "-m", "twinstack.cli"]
JOURNAL = ROOT / ".twinstack" / "migrate" / f"{STACK}--api.json"


@dataclass
class Deployed:
    spec: ServiceSpec
    stack_file: Path
    plan: dict[str, Any]


@pytest.fixture(scope="module")
def deployed(
    docker: Any, virt: Any, images: Any, domain_type: str, plan_of: PlanFn,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployed]:  # fmt: skip
    tmp = tmp_path_factory.mktemp(STACK)
    teardown_stack(docker, virt, STACK)
    JOURNAL.unlink(missing_ok=True)
    try:
        stack_file = derived_stack(tmp, STACK, [example_service("api")], runtime="both",
                                   domain_type=domain_type, cidr="10.213.9.0/24")  # fmt: skip
        doc = plan_of(STACK, stack_file)
        with timed("migrate: apply (both runtimes)"):
            applied = apply_plan(doc, root=ROOT, docker=docker, libvirt=virt)
        assert applied.libvirt is not None
        with timed("migrate: both healthy"):
            assert wait_container(docker, NAME, timeout_s=120).healthy
            vh = wait_vm(virt, NAME, "api", applied.libvirt.consoles[NAME], timeout_s=VM_TIMEOUT_S)
            assert vh.healthy, str(vh)
        spec = next(s for s in load_stack(stack_file).services if s.name == "api")
        yield Deployed(spec, stack_file, doc)
    finally:
        teardown_stack(docker, virt, STACK)
        JOURNAL.unlink(missing_ok=True)


def _ask_container(docker: Any, *args: str) -> Any:
    res = docker.containers.get(NAME).exec_run(["python3", "-c", CLIENT, "8081", *args])
    assert res.exit_code == 0, res.output.decode()
    return json.loads(res.output.decode())["body"]


def _ask_vm(virt: Any, *args: str) -> Any:
    res = guest_exec(virt.lookupByName(NAME), ["/usr/bin/python3", "-c", CLIENT, "8081", *args])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)["body"]


def _volume(docker: Any) -> Manifest:
    stream, _ = docker.containers.get(NAME).get_archive(MOUNT, encode_stream=False)
    return read_tar(stream)


def _odd_archive() -> bytes:
    """Odd content as a tar for Docker's archive API (written by the daemon, as root)."""
    buf = io.BytesIO()

    def add(name: str, *, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
            uid: int = 0, gid: int = 0, link: str = "") -> None:  # fmt: skip
        ti = tarfile.TarInfo(f"odd/{name}" if name else "odd")
        ti.type, ti.mode, ti.uid, ti.gid, ti.linkname = kind, mode, uid, gid, link
        ti.mtime = 1_600_000_000
        ti.size = len(data) if kind == tarfile.REGTYPE else 0
        tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        add("", kind=tarfile.DIRTYPE, mode=0o755)
        add("empty")
        add("large.bin", data=os.urandom(24 << 20))
        deep = "/".join(f"d{i}" for i in range(30))
        for i in range(30):
            add("/".join(f"d{j}" for j in range(i + 1)), kind=tarfile.DIRTYPE, mode=0o755)
        add(f"{deep}/leaf", data=b"bottom\n")
        add("name with spaces, ünïcode and ✓", data=b"x")
        add("secret", data=b"s", mode=0o600, uid=10001, gid=10001)
        add("shared", kind=tarfile.DIRTYPE, mode=0o2775, gid=10001)
        add("shared/a", data=b"linked")
        add("hard-a", kind=tarfile.LNKTYPE, link="odd/shared/a")
        add("rel-link", kind=tarfile.SYMTYPE, link="shared/a", mode=0o777)
        add("abs-link", kind=tarfile.SYMTYPE, link="/etc/hostname", mode=0o777)
    return buf.getvalue()


def _odd_part(m: Manifest) -> dict[str, Any]:
    return {p: e for p, e in m.entries.items() if p == "odd" or p.startswith("odd/")}


def test_data_moves_both_ways_and_reads_back_through_http(
    deployed: Deployed, docker: Any, virt: Any
) -> None:
    # the service user has one uid in both twins (files keep a meaningful owner)
    uid_c = docker.containers.get(NAME).exec_run(["id", "-u", "app"]).output.decode().strip()
    uid_v = guest_exec(virt.lookupByName(NAME), ["/usr/bin/id", "-u", "app"]).stdout.strip()
    assert uid_c == uid_v == "10001"

    for i in range(3):
        _ask_container(docker, "POST", "/items", json.dumps({"id": f"c{i}", "n": i}))
    items = _ask_container(docker, "GET", "/items")
    assert docker.containers.get(NAME).put_archive(MOUNT, _odd_archive())
    before = _volume(docker)
    volume_dir = _volume_dir(docker)
    disks_before = _disks(virt)

    with timed("migrate: container → vm"):
        res = migrate(docker=docker, conn=virt, root=ROOT, stack=STACK, svc=deployed.spec,
                      to="vm", replicas=None)  # fmt: skip
    (vol,) = res.replicas[0].volumes
    assert vol.verified and vol.files == before.files and vol.bytes == before.bytes
    assert _ask_vm(virt, "GET", "/items") == items
    # the VM serves the odd files with the same bytes
    check = guest_exec(virt.lookupByName(NAME), ["/usr/bin/sha256sum", f"{MOUNT}/odd/large.bin"])
    assert check.stdout.split()[0] == before.entries["odd/large.bin"].sha256
    _ask_vm(virt, "POST", "/items", json.dumps({"id": "from-vm"}))
    assert guest_exec(virt.lookupByName(NAME), ["/usr/bin/sync"]).exit_code == 0

    with timed("migrate: vm → container"):
        res = migrate(docker=docker, conn=virt, root=ROOT, stack=STACK, svc=deployed.spec,
                      to="container", replicas=[0])  # fmt: skip
    assert res.replicas[0].volumes[0].verified
    assert _ask_container(docker, "GET", "/items") == [*items, {"id": "from-vm"}]
    after = _volume(docker)
    odd_before, odd_after = _odd_part(before), _odd_part(after)
    assert odd_after == odd_before, differences(Manifest(odd_before), Manifest(odd_after))
    assert not JOURNAL.exists()

    # the storage is the same Pulumi-managed resource: the same Docker volume, the same
    # libvirt volumes, and applying the plan again replaces nothing
    assert _volume_dir(docker) == volume_dir
    assert _disks(virt) == disks_before
    again = apply_plan(deployed.plan, root=ROOT, docker=docker, libvirt=virt)
    assert again.docker is not None and again.docker.replaced == []
    assert again.libvirt is not None and again.libvirt.replaced == []


def _volume_dir(docker: Any) -> tuple[str, int]:
    """The Docker volume's directory and its inode (local driver): the same volume, not a
    new one of the same name."""
    path = docker.api.inspect_volume(f"{NAME}-data")["Mountpoint"]
    return path, os.stat(path).st_ino


def _disks(virt: Any) -> dict[str, int]:
    """The stack's libvirt volumes (key → capacity): the same ones before and after."""
    return {
        v.key(): v.info()[1]
        for p in virt.listAllStoragePools(0)
        if p.name().startswith(f"{STACK}-")
        for v in p.listAllVolumes(0)
    }


def _journal_phase() -> str:
    try:
        return str(json.loads(JOURNAL.read_text()).get("phase", ""))
    except (OSError, ValueError):
        return ""


def test_killed_mid_copy_leaves_the_source_serving_and_a_rerun_completes(
    deployed: Deployed, docker: Any, virt: Any, tmp_path: Path
) -> None:
    # enough data that the copy takes a while (the kill must land mid-copy)
    big = tmp_path / "big.tar"
    payload = os.urandom(1 << 20)
    with tarfile.open(big, "w") as tf:
        ti = tarfile.TarInfo("big.bin")
        ti.size = 400 << 20
        tf.addfile(ti, io.BufferedReader(_Repeat(payload, ti.size)))
    with big.open("rb") as f:
        assert docker.containers.get(NAME).put_archive(MOUNT, f)
    items = _ask_container(docker, "GET", "/items")
    before = _volume(docker)
    args = [*CLI, "migrate", "--stack", STACK, "--stack-file", str(deployed.stack_file),
            "--service", "api", "--to", "vm"]  # fmt: skip

    dry = subprocess.run([*args, "--dry-run", "-f", "json"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["replicas"][0]["volumes"][0]["bytes"] == before.bytes
    assert docker.containers.get(NAME).attrs["State"]["Running"]  # nothing was stopped

    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while _journal_phase() != "copying volume data":
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the copy never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, (out, err)
    assert "terminated (SIGTERM)" in err and "is untouched and started again" in err, err
    assert "Traceback" not in err
    # the source: intact and serving
    assert wait_container(docker, NAME, timeout_s=120).healthy
    assert _ask_container(docker, "GET", "/items") == items
    assert differences(before, _volume(docker)) == []

    with timed("migrate: rerun after a kill"):
        rerun = subprocess.run([*args, "-f", "json"], capture_output=True, text=True, cwd=ROOT,
                               timeout=1200)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    done = json.loads(rerun.stdout)
    # a target left partly written is recorded for the next run; one not yet written was
    # started again and nothing is left to report
    partly = "partly written" in err
    assert (done["resumed"] is not None) == partly, (err, done["resumed"])
    assert done["replicas"][0]["volumes"][0]["verified"] is True
    assert _ask_vm(virt, "GET", "/items") == items
    sha = guest_exec(virt.lookupByName(NAME), ["/usr/bin/sha256sum", f"{MOUNT}/big.bin"])
    assert sha.stdout.split()[0] == before.entries["big.bin"].sha256
    assert not JOURNAL.exists()


def test_a_missing_side_is_a_clear_error(deployed: Deployed, docker: Any, virt: Any) -> None:
    res = subprocess.run(
        [*CLI, "migrate", "--stack", "itnothere", "--stack-file", str(deployed.stack_file),
         "--service", "api", "--to", "vm"], capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert res.returncode == 2
    assert "deploy both sides first" in res.stderr and "Traceback" not in res.stderr


class _Repeat(io.RawIOBase):
    """``size`` bytes of a repeated block, read without holding them in memory."""

    def __init__(self, block: bytes, size: int) -> None:
        self.block, self.left, self.pos = block, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.left, len(self.block) - self.pos)
        b[:n] = self.block[self.pos : self.pos + n]
        self.pos = (self.pos + n) % len(self.block)
        self.left -= n
        return n
