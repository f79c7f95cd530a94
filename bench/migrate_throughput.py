"""`twinstack migrate` throughput beside a plain `tar` copy of the same data (issue 11).

Deploys the example `api` service as both twins (stack `itbench`), fills its Docker
volume with ``--gib`` of data (files of 1 MiB to 64 MiB, incompressible), then measures
in one run:

- ``tar``: ``tar -C <volume dir> -cf - . | tar -C <tmp> -xf -`` on this disk (the
  baseline the issue names; the volume's own directory under Docker's data root);
- ``migrate --to vm`` and ``--to container``: the copy of the volume as the result
  reports it (read, image, verify, upload or write, read back), restarts not included.

Prints one JSON line per measurement and a summary; tears everything down. Needs the
daemons (``bash scripts/daemons.sh start``) and the base images (``twinstack images
build``).

    .venv/bin/python bench/migrate_throughput.py --gib 1
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.spec import load_stack  # noqa: E402
from tests.integration._support import derived_stack, example_service, teardown_stack  # noqa: E402
from twinstack.images import build_images  # noqa: E402
from twinstack.migrate.run import migrate  # noqa: E402
from twinstack.plan import plan_stack  # noqa: E402
from twinstack.realize import apply_plan, docker_client, libvirt_conn, wait_container  # noqa: E402
from twinstack.realize.guest import wait_vm  # noqa: E402

STACK = "itbench"
NAME = f"{STACK}-api-0"
MOUNT = "/var/lib/api"
MIB = 1 << 20


def fill(docker: object, gib: float) -> int:
    """Write ``gib`` of incompressible files into the container's volume (archive API)."""
    total, i = int(gib * 1024 * MIB), 0
    written = 0
    block = os.urandom(64 * MIB)
    container = docker.containers.get(NAME)  # type: ignore[attr-defined]
    while written < total:
        size = min(total - written, MIB << (i % 7))  # 1, 2, 4, … 64 MiB
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            ti = tarfile.TarInfo(f"bench/f{i:05d}")
            ti.size = size
            tf.addfile(ti, io.BytesIO(block[:size]))
        container.put_archive(MOUNT, buf.getvalue())
        written += size
        i += 1
    return written


def tar_copy(docker: object) -> tuple[int, float]:
    src = Path(docker.api.inspect_volume(f"{NAME}-data")["Mountpoint"])  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(dir="/var/tmp") as dst:
        t0 = time.monotonic()
        subprocess.run(f"tar -C {src} -cf - . | tar -C {dst} -xf -", shell=True, check=True)
        secs = time.monotonic() - t0
        size = sum(p.stat().st_size for p in Path(dst).rglob("*") if p.is_file())
    return size, secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=1.0)
    args = ap.parse_args()
    docker, conn = docker_client(), libvirt_conn()
    images = build_images(ROOT / ".twinstack" / "images")
    from twinstack.realize import detect_domain_type

    domain_type = detect_domain_type(images.kernel)
    tmp = Path(tempfile.mkdtemp())
    teardown_stack(docker, conn, STACK)
    rows = []
    try:
        svc = example_service("api")
        svc["volumes"] = [{**svc["volumes"][0], "sizeGib": max(2, int(args.gib * 1.5) + 1)}]
        stack_file = derived_stack(tmp, STACK, [svc], runtime="both", domain_type=domain_type,
                                   cidr="10.213.77.0/24")  # fmt: skip
        os.chdir(ROOT)
        doc = plan_stack(STACK, root=ROOT, stack_file=stack_file)
        applied = apply_plan(doc, root=ROOT, docker=docker, libvirt=conn)
        assert applied.libvirt is not None
        assert wait_container(docker, NAME, timeout_s=120).healthy
        assert wait_vm(conn, NAME, "api", applied.libvirt.consoles[NAME], timeout_s=900).healthy
        spec = next(s for s in load_stack(stack_file).services if s.name == "api")
        size = fill(docker, args.gib)
        for step in ("tar", "vm", "container", "tar"):
            if step == "tar":
                nbytes, secs = tar_copy(docker)
            else:
                res = migrate(docker=docker, conn=conn, root=ROOT, stack=STACK, svc=spec,
                              to=step, replicas=None)  # fmt: skip
                vol = res.replicas[0].volumes[0]
                nbytes, secs = vol.bytes, vol.seconds
            row = {"step": step, "bytes": nbytes, "seconds": round(secs, 2),
                   "mbPerS": round(nbytes / 1e6 / secs, 1)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
        tar_best = max(r["mbPerS"] for r in rows if r["step"] == "tar")
        for r in rows:
            if r["step"] != "tar":
                print(f"migrate --to {r['step']}: {r['mbPerS']} MB/s = "
                      f"{r['mbPerS'] / tar_best:.2f}x tar ({tar_best} MB/s), {size} bytes")  # fmt: skip
    finally:
        teardown_stack(docker, conn, STACK)
        shutil.rmtree(tmp, ignore_errors=True)
        (ROOT / ".twinstack" / "migrate" / f"{STACK}--api.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
