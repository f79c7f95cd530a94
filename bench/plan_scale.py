"""Benchmark: plan N generated services in both runtimes (offline, under mocks).

Usage: .venv/bin/python bench/plan_scale.py [N ...]   (default: 100 1000)

Each N runs in a fresh subprocess so that peak RSS is that run's own. Prints wall time,
resources recorded and peak memory (ru_maxrss) per N. Target on a 2-core machine:
1,000 services in runtime `both` in ≤ 10 s and ≤ 1 GiB.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def generate(n: int) -> dict[str, object]:
    """A stack with n services spread over 4 networks and 2 hosts, runtime both."""
    nets = [{"name": f"net{k}", "cidr": f"10.{100 + k}.0.0/20", "mode": "nat"} for k in range(4)]
    services = []
    for i in range(n):
        svc: dict[str, object] = {
            "name": f"svc{i}",
            "build": {
                "base": "twinstack/debian-base:bookworm",
                "files": [{"path": f"/srv/svc{i}/index.html", "content": f"svc {i}\n"}],
                "command": ["python3", "-m", "http.server", "8080"],
                "environment": {"SERVICE": f"svc{i}", "MODE": "bench"},
            },
            "resources": {"vcpus": 1 + i % 4, "memoryMib": 256 * (1 + i % 8), "diskGib": 4},
            "ports": [{"name": "http", "port": 8080, "hostPort": 20000 + i}],
            "healthCheck": {"http": {"path": "/", "port": "http"}},
            "networks": [f"net{i % 4}"],
            "host": "a" if i % 2 == 0 else "b",
        }
        if i % 3 == 0:
            svc["volumes"] = [{"name": "data", "mountPath": "/var/lib/data", "sizeGib": 1}]
        services.append(svc)
    return {
        "config": {
            "twinstack:runtime": "both",
            "twinstack:hosts": {
                "a": {"libvirtUri": "qemu+ssh://a/system", "dockerHost": "ssh://a"},
                "b": {"libvirtUri": "qemu+ssh://b/system", "dockerHost": "ssh://b"},
            },
            "twinstack:vmImage": {"source": "/var/lib/twinstack/images/base.qcow2"},
            "twinstack:networks": nets,
            "twinstack:storage": [
                {"name": "data", "path": "/var/lib/twinstack/pools/bench", "capacityGib": 1_000_000}
            ],
            "twinstack:services": services,
        }
    }


def one(n: int) -> dict[str, float]:
    from twinstack.plan import plan_stack

    with tempfile.TemporaryDirectory() as tmp:
        stack_file = Path(tmp) / "Pulumi.bench.yaml"
        stack_file.write_text(yaml.safe_dump(generate(n)), encoding="utf-8")
        t0 = time.perf_counter()
        doc = plan_stack("bench", root=ROOT, stack_file=stack_file)
        wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "services": n,
        "resources": len(doc["resources"]),
        "wall_s": wall,
        "peak_rss_mib": peak_kib / 1024,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(one(int(sys.argv[2]))))
        return
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000]
    print(f"{'services':>9} {'resources':>10} {'wall s':>8} {'peak RSS MiB':>13}")
    for n in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['services']:>9} {r['resources']:>10} {r['wall_s']:>8.2f} {r['peak_rss_mib']:>13.0f}"
        )


if __name__ == "__main__":
    main()
