"""Stack policies (AnalyzeStack): limits, VM/container parity, delete-before-replace."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from ._support import UNKNOWN, Pack, resource, unknown_message

CONTAINER = "docker:index/container:Container"
DOMAIN = "libvirt:index/domain:Domain"
SEED = "libvirt:index/cloudInitDisk:CloudInitDisk"
VOLUME = "libvirt:index/volume:Volume"
PACK = "twinstack-guardrails"

HEALTH = "exec true"
USER_DATA = "#cloud-config\n" + yaml.safe_dump(
    {
        "write_files": [
            {"path": "/etc/twinstack/web.env", "content": 'PORT="8080"\n'},
            {
                "path": "/etc/systemd/system/web.service",
                "content": "[Service]\nEnvironmentFile=/etc/twinstack/web.env\n"
                'ExecStart="/usr/bin/web"\n',
            },
            {"path": "/usr/local/lib/twinstack/health-web", "content": f"{HEALTH}\n"},
            {
                "path": "/etc/systemd/system/twinstack-health-web.service",
                "content": "[Service]\nType=oneshot\nEnvironmentFile=/etc/twinstack/web.env\n"
                'ExecStart="/bin/bash" "/usr/local/lib/twinstack/health-web"\n',
            },
        ],
        "mounts": [["LABEL=x", "/var/lib/web", "ext4", "defaults", "0", "2"]],
    }
)
"""The VM side of ``container()``: parity-complete (a plan of a real stack is in
test_parity_facts.py); the container leaves user, directory and command to its image."""


def container(**over: Any) -> dict[str, Any]:
    props = {
        "name": "t-web-0",
        "memory": 512,
        "cpus": "0.5",
        "envs": ["PORT=8080"],
        "mounts": [{"type": "volume", "target": "/var/lib/web", "source": "v"}],
        "healthcheck": {"tests": ["CMD", "/bin/bash", "-c", HEALTH]},
        "labels": [
            {"label": "twinstack.service", "value": "web"},
            {"label": "twinstack.replica", "value": "0"},
        ],
    }
    props.update(over)
    return resource(CONTAINER, "web-container-0", props, deleteBeforeReplace=True)


def vm_pair(user_data: str = USER_DATA, **over: Any) -> list[dict[str, Any]]:
    seed = resource(SEED, "web-vm-0-cloudinit", {"userData": user_data}, deleteBeforeReplace=True)
    facts = {"twinstack": {"service": "web", "replica": 0}}
    props = {"name": "t-web-0", "memory": 512, "vcpu": 1, "description": json.dumps(facts)}
    props.update(over)
    domain = resource(
        DOMAIN, "web-vm-0", props, deleteBeforeReplace=True, dependencies=[seed["urn"]]
    )
    return [seed, domain]


def test_compliant_stack_passes(guardrails_pack: Pack) -> None:
    assert guardrails_pack.analyze_stack([container(), *vm_pair()]) == []


def test_limits_missing_and_out_of_bounds(guardrails_pack: Pack) -> None:
    res = [container(memory=32, cpus=None), *vm_pair(vcpu=64)]
    res[0]["inputs"].pop("cpus")
    diags = [
        d for d in guardrails_pack.analyze_stack(res) if d.policy == "instance-limits-within-bounds"
    ]
    by_urn = {d.urn: d.message for d in diags}
    assert "memory 32 MiB outside [64, 65536] MiB; no CPU limit" in by_urn[res[0]["urn"]]
    assert "vcpu 64 outside [0.1, 16]" in by_urn[res[2]["urn"]]
    assert {d.level for d in diags} == {"mandatory"}


def test_limits_bounds_are_configurable(guardrails_pack: Pack) -> None:
    res = [container(memory=32), *vm_pair(memory=32)]
    try:
        guardrails_pack.configure({"instance-limits-within-bounds": {"minMemoryMib": 16}})
        assert guardrails_pack.analyze_stack(res) == []
    finally:
        guardrails_pack.configure(None)


def test_parity_reports_every_differing_facet(guardrails_pack: Pack) -> None:
    drifted = USER_DATA.replace("PORT=", "HOST=").replace("/var/lib/web", "/data")
    res = [container(memory=768), *vm_pair(drifted)]
    diags = [d for d in guardrails_pack.analyze_stack(res) if d.policy == "runtime-parity"]
    text = "\n".join(d.message for d in diags)
    assert len(diags) == 3, text
    assert (
        "differs between runtimes in memory (MiB) [memory]: container 'web-container-0' has "
        "768, VM 'web-vm-0' has 512. Both realizations are rendered from the same spec "
        "(components.service, components.renderers): re-plan both instead of editing one side "
        "(spec `resources.memoryMib`); or list 'memory' in this policy's `ignore` config." in text
    )
    # the probe runs with the service's environment: one report names both facets
    assert (
        "in environment [env] (so does the health probe's: health.env): container "
        """'web-container-0' has {HOST unset, PORT="8080"}, VM 'web-vm-0' has """
        """{HOST="8080", PORT unset}."""
    ) in text
    assert (
        "in volume mount paths [volumes]: container 'web-container-0' has [/var/lib/web], "
        "VM 'web-vm-0' has [/data]" in text
    )


def test_parity_health_and_ignore(guardrails_pack: Pack) -> None:
    res = [container(healthcheck=None), *vm_pair()]
    res[0]["inputs"].pop("healthcheck")
    diags = guardrails_pack.analyze_stack(res)
    assert [d.message.split("\n")[1][:60] for d in diags] == [
        "Service 'web' replica 0 differs between runtimes in health p"
    ]
    try:
        guardrails_pack.configure({"runtime-parity": {"ignore": ["health"]}})
        assert guardrails_pack.analyze_stack(res) == []
    finally:
        guardrails_pack.configure(None)


def test_parity_skips_redacted_secrets(guardrails_pack: Pack) -> None:
    res = [container(envs="[secret]"), *vm_pair("[secret]")]
    assert guardrails_pack.analyze_stack(res) == []


def test_parity_unknown_is_advisory(guardrails_pack: Pack) -> None:
    res = [container(memory=UNKNOWN), *vm_pair()]
    diags = guardrails_pack.analyze_stack(res)
    assert sorted(d.message for d in diags) == sorted(
        [
            unknown_message("instance-limits-within-bounds", PACK, "memory"),
            unknown_message("runtime-parity", PACK, "memory"),
        ]
    )
    assert {d.level for d in diags} == {"advisory"}


def test_delete_before_replace(guardrails_pack: Pack) -> None:
    c = container(ports=[{"internal": 80, "external": 18080, "ip": "127.0.0.1"}])
    c.pop("deleteBeforeReplace")
    vol = resource(VOLUME, "web-vm-0-root", {"name": "t-web-0-root.qcow2", "format": "qcow2"})
    protected = resource(VOLUME, "web-vm-0-data", {"name": "t-web-0-data.qcow2"}, protect=True)
    unnamed = copy.deepcopy(vol)
    unnamed["urn"] += "-x"
    unnamed["inputs"].pop("name")
    diags = guardrails_pack.analyze_stack([c, *vm_pair(), vol, protected, unnamed])
    by_urn = {d.urn: d.message for d in diags}
    assert set(by_urn) == {c["urn"], vol["urn"]}
    assert (
        "'web-container-0' has fixed name 't-web-0' and fixed host port(s) 18080"
        in by_urn[c["urn"]]
    )
    assert "'web-vm-0-root' has fixed name 't-web-0-root.qcow2'" in by_urn[vol["urn"]]
