"""VM security rules (pulumi-libvirt), each through the analyzer protocol."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from ._support import UNKNOWN, Pack, del_path, resource, set_path, unknown_message

DOMAIN = "libvirt:index/domain:Domain"
NETWORK = "libvirt:index/network:Network"
POOL = "libvirt:index/pool:Pool"
VOLUME = "libvirt:index/volume:Volume"
SEED = "libvirt:index/cloudInitDisk:CloudInitDisk"
PACK = "twinstack-vm-security"

BASES: dict[str, dict[str, Any]] = {
    DOMAIN: {
        "name": "dev-web-0",
        "memory": 512,
        "vcpu": 1,
        "disks": [{"volumeId": "vol-1"}],
        "networkInterfaces": [{"networkId": "net-1", "addresses": ["10.0.0.5"]}],
        "consoles": [{"type": "pty", "targetPort": "0", "targetType": "serial"}],
        "graphics": {"type": "vnc", "listenType": "address", "listenAddress": "127.0.0.1"},
    },
    NETWORK: {"name": "dev-apps", "mode": "nat", "addresses": ["10.0.0.0/24"]},
    POOL: {"name": "dev-data", "type": "dir", "target": {"path": "/var/lib/twinstack/pools/dev"}},
    VOLUME: {
        "name": "dev-web-0-data.qcow2",
        "pool": "dev-data",
        "size": 1073741824,
        "format": "qcow2",
    },
    SEED: {"name": "seed.iso", "userData": "#cloud-config\nssh_pwauth: false\n"},
}
PROTECTED = {POOL, VOLUME}


@dataclass
class Case:
    id: str
    type: str
    set: dict[str, Any] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    expect: list[str] = field(default_factory=list)
    protect: bool | None = None


CASES = [
    # libvirt-graphics-loopback
    Case(
        "vnc-wildcard",
        DOMAIN,
        {"graphics.listenAddress": "0.0.0.0"},
        expect=["exposes its VNC console on address 0.0.0.0 without a password"],
    ),
    Case(
        "spice-network",
        DOMAIN,
        {"graphics": {"type": "spice", "listenType": "network"}},
        expect=["exposes its SPICE console on listen type 'network'"],
    ),
    Case("graphics-missing", DOMAIN, delete=["graphics"]),
    Case("graphics-address-default", DOMAIN, delete=["graphics.listenAddress"]),
    Case(
        "graphics-unknown",
        DOMAIN,
        {"graphics.listenAddress": UNKNOWN},
        expect=[unknown_message("libvirt-graphics-loopback", PACK, "graphics.listenAddress")],
    ),
    # libvirt-console-loopback
    Case(
        "tcp-console",
        DOMAIN,
        {
            "consoles": [
                {"type": "tcp", "targetPort": "0", "sourceHost": "0.0.0.0", "sourceService": "4555"}
            ]
        },
        expect=["TCP serial console listening on 0.0.0.0:4555"],
    ),
    Case("tcp-console-default-host", DOMAIN, {"consoles": [{"type": "tcp", "targetPort": "0"}]}),
    # libvirt-xslt-safe
    Case(
        "xslt-seclabel",
        DOMAIN,
        {"xml": {"xslt": "<xsl:template match='/domain'><seclabel type='none'/></xsl:template>"}},
        expect=["XSLT transform that rewrites <seclabel>"],
    ),
    Case(
        "xslt-qemu-args",
        DOMAIN,
        {"xml": {"xslt": "<qemu:commandline><qemu:arg value='-x'/>"}},
        expect=["XSLT transform that injects QEMU command-line arguments"],
    ),
    Case("xslt-harmless", DOMAIN, {"xml": {"xslt": "<xsl:template match='/domain/devices'/>"}}),
    # libvirt-filesystem-passthrough
    Case(
        "fs-etc",
        DOMAIN,
        {"filesystems": [{"source": "/etc", "target": "etc"}]},
        expect=["shares host path /etc (under /etc) with the guest"],
    ),
    Case(
        "fs-writable",
        DOMAIN,
        {"filesystems": [{"source": "/srv/share", "target": "s", "readonly": False}]},
        expect=["shares host path /srv/share writable (readonly=false, accessmode=mapped)"],
    ),
    Case("fs-default-readonly", DOMAIN, {"filesystems": [{"source": "/srv/share", "target": "s"}]}),
    # libvirt-disk-sources
    Case(
        "block-device",
        DOMAIN,
        {"disks": [{"blockDevice": "/dev/sdb"}]},
        expect=["attaches raw host block device /dev/sdb"],
    ),
    Case(
        "http-disk",
        DOMAIN,
        {"disks": [{"url": "http://example.com/x.iso"}]},
        expect=["boots a disk from plain-HTTP URL http://example.com/x.iso"],
    ),
    Case(
        "http-volume-source",
        VOLUME,
        {"source": "http://mirror/x.qcow2"},
        protect=True,
        expect=["downloads its image over plain HTTP (http://mirror/x.qcow2)"],
    ),
    Case("https-volume-source", VOLUME, {"source": "https://mirror/x.qcow2"}, protect=False),
    # libvirt-interface-allowlist
    Case(
        "bridge",
        DOMAIN,
        {"networkInterfaces": [{"bridge": "br0"}]},
        expect=["attaches to host interface br0 (bridge)"],
    ),
    Case(
        "macvtap",
        DOMAIN,
        {"networkInterfaces": [{"macvtap": "eth0"}]},
        expect=["host interface eth0 (macvtap)"],
    ),
    # libvirt-no-tpm-passthrough
    Case(
        "tpm-passthrough",
        DOMAIN,
        {"tpm": {"backendType": "passthrough"}},
        expect=["passes the host TPM (/dev/tpm0) through"],
    ),
    Case("tpm-emulator", DOMAIN, {"tpm": {"backendType": "emulator"}}),
    # libvirt-network-mode
    Case("open-network", NETWORK, {"mode": "open"}, expect=["uses mode 'open'"]),
    Case("network-mode-missing", NETWORK, delete=["mode"]),
    Case(
        "network-unknown",
        NETWORK,
        {"mode": UNKNOWN},
        expect=[unknown_message("libvirt-network-mode", PACK, "mode")],
    ),
    # libvirt-volume-format
    Case("no-format", VOLUME, delete=["format"], expect=["has no explicit format"]),
    Case(
        "format-unknown",
        VOLUME,
        {"format": UNKNOWN},
        expect=[unknown_message("libvirt-volume-format", PACK, "format")],
    ),
    # libvirt-pool-location
    Case(
        "pool-in-etc",
        POOL,
        {"target.path": "/etc/pools"},
        expect=["located at /etc/pools, inside system directory /etc"],
    ),
    Case("pool-root", POOL, {"target.path": "/"}, expect=["inside system directory /"]),
    Case(
        "pool-legacy-path",
        POOL,
        {"path": "/usr/pools"},
        delete=["target"],
        expect=["located at /usr/pools"],
    ),
    Case("pool-no-path", POOL, delete=["target"], expect=["is a dir pool without a path"]),
    Case(
        "pool-unknown",
        POOL,
        {"target.path": UNKNOWN},
        expect=[unknown_message("libvirt-pool-location", PACK, "target.path")],
    ),
    # libvirt-cloud-init-no-passwords
    Case(
        "ci-password",
        SEED,
        {"userData": "#cloud-config\npassword: hunter2\nchpasswd: {expire: false}\n"},
        expect=["sets a plaintext password (password:)"],
    ),
    Case(
        "ci-plain-text-passwd",
        SEED,
        {"userData": "#cloud-config\nusers:\n  - name: bob\n    plain_text_passwd: pw\n"},
        expect=["sets a plaintext password for user bob (plain_text_passwd)"],
    ),
    Case(
        "ci-chpasswd-users",
        SEED,
        {
            "userData": (
                "#cloud-config\nchpasswd:\n  users:\n    - {name: root, password: pw, type: text}\n"
            )
        },
        expect=["sets a plaintext password for root (chpasswd)"],
    ),
    Case(
        "ci-ssh-pwauth",
        SEED,
        {"userData": "#cloud-config\nssh_pwauth: true\n"},
        expect=["enables SSH password authentication (ssh_pwauth)"],
    ),
    Case(
        "ci-hashed-ok",
        SEED,
        {"userData": "#cloud-config\nusers:\n  - {name: bob, passwd: $6$abc, lock_passwd: true}\n"},
    ),
    Case("ci-missing", SEED, delete=["userData"]),
    Case(
        "ci-unknown",
        SEED,
        {"userData": UNKNOWN},
        expect=[unknown_message("libvirt-cloud-init-no-passwords", PACK, "userData")],
    ),
    # libvirt-protect-stateful
    Case("pool-unprotected", POOL, protect=False, expect=["Pool 'r' is not protected"]),
    Case(
        "data-volume-unprotected",
        VOLUME,
        protect=False,
        expect=[
            "Volume 'r' is a data volume (no source image, no base volume) and is not protected"
        ],
    ),
    Case("clone-unprotected-ok", VOLUME, {"baseVolumeId": "base-1"}, protect=False),
]


def _resource(case: Case) -> dict[str, Any]:
    props = copy.deepcopy(BASES[case.type])
    for path in case.delete:
        del_path(props, path)
    for path, value in case.set.items():
        set_path(props, path, value)
    protect = case.protect if case.protect is not None else case.type in PROTECTED
    return resource(case.type, "r", props, protect=protect)


@pytest.mark.parametrize("type_token", sorted(BASES))
def test_compliant_resources_pass(vm_pack: Pack, type_token: str) -> None:
    assert vm_pack.analyze(_resource(Case("ok", type_token))) == []


def test_every_policy_has_a_violating_case(vm_pack: Pack) -> None:
    from twinstack_rules import vm

    fired = {
        d.policy
        for case in CASES
        if case.expect
        for d in vm_pack.analyze(_resource(case))
        if d.level == "mandatory"
    }
    assert fired == {p.name for p in vm.POLICIES}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule(vm_pack: Pack, case: Case) -> None:
    diags = vm_pack.analyze(_resource(case))
    messages = "\n".join(d.message for d in diags)
    assert len(diags) == len(case.expect), messages
    for expected in case.expect:
        assert expected in messages
    if any("can't be known" in e for e in case.expect):
        assert {d.level for d in diags} == {"advisory"}
    else:
        assert {d.level for d in diags} <= {"mandatory"}


@pytest.mark.parametrize(
    ("type_token", "prop", "value"),
    [
        (DOMAIN, "consoles", UNKNOWN),
        (DOMAIN, "xml", {"xslt": UNKNOWN}),
        (DOMAIN, "filesystems", UNKNOWN),
        (DOMAIN, "networkInterfaces", UNKNOWN),
        (DOMAIN, "tpm", UNKNOWN),
    ],
)
def test_unknown_values_are_advisory(vm_pack: Pack, type_token: str, prop: str, value: Any) -> None:
    props = {**BASES[type_token], prop: value}
    diags = vm_pack.analyze(resource(type_token, "r", props))
    assert diags, "an unknown value must not pass silently"
    assert {d.level for d in diags} == {"advisory"}
    assert all("can't be known during preview" in d.message for d in diags)
