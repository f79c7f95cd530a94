"""Container security rules, each through the analyzer protocol.

Per rule: the compliant container passes, every violating variant reports exactly that
rule with the expected message, a missing property behaves like the provider default, and
an unknown value yields the SDK's advisory "can't run policy ... during preview".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ._support import UNKNOWN, Pack, del_path, resource, set_path, unknown_message

CONTAINER = "docker:index/container:Container"
REMOTE = "docker:index/remoteImage:RemoteImage"
IMAGE = "docker:index/image:Image"
PACK = "twinstack-container-security"

COMPLIANT: dict[str, Any] = {
    "name": "dev-web-0",
    "image": "twinstack/dev-web:3f9a1c",
    "envs": ["PORT=8080", "DATA_DIR=/var/lib/web"],
    "user": "app",
    "memory": 512,
    "memorySwap": 512,
    "cpus": "0.5",
    "ports": [{"internal": 8080, "external": 18080, "ip": "127.0.0.1", "protocol": "tcp"}],
    "mounts": [{"target": "/var/lib/web", "type": "volume", "source": "dev-web-0-data"}],
    "healthcheck": {"tests": ["CMD", "/bin/bash", "-c", "true"], "interval": "5s"},
    "restart": "on-failure",
    "maxRetryCount": 5,
    "logDriver": "json-file",
    "logOpts": {"max-size": "10m", "max-file": "3"},
    "labels": [{"label": "twinstack.service", "value": "web"}],
    "capabilities": {"drops": ["ALL"]},
    "securityOpts": ["no-new-privileges:true"],
    "readOnly": True,
    "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m"},
}


@dataclass
class Case:
    id: str
    policy: str
    set: dict[str, Any] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    expect: list[str] = field(default_factory=list)  # one substring per expected violation
    type: str = CONTAINER
    base: dict[str, Any] | None = None


def _props(case: Case) -> dict[str, Any]:
    import copy

    props = copy.deepcopy(case.base if case.base is not None else COMPLIANT)
    for path in case.delete:
        del_path(props, path)
    for path, value in case.set.items():
        set_path(props, path, value)
    return props


CASES = [
    # docker-no-privileged
    Case(
        "privileged",
        "docker-no-privileged",
        {"privileged": True},
        expect=["Container 'c' sets privileged=true"],
    ),
    Case("privileged-false", "docker-no-privileged", {"privileged": False}),
    Case(
        "privileged-unknown",
        "docker-no-privileged",
        {"privileged": UNKNOWN},
        expect=[unknown_message("docker-no-privileged", PACK, "privileged")],
    ),
    # docker-no-socket-mount
    Case(
        "socket-bind",
        "docker-no-socket-mount",
        {
            "mounts": [
                {"type": "bind", "source": "/var/run/docker.sock", "target": "/s", "readOnly": True}
            ]
        },
        expect=["mounts the Docker socket /var/run/docker.sock at /s"],
    ),
    Case(
        "socket-volume-hostpath",
        "docker-no-socket-mount",
        {"volumes": [{"hostPath": "/run/docker.sock", "containerPath": "/d"}]},
        expect=["mounts the Docker socket /run/docker.sock at /d"],
    ),
    Case("socket-missing-mounts", "docker-no-socket-mount", delete=["mounts"]),
    Case(
        "socket-unknown",
        "docker-no-socket-mount",
        {"mounts": UNKNOWN},
        expect=[
            unknown_message("docker-no-socket-mount", PACK, "mounts"),
            unknown_message("docker-no-sensitive-host-mounts", PACK, "mounts"),
        ],
    ),
    # docker-no-sensitive-host-mounts
    Case(
        "etc-rw",
        "docker-no-sensitive-host-mounts",
        {"mounts": [{"type": "bind", "source": "/etc", "target": "/host-etc"}]},
        expect=["mounts host path /etc (under /etc) read-write at /host-etc"],
    ),
    Case(
        "root-rw",
        "docker-no-sensitive-host-mounts",
        {"volumes": [{"hostPath": "/", "containerPath": "/host", "readOnly": False}]},
        expect=["mounts host path / (under /) read-write at /host"],
    ),
    Case(
        "usr-sub-rw",
        "docker-no-sensitive-host-mounts",
        {"mounts": [{"type": "bind", "source": "/usr/local/../lib/x", "target": "/x"}]},
        expect=["host path /usr/lib/x (under /usr)"],
    ),
    Case(
        "etc-ro-ok",
        "docker-no-sensitive-host-mounts",
        {"mounts": [{"type": "bind", "source": "/etc/ssl", "target": "/ssl", "readOnly": True}]},
    ),
    Case(
        "srv-rw-ok",
        "docker-no-sensitive-host-mounts",
        {"mounts": [{"type": "bind", "source": "/srv/data", "target": "/data"}]},
    ),
    Case(
        "sensitive-unknown",
        "docker-no-sensitive-host-mounts",
        {"mounts": [{"type": "bind", "source": UNKNOWN, "target": "/x"}]},
        expect=[
            unknown_message("docker-no-socket-mount", PACK, "mounts.0.source"),
            unknown_message("docker-no-sensitive-host-mounts", PACK, "mounts.0.source"),
        ],
    ),
    # docker-no-host-namespaces
    Case(
        "host-net",
        "docker-no-host-namespaces",
        {"networkMode": "host"},
        expect=["shares the host's network namespace (networkMode=host, CIS 5.9)"],
    ),
    Case(
        "host-pid-ipc-userns",
        "docker-no-host-namespaces",
        {"pidMode": "host", "ipcMode": "host", "usernsMode": "host"},
        expect=[
            "(pidMode=host, CIS 5.15)",
            "(ipcMode=host, CIS 5.16)",
            "(usernsMode=host, CIS 5.30)",
        ],
    ),
    Case("bridge-ok", "docker-no-host-namespaces", {"networkMode": "bridge"}),
    Case(
        "ns-unknown",
        "docker-no-host-namespaces",
        {"pidMode": UNKNOWN},
        expect=[unknown_message("docker-no-host-namespaces", PACK, "pidMode")],
    ),
    # docker-capabilities-allowlist
    Case(
        "cap-sys-admin",
        "docker-capabilities-allowlist",
        {"capabilities": {"adds": ["SYS_ADMIN"], "drops": ["ALL"]}},
        expect=["adds high-risk capability SYS_ADMIN, which is not in the allowlist"],
    ),
    Case(
        "cap-prefixed",
        "docker-capabilities-allowlist",
        {"capabilities": {"adds": ["cap_net_raw"], "drops": ["ALL"]}},
        expect=["adds capability NET_RAW, which is not in the allowlist (NET_BIND_SERVICE)"],
    ),
    Case(
        "cap-allowed",
        "docker-capabilities-allowlist",
        {"capabilities": {"adds": ["NET_BIND_SERVICE"], "drops": ["ALL"]}},
    ),
    Case(
        "cap-unknown",
        "docker-capabilities-allowlist",
        {"capabilities": {"adds": UNKNOWN, "drops": ["ALL"]}},
        expect=[unknown_message("docker-capabilities-allowlist", PACK, "capabilities.adds")],
    ),
    # docker-drop-all-capabilities
    Case(
        "no-drop",
        "docker-drop-all-capabilities",
        {"capabilities": {"drops": ["NET_RAW"]}},
        expect=["does not drop all capabilities"],
    ),
    Case(
        "drop-missing",
        "docker-drop-all-capabilities",
        delete=["capabilities"],
        expect=["does not drop all capabilities"],
    ),
    Case(
        "drop-unknown",
        "docker-drop-all-capabilities",
        {"capabilities": UNKNOWN},
        expect=[
            unknown_message("docker-capabilities-allowlist", PACK, "capabilities"),
            unknown_message("docker-drop-all-capabilities", PACK, "capabilities"),
        ],
    ),
    # docker-no-new-privileges
    Case(
        "nnp-missing",
        "docker-no-new-privileges",
        delete=["securityOpts"],
        expect=['does not set no-new-privileges. Add "no-new-privileges:true"'],
    ),
    Case(
        "nnp-equals-form", "docker-no-new-privileges", {"securityOpts": ["no-new-privileges=true"]}
    ),
    Case(
        "nnp-unknown",
        "docker-no-new-privileges",
        {"securityOpts": UNKNOWN},
        expect=[
            unknown_message("docker-no-new-privileges", PACK, "securityOpts"),
            unknown_message("docker-security-profiles", PACK, "securityOpts"),
        ],
    ),
    # docker-security-profiles
    Case(
        "seccomp-off",
        "docker-security-profiles",
        {
            "securityOpts": [
                "no-new-privileges:true",
                "seccomp=unconfined",
                "apparmor:unconfined",
                "label=disable",
            ]
        },
        expect=[
            "disables seccomp (CIS 5.21)",
            "disables AppArmor (CIS 5.1)",
            "disables SELinux labels (CIS 5.2)",
        ],
    ),
    Case(
        "custom-profile-ok",
        "docker-security-profiles",
        {"securityOpts": ["no-new-privileges:true", "seccomp=/etc/docker/seccomp.json"]},
    ),
    # docker-non-root-user
    Case(
        "root-user", "docker-non-root-user", {"user": "root"}, expect=["runs as root (user='root')"]
    ),
    Case("uid0", "docker-non-root-user", {"user": "0:0"}, expect=["runs as root (user='0:0')"]),
    Case("user-missing", "docker-non-root-user", delete=["user"], expect=["does not set `user`"]),
    Case(
        "user-unknown",
        "docker-non-root-user",
        {"user": UNKNOWN},
        expect=[unknown_message("docker-non-root-user", PACK, "user")],
    ),
    # docker-read-only-rootfs
    Case(
        "rw-rootfs",
        "docker-read-only-rootfs",
        {"readOnly": False},
        expect=["has a writable root filesystem. Set readOnly=true"],
    ),
    Case(
        "rootfs-missing",
        "docker-read-only-rootfs",
        delete=["readOnly"],
        expect=["has a writable root filesystem"],
    ),
    Case(
        "rootfs-unknown",
        "docker-read-only-rootfs",
        {"readOnly": UNKNOWN},
        expect=[unknown_message("docker-read-only-rootfs", PACK, "readOnly")],
    ),
    # a container created and never started (a secrets writer) writes through its root
    # before any start; a started one may not
    Case("rw-never-started", "docker-read-only-rootfs", {"readOnly": False, "start": False}),
    Case(
        "rw-started",
        "docker-read-only-rootfs",
        {"readOnly": False, "start": True},
        expect=["has a writable root filesystem"],
    ),
    # docker-resource-limits
    Case(
        "no-limits",
        "docker-resource-limits",
        delete=["memory", "cpus"],
        expect=["has no memory limit", "has no CPU limit"],
    ),
    Case("zero-memory", "docker-resource-limits", {"memory": 0}, expect=["has no memory limit"]),
    Case("quota-ok", "docker-resource-limits", {"cpuQuota": 50000}, delete=["cpus"]),
    Case(
        "limits-unknown",
        "docker-resource-limits",
        {"memory": UNKNOWN},
        expect=[unknown_message("docker-resource-limits", PACK, "memory")],
    ),
    # docker-ports-loopback
    Case(
        "port-wildcard",
        "docker-ports-loopback",
        {"ports.0.ip": "0.0.0.0"},
        expect=["publishes port 8080 on 0.0.0.0:18080, reachable from every network"],
    ),
    Case(
        "port-v6-wildcard",
        "docker-ports-loopback",
        {"ports.0.ip": "::"},
        expect=["publishes port 8080 on :::18080"],
    ),
    Case(
        "port-ip-missing",
        "docker-ports-loopback",
        delete=["ports.0.ip"],
        expect=["publishes port 8080 on 0.0.0.0 (the provider default):18080"],
    ),
    Case(
        "port-lan-ip",
        "docker-ports-loopback",
        {"ports.0.ip": "192.168.1.10"},
        expect=["on 192.168.1.10:18080"],
    ),
    Case(
        "port-opt-in",
        "docker-ports-loopback",
        {
            "ports.0.ip": "0.0.0.0",
            "labels": [{"label": "twinstack.allow-public-ports", "value": "true"}],
        },
    ),
    Case("port-v6-loopback", "docker-ports-loopback", {"ports.0.ip": "::1"}),
    Case(
        "port-unknown",
        "docker-ports-loopback",
        {"ports.0.ip": UNKNOWN},
        expect=[unknown_message("docker-ports-loopback", PACK, "ports.0.ip")],
    ),
    # docker-no-publish-all-ports
    Case(
        "publish-all",
        "docker-no-publish-all-ports",
        {"publishAllPorts": True},
        expect=["sets publishAllPorts=true"],
    ),
    Case(
        "publish-all-unknown",
        "docker-no-publish-all-ports",
        {"publishAllPorts": UNKNOWN},
        expect=[unknown_message("docker-no-publish-all-ports", PACK, "publishAllPorts")],
    ),
    # docker-no-devices
    Case(
        "device",
        "docker-no-devices",
        {"devices": [{"hostPath": "/dev/kvm"}]},
        expect=["passes host device /dev/kvm through"],
    ),
    Case(
        "device-requests",
        "docker-no-devices",
        {"deviceRequests": [{"driver": "nvidia", "count": -1}]},
        expect=["requests host devices (deviceRequests"],
    ),
    Case(
        "device-unknown",
        "docker-no-devices",
        {"devices": UNKNOWN},
        expect=[unknown_message("docker-no-devices", PACK, "devices")],
    ),
    # docker-healthcheck
    Case("no-health", "docker-healthcheck", delete=["healthcheck"], expect=["has no health check"]),
    Case("no-health-never-started", "docker-healthcheck", {"start": False}, delete=["healthcheck"]),
    Case(
        "no-health-started-later",  # mustRun alone is not `start: false`
        "docker-healthcheck",
        {"mustRun": False},
        delete=["healthcheck"],
        expect=["has no health check"],
    ),
    Case(
        "health-none",
        "docker-healthcheck",
        {"healthcheck": {"tests": ["NONE"]}},
        expect=["has no health check"],
    ),
    Case(
        "health-unknown",
        "docker-healthcheck",
        {"healthcheck": {"tests": UNKNOWN}},
        expect=[unknown_message("docker-healthcheck", PACK, "healthcheck.tests")],
    ),
    # docker-restart-bounded
    Case(
        "restart-always",
        "docker-restart-bounded",
        {"restart": "always"},
        expect=["restarts without a bound (restart='always')"],
    ),
    Case(
        "restart-unless-stopped",
        "docker-restart-bounded",
        {"restart": "unless-stopped"},
        expect=["(restart='unless-stopped')"],
    ),
    Case(
        "on-failure-unbounded",
        "docker-restart-bounded",
        delete=["maxRetryCount"],
        expect=['restart="on-failure" with maxRetryCount=0 (unbounded)'],
    ),
    Case(
        "on-failure-too-many",
        "docker-restart-bounded",
        {"maxRetryCount": 50},
        expect=["maxRetryCount=50 (above the limit). Set maxRetryCount between 1 and 5"],
    ),
    Case("restart-missing-ok", "docker-restart-bounded", delete=["restart", "maxRetryCount"]),
    Case(
        "restart-unknown",
        "docker-restart-bounded",
        {"restart": UNKNOWN},
        expect=[unknown_message("docker-restart-bounded", PACK, "restart")],
    ),
    # docker-log-limits
    Case(
        "no-log-opts",
        "docker-log-limits",
        delete=["logOpts"],
        expect=["logs to json-file without max-size and max-file"],
    ),
    Case(
        "log-missing-driver",
        "docker-log-limits",
        {"logOpts": {"max-size": "10m"}},
        delete=["logDriver"],
        expect=["without max-file"],
    ),
    Case("syslog-ok", "docker-log-limits", {"logDriver": "syslog"}, delete=["logOpts"]),
    Case(
        "log-unknown",
        "docker-log-limits",
        {"logOpts": UNKNOWN},
        expect=[unknown_message("docker-log-limits", PACK, "logOpts")],
    ),
    # docker-image-pinned
    Case(
        "latest",
        "docker-image-pinned",
        {"image": "nginx:latest"},
        expect=["Image reference 'nginx:latest' on 'c' (image) uses the mutable :latest tag"],
    ),
    Case(
        "untagged",
        "docker-image-pinned",
        {"image": "registry:5000/team/nginx"},
        expect=["has no tag (Docker uses :latest)"],
    ),
    Case("image-id-ok", "docker-image-pinned", {"image": "sha256:" + "a" * 64}),
    Case(
        "remote-latest",
        "docker-image-pinned",
        {"name": "redis:latest"},
        type=REMOTE,
        base={"name": "redis:7.2"},
        expect=["'redis:latest' on 'c' (name) uses the mutable"],
    ),
    Case(
        "remote-missing",
        "docker-image-pinned",
        type=REMOTE,
        base={},
        expect=["Image 'c' has no `name`"],
    ),
    Case(
        "remote-build-untagged",
        "docker-image-pinned",
        type=REMOTE,
        base={"name": "twinstack/web", "build": {"context": ".twinstack/build/dev/web"}},
        expect=["'twinstack/web' on 'c' (name) has no tag"],
    ),
    Case(
        "build-untagged",
        "docker-image-pinned",
        type=IMAGE,
        base={"imageName": "twinstack/web"},
        expect=["'twinstack/web' on 'c' (imageName) has no tag"],
    ),
    Case(
        "image-unknown",
        "docker-image-pinned",
        {"image": UNKNOWN},
        expect=[unknown_message("docker-image-pinned", PACK, "image")],
    ),
    # docker-no-env-secrets
    Case(
        "env-password",
        "docker-no-env-secrets",
        {"envs": ["PORT=1", "DB_PASSWORD=hunter2"]},
        expect=["sets DB_PASSWORD to a literal value in its environment"],
    ),
    Case(
        "env-aws-key",
        "docker-no-env-secrets",
        {"envs": ["SOMETHING=AKIAABCDEFGHIJKLMNOP"]},
        expect=["looks like a credential in environment variable SOMETHING"],
    ),
    Case(
        "env-file-ok",
        "docker-no-env-secrets",
        {"envs": ["DB_PASSWORD_FILE=/run/secrets/db", "TOKEN="]},
    ),
    Case("env-redacted-secret", "docker-no-env-secrets", {"envs": "[secret]"}),
    Case(
        "env-unknown",
        "docker-no-env-secrets",
        {"envs": UNKNOWN},
        expect=[unknown_message("docker-no-env-secrets", PACK, "envs")],
    ),
]


def test_compliant_container_passes_every_rule(container_pack: Pack) -> None:
    res = resource(CONTAINER, "c", COMPLIANT)
    assert container_pack.analyze(res) == []


def test_every_policy_has_cases() -> None:
    from twinstack_rules import container

    names = {p.name for p in container.POLICIES}
    assert names == {c.policy for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule(container_pack: Pack, case: Case) -> None:
    diags = container_pack.analyze(resource(case.type, "c", _props(case)))
    unknown = any("can't be known during preview" in e for e in case.expect)
    if unknown:
        # The SDK's preview semantics: an advisory diagnostic, never a mandatory one.
        assert sorted(d.message for d in diags) == sorted(case.expect)
        assert {d.level for d in diags} == {"advisory"}
        return
    assert {d.policy for d in diags} <= {case.policy}, diags
    assert len(diags) == len(case.expect), [d.message for d in diags]
    for diag in diags:
        assert diag.level == "mandatory"
        assert diag.message.startswith(
            next(p.description for p in container_pack.info.policies if p.name == case.policy)
        )
    joined = "\n".join(d.message for d in diags)
    for expected in case.expect:
        assert expected in joined


def test_config_changes_thresholds(container_pack: Pack) -> None:
    props = _props(
        Case(
            "x",
            "docker-capabilities-allowlist",
            {"capabilities": {"adds": ["NET_RAW"], "drops": ["ALL"]}, "maxRetryCount": 8},
        )
    )
    res = resource(CONTAINER, "c", props)
    before = {d.policy for d in container_pack.analyze(res)}
    assert before == {"docker-capabilities-allowlist", "docker-restart-bounded"}
    try:
        container_pack.configure(
            {
                "docker-capabilities-allowlist": {"allowedCapabilities": ["NET_RAW"]},
                "docker-restart-bounded": {"maxRetryCount": 10},
            }
        )
        assert container_pack.analyze(res) == []
    finally:
        container_pack.configure(None)


def test_require_digest_spares_images_built_here(container_pack: Pack) -> None:
    """`requireDigest` asks pulled images for a digest; an image the stack builds
    (RemoteImage with `build`) has none before it is built, so its tag is enough."""
    pulled = resource(REMOTE, "pulled", {"name": "redis:7.2"})
    built = resource(
        REMOTE, "built", {"name": "twinstack/dev-web:3f9a1c", "build": {"context": "ctx"}}
    )
    assert container_pack.analyze(pulled) == container_pack.analyze(built) == []
    try:
        container_pack.configure({"docker-image-pinned": {"requireDigest": True}})
        assert [d.policy for d in container_pack.analyze(pulled)] == ["docker-image-pinned"]
        assert container_pack.analyze(built) == []
    finally:
        container_pack.configure(None)


def test_enforcement_levels_from_config(container_pack: Pack) -> None:
    res = resource(CONTAINER, "c", {**COMPLIANT, "privileged": True, "readOnly": False})
    try:
        container_pack.configure({"all": "advisory", "docker-read-only-rootfs": "disabled"})
        diags = container_pack.analyze(res)
        assert [(d.policy, d.level) for d in diags] == [("docker-no-privileged", "advisory")]
    finally:
        container_pack.configure(None)
    levels = {(d.policy, d.level) for d in container_pack.analyze(res)}
    assert levels == {
        ("docker-no-privileged", "mandatory"),
        ("docker-read-only-rootfs", "mandatory"),
    }
