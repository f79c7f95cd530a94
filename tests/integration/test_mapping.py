"""The plan → daemon mapping (MAPPING.md) as pure functions: no daemons needed.

Not marked `integration`: these run with the unit tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from twinstack.plan import plan_stack
from twinstack.realize.docker_apply import (
    container_create_args,
    go_duration_ns,
    nano_cpus,
    upload_archive,
)
from twinstack.realize.libvirt_apply import cmdline_from, domain_xml, network_xml, volume_xml
from twinstack.realize.records import (
    DOCKER_CONTAINER,
    LIBVIRT_DOMAIN,
    LIBVIRT_NETWORK,
    LIBVIRT_VOLUME,
    Plan,
)

from ._support import ROOT


@pytest.fixture(scope="module")
def plan() -> Plan:
    return Plan(plan_stack("compare", root=ROOT))


def _one(plan: Plan, token: str, name: str) -> Any:
    return next(r for r in plan.of_type(token) if r.inputs.get("name") == name)


def test_durations_and_cpus() -> None:
    assert go_duration_ns("5s") == 5 * 10**9
    assert go_duration_ns("1m30s") == 90 * 10**9
    assert go_duration_ns("0s") == 0
    assert nano_cpus("0.5") == 500_000_000


def test_container_fields(plan: Plan) -> None:
    rec = _one(plan, DOCKER_CONTAINER, "compare-api-0")
    create, host = container_create_args(rec)
    i = rec.inputs
    assert host["mem_limit"] == i["memory"] * 1024 * 1024  # the provider's MiB
    assert host["nano_cpus"] == nano_cpus(i["cpus"])
    assert host["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    port = i["ports"][0]
    key = f"{port['internal']}/{port['protocol']}"
    assert host["port_bindings"] == {key: [(port["ip"], port["external"])]}
    assert host["cap_drop"] == ["ALL"] and host["read_only"] is True
    assert create["healthcheck"]["test"] == i["healthcheck"]["tests"]
    assert create["labels"]["twinstack.stack"] == "compare"


def test_upload_archive_is_the_providers() -> None:
    """A container's `uploads` (a secrets writer's files) as the provider's tar: the path
    below /, the content byte for byte, the mode and owner it names."""
    import io
    import tarfile

    data = upload_archive(
        [
            {"file": "/run/secrets/API_TOKEN", "content": "s3cr\u00e9t\n", "permissions": "0444"},
            {"file": "/opt/run.sh", "contentBase64": "IyEvYmluL3NoCg==", "executable": True},
            {"file": "/etc/x.conf", "content": "x=1", "owner": "10001", "group": "10001"},
        ]
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        got = {
            m.name: (tar.extractfile(m).read(), oct(m.mode), m.uid, m.gid)  # type: ignore[union-attr]
            for m in tar.getmembers()
        }
    assert got == {
        "run/secrets/API_TOKEN": ("s3cr\u00e9t\n".encode(), "0o444", 0, 0),
        "opt/run.sh": (b"#!/bin/sh\n", "0o744", 0, 0),
        "etc/x.conf": (b"x=1", "0o644", 10001, 10001),
    }


def test_network_xml(plan: Plan) -> None:
    net = ET.fromstring(network_xml(_one(plan, LIBVIRT_NETWORK, "compare-apps")))
    ip = net.find("ip")
    assert ip is not None and ip.get("address") == "10.90.0.1" and ip.get("prefix") == "25"
    rng = net.find("ip/dhcp/range")
    assert rng is not None and (rng.get("start"), rng.get("end")) == ("10.90.0.2", "10.90.0.126")
    assert net.find("forward").get("mode") == "nat"  # type: ignore[union-attr]


def test_volume_xml_backing_store() -> None:
    vol = ET.fromstring(volume_xml("a.qcow2", 8 << 30, "qcow2", ("/p/base.qcow2", "qcow2")))
    assert vol.findtext("capacity") == str(8 << 30)
    assert vol.findtext("backingStore/path") == "/p/base.qcow2"


def test_cmdline_is_sorted_like_the_provider() -> None:
    assert cmdline_from([{"root": "/dev/vda", "_": "rw", "console": "ttyS0"}]) == (
        "console=ttyS0 root=/dev/vda rw"
    )


class _Vol:
    def path(self) -> str:
        return "/pool/seed.iso"


class _Pool:
    def storageVolLookupByName(self, _name: str) -> _Vol:
        return _Vol()


class _Conn:
    def storagePoolLookupByName(self, _name: str) -> _Pool:
        return _Pool()


def test_domain_xml(plan: Plan) -> None:
    rec = _one(plan, LIBVIRT_DOMAIN, "compare-api-0")
    dom = ET.fromstring(domain_xml(_Conn(), plan, rec, Path("/tmp/console.log")))
    assert dom.get("type") == rec.inputs["type"]
    assert dom.findtext("memory") == str(rec.inputs["memory"])
    assert dom.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]
    assert dom.findtext("vcpu") == str(rec.inputs["vcpu"])
    assert dom.findtext("os/kernel") == rec.inputs["kernel"]
    disks = dom.findall("devices/disk")
    root_vol = _one(plan, LIBVIRT_VOLUME, "compare-api-0-root.qcow2")
    src = disks[0].find("source")
    assert src is not None and src.get("volume") == root_vol.inputs["name"]
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb", "hdd"]  # type: ignore[union-attr]
    assert disks[-1].findtext("serial") == "cloudinit"
    assert dom.find("devices/interface/source").get("network") == "compare-apps"  # type: ignore[union-attr]
    assert dom.find("devices/channel/target").get("name") == "org.qemu.guest_agent.0"  # type: ignore[union-attr]
