"""Text rendering of a recorded plan, shaped like ``pulumi preview``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def plan_text(doc: dict[str, Any]) -> str:
    """A preview-like tree: type and name per resource, children indented under parents."""
    resources: list[dict[str, Any]] = doc["resources"]
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for r in resources:
        if r["type"].startswith("pulumi:providers:"):
            continue
        children[r["parent"]].append(r)
    rows: list[tuple[str, str, str]] = []
    stack_name = f"{doc['project']}-{doc['stack']}"
    rows.append(("", "pulumi:pulumi:Stack", stack_name))

    def walk(parent: str | None, prefix: str) -> None:
        kids = sorted(children.get(parent, []), key=lambda r: (r["type"], r["name"]))
        for i, r in enumerate(kids):
            last = i == len(kids) - 1
            branch = "└─ " if last else "├─ "
            flags = []
            if r.get("protect"):
                flags.append("protect")
            if r.get("deleteBeforeReplace"):
                flags.append("delete-before-replace")
            note = f"  [{', '.join(flags)}]" if flags else ""
            rows.append((prefix + branch, r["type"], r["name"] + note))
            walk(r["urn"], prefix + ("   " if last else "│  "))

    walk(None, "")
    width = max(len(p) + len(t) for p, t, _ in rows) + 2
    head = (
        f"Previewing update ({doc['stack']}) offline under Pulumi mocks — "
        f"runtime {doc.get('runtime')}, stack file {doc.get('stackFile')}\n\n"
    )
    lines = [f"     {'Type':<{width}}Name"]
    for prefix, typ, name in rows:
        lines.append(f" +   {prefix + typ:<{width}}{name}")
    counts: dict[str, int] = defaultdict(int)
    for r in resources:
        counts[r["type"].split(":")[0]] += 1
    providers = sum(1 for r in resources if r["type"].startswith("pulumi:providers:"))
    total = len(resources) - providers + 1
    summary = (
        f"\nResources:\n    + {total} to create "
        f"({counts.get('libvirt', 0)} libvirt, {counts.get('docker', 0)} docker, "
        f"{counts.get('twinstack', 0)} components; {providers} explicit providers)\n"
    )
    return head + "\n".join(lines) + "\n" + summary + _outputs_text(doc)


def _outputs_text(doc: dict[str, Any]) -> str:
    services = doc.get("outputs", {}).get("services", {})
    if not services:
        return ""
    lines = ["\nOutputs (instances):"]
    for name, svc in services.items():
        for inst in svc.get("instances", []):
            fp = inst["footprint"]
            eps = ", ".join(f"{k}={v}" for k, v in inst["endpoints"].items()) or "-"
            lines.append(
                f"    {name:<12} {inst['runtime']:<9} {inst['name']:<22} "
                f"{fp['vcpus']:g} vCPU {fp['memoryMib']} MiB {fp['diskGib']} GiB  {eps}"
            )
    return "\n".join(lines) + "\n"
