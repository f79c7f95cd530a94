"""Inputs that equal what the pinned providers store back, so that `pulumi up` of an
unchanged stack plans no replacement (issue: three defects found by reading the providers'
code; each test below failed before its fix).

The read-back rules are those of the providers pulumi-docker 5.2.0 and pulumi-libvirt 0.5.4
bundle (terraform-provider-docker ``nanoInt64ToDecimalString``; terraform-provider-libvirt
v0.8.1 ``setCmdlineArgs`` / ``splitKernelCmdLine``), see components/provider_forms.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.provider_forms import (
    docker_cpus,
    docker_cpus_exact,
    docker_duration,
    libvirt_cmdlines,
)
from components.spec import Resources
from twinstack.errors import SpecError
from twinstack.realize.docker_apply import go_duration_ns
from twinstack.realize.libvirt_apply import cmdline_from

from .helpers import base_config, by_name, make_project, plan

# (vcpus, what the provider's Read stores): whole numbers gain ".0" (or, from 10 on, keep
# a bare "."), other values lose trailing zeros; some values are rounded (lossy).
READ_BACK = [
    (1, "1.0"),
    (2, "2.0"),
    (12, "12.0"),
    (10, "10."),
    (100, "100."),
    (0.5, "0.5"),
    (0.25, "0.25"),
    (1.5, "1.5"),
    (4.75, "4.75"),
    (0.05, "0.1"),
    (10.05, "10.1"),
]


@pytest.mark.parametrize(("vcpus", "stored"), READ_BACK)
def test_docker_cpus_is_what_the_provider_reads_back(vcpus: float, stored: str) -> None:
    assert docker_cpus(vcpus) == stored
    assert docker_cpus(float(stored)) == stored  # a fixed point: no diff on the next up


def test_container_cpus_input_is_the_read_back_form(tmp_path: Path) -> None:
    doc = plan(make_project(tmp_path), "forms", base_config(), runtime="container")
    for res in doc["resources"]:
        if res["type"] == "docker:index/container:Container":
            cpus = res["inputs"]["cpus"]
            assert docker_cpus(float(cpus)) == cpus, res["name"]
    web = by_name(doc, "docker:index/container:Container", "web-container-0")
    assert web["inputs"]["cpus"] == "1.0"  # was "1": replaced on every `pulumi up`


# Go's time.Duration.String() of whole seconds (printed by `go run` with go1.26.8)
GO_DURATIONS = [
    (0, "0s"), (1, "1s"), (59, "59s"), (60, "1m0s"), (61, "1m1s"), (90, "1m30s"),
    (599, "9m59s"), (3599, "59m59s"), (3600, "1h0m0s"), (3601, "1h0m1s"), (3661, "1h1m1s"),
    (7200, "2h0m0s"),
]  # fmt: skip


@pytest.mark.parametrize(("seconds", "stored"), GO_DURATIONS)
def test_docker_duration_is_what_the_provider_reads_back(seconds: int, stored: str) -> None:
    assert docker_duration(seconds) == stored


@given(st.integers(0, 10 * 3600))
def test_docker_duration_parses_back_to_its_seconds(seconds: int) -> None:
    assert go_duration_ns(docker_duration(seconds)) == seconds * 10**9


def test_container_healthcheck_durations_are_the_read_back_form(tmp_path: Path) -> None:
    """An interval of a minute or more was written "60s" and read back "1m0s": every
    container's healthcheck was an update on every `pulumi preview` (found by
    bench/engine_up.py at 1,000 services)."""
    cfg = base_config()
    web = next(s for s in cfg["twinstack:services"] if s["name"] == "web")
    web["healthCheck"] = {"http": {"path": "/", "port": "http"}, "intervalS": 3600,
                          "timeoutS": 90, "startPeriodS": 60}  # fmt: skip
    doc = plan(make_project(tmp_path), "forms", cfg, runtime="container")
    check = by_name(doc, "docker:index/container:Container", "web-container-0")["inputs"]
    assert (check["healthcheck"]["interval"], check["healthcheck"]["timeout"]) == (
        "1h0m0s",
        "1m30s",
    )
    assert check["healthcheck"]["startPeriod"] == "1m0s"


def test_lossy_vcpus_are_refused_with_a_nearby_value() -> None:
    for vcpus in (10.05, 20.05):
        assert not docker_cpus_exact(vcpus)
        with pytest.raises(ValueError, match="stored back by the Docker provider"):
            Resources(vcpus=vcpus)  # type: ignore[call-arg]
    assert Resources(vcpus=0.5).vcpus == 0.5  # type: ignore[call-arg]
    assert issubclass(SpecError, ValueError)


words = st.from_regex(r"[a-z][a-z0-9_.]{0,5}(=[a-z0-9/.]{0,5})?", fullmatch=True)


@given(st.lists(words, min_size=1, max_size=8))
def test_cmdlines_are_a_fixed_point_of_create_then_read(args: list[str]) -> None:
    line = " ".join(args)
    maps = libvirt_cmdlines(line)
    created = cmdline_from(maps)  # the line the provider gives the kernel
    assert sorted(created.split()) == sorted(line.split())  # nothing lost or added
    assert libvirt_cmdlines(created) == maps  # Read gives back the same list


def test_domain_cmdlines_input_keeps_bare_words_in_their_own_map(tmp_path: Path) -> None:
    cfg = base_config()
    cfg["twinstack:vmImage"] = {
        "source": "/var/lib/ts/images/debian.qcow2",
        "kernel": "/var/lib/ts/images/vmlinuz",
        "initrd": "/var/lib/ts/images/initrd.img",
        "cmdline": "root=/dev/vda rw console=ttyS0",
    }
    doc = plan(make_project(tmp_path), "forms", cfg, runtime="vm")
    dom = by_name(doc, "libvirt:index/domain:Domain", "web-vm-0")
    # was [{"root": "/dev/vda", "console": "ttyS0", "_": "rw"}]: Read splits it in two
    assert dom["inputs"]["cmdlines"] == [{"console": "ttyS0", "root": "/dev/vda"}, {"_": "rw"}]
    assert dom["inputs"]["qemuAgent"] is False
