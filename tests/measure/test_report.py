"""Report, calibration and chart of `twinstack measure` from recorded raw samples.

``fixtures/raw-both.json`` is the raw record of a real run on this project's machines
(`twinstack measure --stack dev --service web --count 2`, containers and TCG VMs);
``fixtures/raw-container.json`` one of a container-only run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.cost import Calibration, load_calibration
from twinstack.measure import report
from twinstack.measure.runner import bare_domain_xml

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]


def _raw(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())  # type: ignore[no-any-return]


@pytest.fixture
def raw() -> dict[str, Any]:
    return _raw("raw-both.json")


def test_runtime_sections_summarize_every_instance(raw: dict[str, Any]) -> None:
    for rt in ("container", "vm"):
        sec = report.runtime_section(rt, raw["runtimes"][rt])
        times = [i["createToHealthyS"] for i in raw["runtimes"][rt]["instances"]]
        s = sec["createToHealthyS"]
        assert s["n"] == len(times) == raw["count"]
        assert s["min"] == pytest.approx(min(times), abs=1e-3)
        assert s["max"] == pytest.approx(max(times), abs=1e-3)
        assert s["min"] <= s["p50"] <= s["p95"] <= s["max"]
        bl = sec["baseline"]
        bare = [i["createToHealthyS"] for i in raw["runtimes"][rt]["baseline"]["instances"]]
        assert bl["ratio"]["p50"] == pytest.approx(
            s["p50"] / report.stats.percentile(bare, 50), rel=1e-3
        )
        assert bl["ratio"]["withinTarget"] == (bl["ratio"]["p50"] <= 1.10)
    vm = report.runtime_section("vm", raw["runtimes"]["vm"])
    assert vm["acceleration"] == "tcg" and vm["representative"] is False
    inst = vm["instances"][0]["memory"]
    raw_mem = raw["runtimes"]["vm"]["instances"][0]["memory"]
    assert inst["qemuRssMib"] == pytest.approx(raw_mem["qemu"]["Rss"] / 2**20, abs=0.01)
    assert inst["vmmOverheadMib"] == pytest.approx(
        (raw_mem["qemu"]["Rss"] - raw_mem["guestRamRss"]) / 2**20, abs=0.01
    )
    assert 0 < inst["guestRamTouchedMib"] <= inst["guestMib"]
    ctr = report.runtime_section("container", raw["runtimes"]["container"])
    cmem = ctr["instances"][0]["memory"]
    assert cmem["hostMib"] == pytest.approx(cmem["workingSetMib"] + cmem["shimRssMib"], abs=0.02)


def test_calibration_is_valid_and_read_by_diff(raw: dict[str, Any], tmp_path: Path) -> None:
    cal = report.calibration_doc(raw)
    model = Calibration.model_validate(cal)
    vm = model.overheads.vm
    assert vm.tcg.memory_mib is not None and vm.kvm.memory_mib is None  # measured under TCG
    assert vm.tcg.startup_seconds == pytest.approx(
        report.stats.percentile(
            [i["createToHealthyS"] for i in raw["runtimes"]["vm"]["instances"]], 50
        ),
        abs=0.01,
    )
    assert vm.guest_os_memory_mib is not None and vm.guest_os_memory_mib > 0
    assert model.overheads.container.shim_memory_mib is not None
    assert model.samples["vm.tcg.memoryMib"] == raw["count"]
    assert "TCG" in (model.machine or "") and "not representative of KVM" in (model.notes or "")
    assert raw["calibrationRefs"]["container"] in model.overheads.container.images
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(cal))
    assert load_calibration(path) == model


def test_container_only_calibration_has_no_vm_figures() -> None:
    cal = report.calibration_doc(_raw("raw-container.json"))
    assert set(cal["overheads"]) == {"container"}
    assert "TCG" not in cal["machine"]


def test_diff_marks_the_measured_figures(
    raw: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twinstack.density.diffing import build_report

    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(report.calibration_doc(raw)))
    monkeypatch.chdir(ROOT)
    doc = build_report(stack="dev", calibration=path).to_json()
    figures = {f["figure"]: f for f in doc["figures"]}
    assert figures["container.shimMemoryMib"]["measured"] is True
    assert figures["container.shimMemoryMib"]["source"].startswith("measured (calibration.json")
    assert figures["vm.guestOsMemoryMib"]["measured"] is True
    assert figures["vm.kvm.memoryMib"]["measured"] is False  # dev's domains are kvm: default
    assert doc["calibrated"] is True


def test_model_comparison_defaults_vs_measured(
    raw: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from components.spec import read_stack_file
    from twinstack.measure.stackfile import derive_config
    from twinstack.plan import plan_stack

    monkeypatch.chdir(tmp_path)
    plans = {}
    for rt in ("container", "vm"):
        cfg, _ = derive_config(
            read_stack_file(ROOT / "stacks" / "Pulumi.dev.yaml"), "web", runtime=rt, count=2,
            domain_type="qemu", cidr="10.213.96.0/24", stack="utmeasure",
        )  # fmt: skip
        f = tmp_path / "Pulumi.utmeasure.yaml"
        f.write_text(yaml.safe_dump({"config": cfg}))
        plans[rt] = plan_stack("utmeasure", rt, root=ROOT, stack_file=f)
    cal = report.calibration_doc(raw)
    secs = {rt: report.runtime_section(rt, raw["runtimes"][rt]) for rt in ("container", "vm")}
    cmp = report.model_comparison(plans, cal, secs)
    assert cmp["container"]["demandMemoryMib"]["defaults"] == 512 + 8  # limit + default shim
    shim = cal["overheads"]["container"]["shimMemoryMib"]
    assert cmp["container"]["demandMemoryMib"]["calibrated"] == pytest.approx(512 + shim, abs=0.1)
    vm = cmp["vm"]
    assert vm["accelerator"] == "tcg"
    # defaults: max(512, 512 + 128) guest + 600 TCG qemu
    assert vm["demandMemoryMib"]["defaults"] == 512 + 128 + 600
    figs = {f["figure"]: f for f in vm["figures"]}
    assert figs["vm.tcg.memoryMib"]["default"] == 600
    assert figs["vm.tcg.memoryMib"]["measured"] == cal["overheads"]["vm"]["tcg"]["memoryMib"]
    host = secs["vm"]["memoryPerInstanceMib"]["hostMib"]["p50"]
    assert vm["measuredHostMemoryMib"] == host
    assert vm["defaultVsMeasuredPercent"] == pytest.approx((1240 - host) / host * 100, abs=0.1)


def test_markdown_json_and_chart(raw: dict[str, Any], tmp_path: Path) -> None:
    cal = report.calibration_doc(raw)
    doc = report.build_report(raw, cal, files={"chart": "measure.png"})
    json.dumps(doc)  # serializable
    md = report.render_markdown(doc)
    assert "NOT representative of a KVM host" in md and "TCG" in md
    assert "| container |" in md and "| vm (TCG) |" in md
    assert "host port publishing dropped" in md
    for rt in ("container", "vm"):
        ratio = doc["runtimes"][rt]["baseline"]["ratio"]["p50"]
        assert f"{ratio:.3f}" in md
    png = tmp_path / "m.png"
    report.render_chart(doc, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tmp_path / "m.svg"
    report.render_chart(doc, svg)
    assert "<svg" in svg.read_text()[:500]


def test_bare_domain_xml_gets_its_own_disks_and_console(tmp_path: Path) -> None:
    from xml.etree import ElementTree as ET

    xml = (
        "<domain type='qemu'><name>m-web-0</name><uuid>x</uuid><metadata><r/></metadata>"
        "<memory unit='MiB'>512</memory><devices>"
        "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source pool='m-data' volume='m-web-0-root.qcow2'/><target dev='vda' bus='virtio'/></disk>"
        "<disk type='file' device='cdrom'><source file='/pool/m-web-0-seed.iso'/>"
        "<target dev='hdd' bus='ide'/></disk>"
        "<console type='pty'><target type='serial' port='0'/></console>"
        "</devices></domain>"
    )
    src = {"xml": xml, "disks": [{"format": "qcow2", "size": 1, "base": None}], "seed": "x"}
    out = ET.fromstring(bare_domain_xml(src, "m-bare-web-0", tmp_path, tmp_path / "c.log"))
    assert out.findtext("name") == "m-bare-web-0"
    assert out.find("uuid") is None and out.find("metadata") is None
    assert out.findtext("memory") == "512"
    disk, cdrom = out.findall("devices/disk")
    assert disk.get("type") == "file"
    assert disk.find("source").attrib == {"file": str(tmp_path / "m-bare-web-0-vda.qcow2")}  # type: ignore[union-attr]
    assert cdrom.find("source").attrib == {"file": str(tmp_path / "m-bare-web-0-seed.iso")}  # type: ignore[union-attr]
    log = out.find("devices/console/log")
    assert log is not None and log.get("file") == str(tmp_path / "c.log")
