"""Looking inside a VM without the network: serial console log and qemu guest agent."""

from __future__ import annotations

import base64
import importlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinstack.realize.daemons import libvirt_module
from twinstack.realize.docker_apply import Health

READY = "twinstack-ready"
UNHEALTHY = "twinstack-unhealthy"
_UNHEALTHY_RE = re.compile(rf"{UNHEALTHY} (\S+) ([^:\r\n]+): ?([^\r\n]*)")
_MODULE_FAILED_RE = re.compile(r"Running module (\w+) \(.*?\) failed")
_CI_FINISHED_RE = re.compile(r"Cloud-init v\. \S+ finished at")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


def agent_command(dom: Any, command: dict[str, Any], timeout_s: int = 10) -> Any:
    """One guest-agent command (``virsh qemu-agent-command``), JSON in and out."""
    libvirt_qemu = importlib.import_module("libvirt_qemu")
    out = libvirt_qemu.qemuAgentCommand(dom, json.dumps(command), timeout_s, 0)
    return json.loads(out).get("return")


def agent_ready(dom: Any) -> bool:
    libvirt = libvirt_module()
    try:
        agent_command(dom, {"execute": "guest-ping"}, timeout_s=2)
        return True
    except libvirt.libvirtError:
        return False


def guest_exec(dom: Any, argv: list[str], *, timeout_s: float = 60) -> ExecResult:
    """Run ``argv`` in the guest via the agent and wait (bounded) for it to exit."""
    ret = agent_command(
        dom,
        {
            "execute": "guest-exec",
            "arguments": {"path": argv[0], "arg": argv[1:], "capture-output": True},
        },
    )
    pid = ret["pid"]
    deadline = time.monotonic() + timeout_s
    while True:
        st = agent_command(dom, {"execute": "guest-exec-status", "arguments": {"pid": pid}})
        if st.get("exited"):
            return ExecResult(
                int(st.get("exitcode", -1)),
                base64.b64decode(st.get("out-data", "")).decode(errors="replace"),
                base64.b64decode(st.get("err-data", "")).decode(errors="replace"),
            )
        if time.monotonic() > deadline:
            return ExecResult(-1, "", f"timed out after {timeout_s:.0f}s: {argv}")
        time.sleep(0.2)


def read_console(path: Path) -> str:
    try:
        return _ANSI.sub("", path.read_text(errors="replace"))
    except FileNotFoundError:
        return ""


def console_verdict(
    text: str, service: str, *, expect_report: bool = True
) -> tuple[str, str, str] | None:
    """(status, step, detail) from the serial console, or None while undecided.

    The rendered readiness script prints ``twinstack-ready <svc>`` or
    ``twinstack-unhealthy <svc> <step>: <detail>``; if cloud-init finished without
    either (and a report was expected: first boot of the instance), the failing
    cloud-init modules are the step.
    """
    if f"{READY} {service}" in text:
        return ("healthy", "", "")
    for m in _UNHEALTHY_RE.finditer(text):
        if m.group(1) == service:
            return ("unhealthy", m.group(2).strip(), m.group(3).strip())
    if "Kernel panic" in text:
        line = next(ln for ln in text.splitlines() if "Kernel panic" in ln)
        return ("unhealthy", "boot", line.strip())
    if expect_report and _CI_FINISHED_RE.search(text):
        failed = sorted(set(_MODULE_FAILED_RE.findall(text)))
        detail = f"modules failed: {', '.join(failed)}" if failed else "no readiness report"
        return ("unhealthy", "cloud-init", detail)
    return None


def wait_vm(
    conn: Any,
    name: str,
    service: str,
    console: Path,
    *,
    timeout_s: float,
    probe_after_boot: bool = False,
) -> Health:
    """Wait (bounded) for a domain's service to be reported healthy or unhealthy.

    First signal: the serial console (no network). With ``probe_after_boot`` (a domain
    that was redefined: cloud-init already ran for this instance and does not report
    again) the guest agent runs the service's rendered health probe instead.
    """
    libvirt = libvirt_module()
    start = time.monotonic()
    deadline = start + timeout_s
    probe = f"/usr/local/lib/twinstack/health-{service}"
    last_probe = ""
    while True:
        elapsed = time.monotonic() - start
        try:
            dom = conn.lookupByName(name)
            active = bool(dom.isActive())
        except libvirt.libvirtError:
            return Health(name, False, "missing", detail="domain does not exist", seconds=elapsed)
        text = read_console(console)
        if not active:
            return Health(name, False, "stopped", step="boot",
                          detail=_last_line(text), seconds=elapsed)  # fmt: skip
        verdict = console_verdict(text, service, expect_report=not probe_after_boot)
        if verdict is not None:
            status, step, detail = verdict
            return Health(name, status == "healthy", status, step, detail, elapsed)
        if probe_after_boot and agent_ready(dom):
            try:
                res = guest_exec(dom, ["/bin/bash", probe], timeout_s=30)
                if res.exit_code == 0:
                    return Health(name, True, "healthy", detail="health probe via guest agent",
                                  seconds=time.monotonic() - start)  # fmt: skip
                last_probe = (res.stdout + res.stderr).strip()
            except libvirt.libvirtError as exc:
                last_probe = str(exc)
        if time.monotonic() > deadline:
            detail = last_probe or _last_line(text) or "no console output"
            return Health(name, False, "timeout", step="boot", detail=detail, seconds=elapsed)
        time.sleep(1.0 if probe_after_boot else 0.5)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""
