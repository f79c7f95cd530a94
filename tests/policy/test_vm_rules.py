"""VM security rules (pulumi-libvirt), each through the analyzer protocol."""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from twinstack.wire import SECRET_SIG, SIG_KEY

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


PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEv...\n-----END PRIVATE KEY-----"


def env_user_data(content: str, path: str = "/etc/twinstack/web.env", **extra: str) -> str:
    """twinstack-style user-data that writes ``content`` to ``path``."""
    entry = {"path": path, "content": content, "permissions": "0600", **extra}
    return "#cloud-config\n" + yaml.safe_dump({"write_files": [entry]})


def _mime(*parts: tuple[str, str, bool]) -> str:
    """A MIME multi-part user-data of (content type, text, base64?) parts."""
    lines = ['Content-Type: multipart/mixed; boundary="TS"', "MIME-Version: 1.0", ""]
    for content_type, text, b64 in parts:
        lines += ["--TS", f"Content-Type: {content_type}"]
        if b64:
            lines += ["Content-Transfer-Encoding: base64", ""]
            lines.append(base64.b64encode(text.encode()).decode())
        else:
            lines += ["", text]
    return "\n".join([*lines, "--TS--", ""])


MIME_SCRIPT = _mime(
    ("text/cloud-config", "#cloud-config\nssh_pwauth: false\n", False),
    ("text/x-shellscript", "#!/bin/sh\nuseradd -m -p x bob\nSECRET_KEY=s3cr3t\n", True),
)
MIME_CLOUD_CONFIG = _mime(("text/cloud-config", "#cloud-config\npassword: hunter2\n", False))


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
        expect=[
            unknown_message("libvirt-cloud-init-no-passwords", PACK, "userData"),
            unknown_message("libvirt-no-env-secrets", PACK, "userData"),
        ],
    ),
    # libvirt-cloud-init-no-passwords: commands, scripts, MIME, archives, users[].passwd
    Case(
        "ci-runcmd-chpasswd-pipe",
        SEED,
        {"userData": "#cloud-config\nruncmd:\n  - echo 'root:pw' | chpasswd\n"},
        expect=["sets a password with chpasswd in runcmd"],
    ),
    Case(
        "ci-runcmd-argv-passwd-stdin",
        SEED,
        {"userData": "#cloud-config\nruncmd:\n  - [sh, -c, 'echo pw | passwd --stdin bob']\n"},
        expect=["sets a password with passwd --stdin in runcmd"],
    ),
    Case(
        "ci-runcmd-string-form",
        SEED,
        {"userData": "#cloud-config\nruncmd: echo pw | passwd root\n"},
        expect=["sets a password with a pipe into passwd in runcmd"],
    ),
    Case(
        "ci-bootcmd-usermod",
        SEED,
        {"userData": '#cloud-config\nbootcmd:\n  - usermod -p "$(openssl passwd -6 pw)" root\n'},
        expect=["sets a password with usermod -p in bootcmd"],
    ),
    Case(
        "ci-runcmd-openssl-passwd",
        SEED,
        {"userData": "#cloud-config\nruncmd:\n  - [sh, -c, 'openssl passwd -6 pw > /tmp/h']\n"},
        expect=["sets a password with openssl passwd in runcmd"],
    ),
    Case(
        "ci-runcmd-harmless",
        SEED,
        {
            "userData": (
                "#cloud-config\nruncmd:\n  - [systemctl, enable, --now, web.service]\n"
                "  - passwd -l root\n  - [chown, 'app:app', /var/lib/web]\n"
            )
        },
    ),
    Case(
        "ci-shell-script",
        SEED,
        {"userData": "#!/bin/bash\nset -e\necho 'root:pw' | chpasswd\n"},
        expect=["sets a password with chpasswd in its shell script"],
    ),
    Case(
        "ci-shell-script-comment-only",
        SEED,
        {"userData": "#!/bin/sh\n# no chpasswd here: keys only\nsystemctl enable web\n"},
    ),
    Case(
        "ci-mime-cloud-config-part",
        SEED,
        {"userData": MIME_CLOUD_CONFIG},
        expect=["sets a plaintext password (password:)"],
    ),
    Case(
        "ci-archive-script",
        SEED,
        {
            "userData": (
                "#cloud-config-archive\n- type: text/x-shellscript\n  content: |\n"
                "    #!/bin/sh\n    echo pw | passwd --stdin root\n"
            )
        },
        expect=["sets a password with passwd --stdin in its shell script"],
    ),
    Case(
        "ci-users-passwd-plain",
        SEED,
        {"userData": "#cloud-config\nusers:\n  - {name: bob, passwd: hunter2}\n"},
        expect=["sets a plaintext password for user bob (passwd is not a crypt hash)"],
    ),
    Case(
        "ci-users-hashed-passwd-plain",
        SEED,
        {"userData": "#cloud-config\nusers:\n  - {name: eve, hashed_passwd: pw}\n"},
        expect=["sets a plaintext password for user eve (hashed_passwd is not a crypt hash)"],
    ),
    Case(
        "ci-users-hashed-passwd-ok",
        SEED,
        {"userData": "#cloud-config\nusers:\n  - {name: eve, hashed_passwd: $y$j9T$salt$hash}\n"},
    ),
    Case(
        "ci-chpasswd-list-plain",
        SEED,
        {"userData": "#cloud-config\nchpasswd:\n  list: |\n    root:RANDOM\n    bob:pw\n"},
        expect=["sets a plaintext password for bob (chpasswd.list)"],
    ),
    Case(
        "ci-chpasswd-list-random-or-hashed-ok",
        SEED,
        {"userData": "#cloud-config\nchpasswd:\n  list: [root:R, 'bob:$6$salt$hash']\n"},
    ),
    # libvirt-no-env-secrets
    Case(
        "env-literal-secret",
        SEED,
        {"userData": env_user_data('DB_PASSWORD="hunter2"\nPORT="8080"\n')},
        expect=[
            "Cloud-init disk 'r' sets DB_PASSWORD to a literal value in its environment "
            "(/etc/twinstack/web.env). Move it to the service's build.secrets"
        ],
    ),
    Case(
        "env-secret-placeholder-ok",
        SEED,
        {"userData": env_user_data('DB_PASSWORD="[secret:dbPassword]"\nPORT="8080"\n')},
    ),
    Case(
        # twinstack's env file names the variables it filled from Pulumi secrets
        "env-declared-secret-ok",
        SEED,
        {
            "userData": {
                SIG_KEY: SECRET_SIG,
                "value": env_user_data(
                    '# twinstack: from Pulumi secrets: DB_PASSWORD\nDB_PASSWORD="hunter2"\n'
                ),
            }
        },
    ),
    Case(
        # a secret user-data does not make a literal in it a secret
        "env-undeclared-literal-in-secret-user-data",
        SEED,
        {
            "userData": {
                SIG_KEY: SECRET_SIG,
                "value": env_user_data(
                    '# twinstack: from Pulumi secrets: API_TOKEN\nDB_PASSWORD="hunter2"\n'
                ),
            }
        },
        expect=["sets DB_PASSWORD to a literal value"],
    ),
    Case(
        "env-multiline-value",
        SEED,
        {"userData": env_user_data('NOTE="two\nAPI_TOKEN=lines"\nTLS_CERT="' + PEM_KEY + '"\n')},
        expect=["has what looks like a credential in environment variable TLS_CERT"],
    ),
    Case(
        "env-file-pointer-ok",
        SEED,
        {"userData": env_user_data('DB_PASSWORD_FILE="/run/credentials/web.service/db"\n')},
    ),
    Case(
        "env-dotenv-anywhere",
        SEED,
        {"userData": env_user_data("export API_KEY=abc123\n", path="/opt/app/.env")},
        expect=["sets API_KEY to a literal value in its environment (/opt/app/.env)"],
    ),
    Case(
        "env-etc-environment-b64",
        SEED,
        {
            "userData": env_user_data(
                base64.b64encode(b"GITHUB_TOKEN=abc\n").decode(),
                path="/etc/environment",
                encoding="b64",
            )
        },
        expect=["sets GITHUB_TOKEN to a literal value in its environment (/etc/environment)"],
    ),
    Case(
        "env-systemd-unit",
        SEED,
        {
            "userData": env_user_data(
                '[Service]\nEnvironment="DB_PASSWORD=pw" PORT=1\nEnvironmentFile=/x.env\n',
                path="/etc/systemd/system/web.service.d/override.conf",
            )
        },
        expect=["sets DB_PASSWORD to a literal value in its environment (/etc/systemd/"],
    ),
    Case(
        "env-shell-script",
        SEED,
        {"userData": "#!/bin/sh\nexport API_TOKEN='abc'\nTOKEN=$(cat /run/t)\n"},
        expect=["sets API_TOKEN to a literal value in its environment (shell script)"],
    ),
    Case(
        "mime-script-part",  # both cloud-init rules
        SEED,
        {"userData": MIME_SCRIPT},
        expect=[
            "sets a password with useradd -p in its shell script",
            "sets SECRET_KEY to a literal value in its environment (shell script)",
        ],
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
    fired |= {d.policy for d in vm_pack.analyze_stack(bridged_stack()) if d.level == "mandatory"}
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


def test_env_secrets_allowed_keys(vm_pack: Pack) -> None:
    seed = resource(SEED, "r", {"userData": env_user_data('DB_PASSWORD="not-a-secret"\n')})
    assert [d.policy for d in vm_pack.analyze(seed)] == ["libvirt-no-env-secrets"]
    try:
        vm_pack.configure({"libvirt-no-env-secrets": {"allowedKeys": ["DB_PASSWORD"]}})
        assert vm_pack.analyze(seed) == []
    finally:
        vm_pack.configure(None)


@pytest.mark.parametrize("key", ["DB_PASSWORD", "API_KEY", "GITHUB_TOKEN", "PORT", "LOG_LEVEL"])
def test_env_secrets_judged_like_the_container_rule(
    vm_pack: Pack, container_pack: Pack, key: str
) -> None:
    """The same service's environment gets the same verdict in both runtimes."""
    container = resource(
        "docker:index/container:Container", "c", {"name": "c", "envs": [f"{key}=v4lue"]}
    )
    on_container = {d.policy for d in container_pack.analyze(container)}
    seed = resource(SEED, "r", {"userData": env_user_data(f'{key}="v4lue"\n')})
    on_vm = {d.policy for d in vm_pack.analyze(seed)}
    assert ("docker-no-env-secrets" in on_container) == ("libvirt-no-env-secrets" in on_vm)


# libvirt-bridged-network-allowlist (a stack policy: the domain and the network it joins)

BRIDGED = "libvirt-bridged-network-allowlist"


def network(name: str, mode: str, **props: Any) -> dict[str, Any]:
    return resource(NETWORK, name, {"name": f"t-{name}", "mode": mode, **props})


def domain(name: str, *nets: dict[str, Any], **nic: Any) -> dict[str, Any]:
    """A domain joining ``nets`` by networkId (their URNs as its dependencies, as recorded)."""
    props = copy.deepcopy(BASES[DOMAIN])
    props["networkInterfaces"] = [{"networkId": f"{n['name']}-id", **nic} for n in nets]
    return resource(DOMAIN, name, props, dependencies=[n["urn"] for n in nets])


def bridged_stack() -> list[dict[str, Any]]:
    lan = network("lan", "bridge", bridge="br0")
    return [lan, domain("vm-0", lan)]


def test_domain_on_bridge_network_is_flagged(vm_pack: Pack) -> None:
    res = bridged_stack()
    (diag,) = vm_pack.analyze_stack(res)
    assert (diag.policy, diag.level, diag.urn) == (BRIDGED, "mandatory", res[1]["urn"])
    assert diag.message.endswith(
        "Domain 'vm-0' joins network 'lan' (mode 'bridge' on host bridge br0), which puts the "
        "guest on the host's network, bypassing libvirt's network isolation. "
        'Join a mode="nat" or "none" (isolated) network instead, or allow br0 in '
        "`allowedHostInterfaces` or the network in `allowedNetworks`."
    )


@pytest.mark.parametrize("mode", ["route", "open"])
def test_domain_on_routed_network_is_flagged(vm_pack: Pack, mode: str) -> None:
    net = network("out", mode)
    diags = vm_pack.analyze_stack([net, domain("vm-0", net)])
    assert [(d.policy, d.level) for d in diags] == [(BRIDGED, "mandatory")]
    assert f"joins network 'out' (mode {mode!r})" in diags[0].message


@pytest.mark.parametrize("mode", ["nat", "none", None])
def test_domain_on_confined_network_passes(vm_pack: Pack, mode: str | None) -> None:
    net = network("apps", mode or "nat")
    if mode is None:
        del net["inputs"]["mode"]  # the provider's default: nat
    assert vm_pack.analyze_stack([net, domain("vm-0", net)]) == []


def test_matched_by_network_id_when_the_engine_knows_it(vm_pack: Pack) -> None:
    """Under the engine the network's state has its id: the domain's networkId names it."""
    lan = network("lan", "bridge", bridge="br0", id="uuid-lan")
    apps = network("apps", "nat", id="uuid-apps")
    on_lan = domain("vm-0", lan)
    on_lan["inputs"]["networkInterfaces"][0]["networkId"] = "uuid-lan"
    on_apps = domain("vm-1", apps)
    on_apps["inputs"]["networkInterfaces"][0]["networkId"] = "uuid-apps"
    for res in (on_lan, on_apps):
        res["dependencies"] = []  # the id alone decides
    diags = vm_pack.analyze_stack([lan, apps, on_lan, on_apps])
    assert [(d.policy, d.urn) for d in diags] == [(BRIDGED, on_lan["urn"])]


def test_matched_by_network_name(vm_pack: Pack) -> None:
    lan = network("lan", "bridge", bridge="br0")
    dom = domain("vm-0")
    dom["inputs"]["networkInterfaces"] = [{"networkName": "t-lan"}]
    diags = vm_pack.analyze_stack([lan, dom])
    assert [(d.policy, d.urn) for d in diags] == [(BRIDGED, dom["urn"])]


def test_other_domains_are_not_flagged(vm_pack: Pack) -> None:
    lan = network("lan", "bridge", bridge="br0")
    apps = network("apps", "nat")
    res = [lan, apps, domain("vm-0", apps), domain("vm-1", apps, lan)]
    diags = vm_pack.analyze_stack(res)
    assert [(d.policy, d.urn) for d in diags] == [(BRIDGED, res[3]["urn"])]


def test_unknown_network_id_in_preview_still_decides(vm_pack: Pack) -> None:
    """In a preview the network's id is unknown; the dependency URN still names it."""
    lan = network("lan", "bridge", bridge="br0", id=UNKNOWN)
    dom = domain("vm-0", lan)
    dom["inputs"]["networkInterfaces"][0]["networkId"] = UNKNOWN
    diags = vm_pack.analyze_stack([lan, dom])
    assert [(d.policy, d.level, d.urn) for d in diags] == [(BRIDGED, "mandatory", dom["urn"])]
    apps = network("apps", "nat", id=UNKNOWN)
    ok = domain("vm-1", apps)
    ok["inputs"]["networkInterfaces"][0]["networkId"] = UNKNOWN
    assert vm_pack.analyze_stack([lan, apps, ok]) == []


def test_unknown_network_mode_is_advisory(vm_pack: Pack) -> None:
    net = network("lan", UNKNOWN)
    diags = vm_pack.analyze_stack([net, domain("vm-0", net)])
    assert [(d.message, d.level) for d in diags] == [
        (unknown_message(BRIDGED, PACK, "mode"), "advisory")
    ]


@pytest.mark.parametrize(
    "allow",
    [
        {"allowedHostInterfaces": ["br0"]},
        {"allowedNetworks": ["lan"]},
        {"allowedNetworks": ["t-lan"]},
    ],
)
def test_bridged_network_allowlist(vm_pack: Pack, allow: dict[str, list[str]]) -> None:
    try:
        vm_pack.configure({BRIDGED: allow})
        assert vm_pack.analyze_stack(bridged_stack()) == []
    finally:
        vm_pack.configure(None)
