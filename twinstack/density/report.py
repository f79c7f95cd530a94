"""The diff report: two analysed sides compared, rendered as text, markdown, JSON or a chart.

Every renderer reads the JSON document (:meth:`DiffReport.to_json`), so the numbers in the
terminal table, the pull-request comment and the JSON are the same numbers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from components.cost import CostSpec
from twinstack.charts import chart_format, pyplot, save_figure
from twinstack.density.footprint import Footprint
from twinstack.density.model import DIMENSIONS, ServiceFigures, SideAnalysis, analyse
from twinstack.density.overhead import Figure, OverheadModel

REPORT_VERSION = 1


def _r(x: float, nd: int = 4) -> float:
    v = round(x, nd)
    return 0.0 if v == 0 else v


@dataclass
class DiffReport:
    """Side A compared with side B (``vm`` vs ``container`` for ``--stack``)."""

    stack: str | None
    a: SideAnalysis
    b: SideAnalysis
    currency: str
    figures: list[Figure]
    calibrated: bool
    prices_are_defaults: bool
    warnings: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        a, b = self.a, self.b
        names = sorted(set(a.services) | set(b.services))
        services = []
        for name in names:
            sa, sb = a.services.get(name), b.services.get(name)
            ratio = None
            if sa and sb and sa.per_host.count is not None and sb.per_host.count:
                ratio = _r(sa.per_host.count / sb.per_host.count)
            delta = None
            if sa and sb:
                delta = _r(sb.monthly_cost - sa.monthly_cost, 2)
            services.append(
                {
                    "service": name,
                    "sides": {a.label: _service_json(sa), b.label: _service_json(sb)},
                    "densityRatio": ratio,
                    "monthlyDelta": delta,
                }
            )
        ta, tb = a.cost.total, b.cost.total
        return {
            "version": REPORT_VERSION,
            "stack": self.stack,
            "currency": self.currency,
            "sides": [
                {"label": s.label, "source": s.source, "runtimes": s.runtimes} for s in (a, b)
            ],
            "services": services,
            "totals": {
                a.label: _side_json(a),
                b.label: _side_json(b),
                "delta": {
                    "hostsNeeded": b.hosts_needed - a.hosts_needed,
                    "monthlyCost": _r(tb - ta, 2),
                    "percent": _r((tb - ta) / ta * 100.0, 1) if ta > 0 else None,
                },
            },
            "figures": [f.to_json() for f in self.figures],
            "calibrated": self.calibrated,
            "pricesAreDefaults": self.prices_are_defaults,
            "warnings": list(self.warnings),
        }


def _service_json(s: ServiceFigures | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "runtime": s.runtime,
        "profile": s.profile,
        "instances": s.instances,
        "declared": {
            "vcpus": _r(s.declared.cpu),
            "memoryMib": _r(s.declared.memory_mib),
            "diskGib": _r(s.declared.disk_gib),
        },
        "perInstance": {
            "vcpus": _r(s.demand.cpu),
            "memoryMib": _r(s.demand.memory_mib),
            "diskGib": _r(s.demand.disk_gib),
        },
        "sharedImageGib": _r(s.shared_gib),
        "perHost": s.per_host.count,
        "binding": s.per_host.binding,
        "limits": s.per_host.limits,
        "startupSeconds": _r(s.startup_seconds, 2),
        "monthlyCost": _r(s.monthly_cost, 2),
    }


def _side_json(s: SideAnalysis) -> dict[str, Any]:
    return {
        "instances": s.instances,
        "hostsNeeded": s.hosts_needed,
        "hostsByProfile": {n: len(p.hosts) for n, p in s.placements.items()},
        "lowerBound": s.lower_bound(),
        "utilization": {k: _r(v) for k, v in s.utilization().items()},
        "binding": s.binding,
        "placement": sorted({p.algorithm for p in s.placements.values()}),
        "unplaced": s.unplaced,
        "monthlyCost": {
            "hosts": _r(s.cost.hosts, 2),
            "power": _r(s.cost.power, 2),
            "rates": _r(s.cost.rates, 2),
            "licences": _r(s.cost.licences, 2),
            "total": _r(s.cost.total, 2),
            "idle": _r(s.idle_cost, 2),
        },
    }


def compare(
    a: Footprint,
    b: Footprint,
    cost: CostSpec,
    ov: OverheadModel,
    *,
    labels: tuple[str, str] | None = None,
    stack: str | None = None,
    prices_are_defaults: bool = False,
) -> DiffReport:
    """Analyse two footprints with the same prices and overheads and compare them."""
    if stack is None and a.stack == b.stack:
        stack = a.stack
    la, lb = labels or (a.source, b.source)
    if la == lb:
        la, lb = f"A: {la}", f"B: {lb}"
    side_a = analyse(a, cost, ov, la)
    side_b = analyse(b, cost, ov, lb)
    warnings = [*a.warnings, *b.warnings]
    for side in (side_a, side_b):
        for svc in side.unplaced:
            prof = side.services[svc].profile
            warnings.append(
                f"{side.label}: an instance of {svc!r} does not fit on an empty {prof!r} host; "
                "use a bigger profile or a smaller instance"
            )
    return DiffReport(
        stack=stack,
        a=side_a,
        b=side_b,
        currency=cost.prices.currency,
        figures=ov.used_figures(),
        calibrated=ov.calibrated,
        prices_are_defaults=prices_are_defaults,
        warnings=warnings,
    )


# ---------------------------------------------------------------- formatting


def _money(x: float | None, cur: str = "") -> str:
    if x is None:
        return "-"
    return f"{cur} {x:,.2f}".strip()


def _signed(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:+,.2f}"


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _side_cells(label: str, s: dict[str, Any] | None) -> list[str]:
    if s is None:
        return [label, "-", "0", "-", "-", "-", "-", "-", "-", "-"]
    p = s["perInstance"]
    return [
        label,
        s["profile"],
        str(s["instances"]),
        f"{p['vcpus']:g}",
        f"{p['memoryMib']:,.0f}",
        f"{p['diskGib']:.2f}",
        "unbounded" if s["perHost"] is None else f"{s['perHost']:,}",
        s["binding"] or "-",
        f"{s['startupSeconds']:g}",
        _money(s["monthlyCost"]),
    ]


def _rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """Header and rows of the per-service table (one row per service and side) and of the
    fleet table."""
    la, lb = (s["label"] for s in doc["sides"])
    svc_head = [
        "service",
        "side",
        "profile",
        "n",
        "vCPU",
        "MiB",
        "GiB",
        "per host",
        "binding",
        "ready s",
        "/mo",
        f"density {la}/{lb}",
        "Δ /mo",
    ]
    svc_rows = []
    for s in doc["services"]:
        a, b = s["sides"][la], s["sides"][lb]
        ratio = f"{s['densityRatio']:.2f}" if s["densityRatio"] is not None else "-"
        svc_rows.append([s["service"], *_side_cells(la, a), ratio, _signed(s["monthlyDelta"])])
        svc_rows.append(["", *_side_cells(lb, b), "", ""])
    ta, tb, d = doc["totals"][la], doc["totals"][lb], doc["totals"]["delta"]
    tot_head = ["", la, lb, "Δ"]

    def hosts(t: dict[str, Any]) -> str:
        by = ", ".join(f"{n} x {k}" for k, n in t["hostsByProfile"].items())
        return f"{t['hostsNeeded']} ({by})" if by else str(t["hostsNeeded"])

    tot_rows = [
        ["instances", str(ta["instances"]), str(tb["instances"]), ""],
        ["hosts needed", hosts(ta), hosts(tb), f"{d['hostsNeeded']:+d}"],
        [
            "lower bound cpu/mem/disk",
            "/".join(str(ta["lowerBound"][k]) for k in DIMENSIONS),
            "/".join(str(tb["lowerBound"][k]) for k in DIMENSIONS),
            "",
        ],
    ]
    for dim in DIMENSIONS:
        tot_rows.append(
            [
                f"utilization {dim}",
                _pct(ta["utilization"][dim]),
                _pct(tb["utilization"][dim]),
                "",
            ]
        )
    tot_rows.append(["binding constraint", ta["binding"] or "-", tb["binding"] or "-", ""])
    tot_rows.append(
        ["placement", ", ".join(ta["placement"]) or "-", ", ".join(tb["placement"]) or "-", ""]
    )
    for part in ("hosts", "power", "rates", "licences"):
        ca, cb = ta["monthlyCost"][part], tb["monthlyCost"][part]
        tot_rows.append([f"{part} /mo", _money(ca), _money(cb), _signed(cb - ca)])
        if part == "power":
            ia, ib = ta["monthlyCost"]["idle"], tb["monthlyCost"]["idle"]
            idle = ["  idle share of hosts+power", _money(ia), _money(ib), _signed(ib - ia)]
            tot_rows.append(idle)
    pct = f" ({d['percent']:+.1f}%)" if d["percent"] is not None else ""
    tot_rows.append(
        [
            f"total /mo ({doc['currency']})",
            _money(ta["monthlyCost"]["total"]),
            _money(tb["monthlyCost"]["total"]),
            f"{_signed(d['monthlyCost'])}{pct}",
        ]
    )
    return svc_head, svc_rows, tot_head, tot_rows


def summary(doc: dict[str, Any]) -> str:
    """One sentence: hosts and cost of each side, the delta, the binding constraint."""
    la, lb = (s["label"] for s in doc["sides"])
    ta, tb, d = doc["totals"][la], doc["totals"][lb], doc["totals"]["delta"]
    cur = doc["currency"]

    def side(label: str, t: dict[str, Any]) -> str:
        n = t["hostsNeeded"]
        return (
            f"{label} needs {n} host{'s' if n != 1 else ''} "
            f"({_money(t['monthlyCost']['total'], cur)}/month, binding: {t['binding'] or '-'})"
        )

    delta = d["monthlyCost"]
    if delta == 0:
        verdict = "same monthly cost"
    else:
        cheaper = lb if delta < 0 else la
        pct = f", {abs(d['percent']):.1f}%" if d["percent"] is not None else ""
        verdict = f"{cheaper} is cheaper by {_money(abs(delta), cur)}/month{pct}"
    return f"{side(la, ta)}; {side(lb, tb)}: {verdict}."


def _notes(doc: dict[str, Any]) -> list[str]:
    notes = []
    measured = sum(1 for f in doc["figures"] if f["measured"])
    notes.append(
        f"Overhead figures: {measured} of {len(doc['figures'])} measured"
        + (" (calibration file applied)" if doc["calibrated"] else "; no calibration file")
        + "."
    )
    if doc["pricesAreDefaults"]:
        notes.append(
            "Host profile and prices are illustrative defaults; set `twinstack:cost` "
            "for real figures."
        )
    notes.extend(f"warning: {w}" for w in doc["warnings"])
    return notes


# -------------------------------------------------------------------- text


def render_text(doc: dict[str, Any], width: int | None = None) -> str:
    """A terminal report (rich tables); plain text when not written to a terminal."""
    buf = io.StringIO()
    console = Console(
        file=buf, width=width or 160, color_system=None, force_terminal=False, emoji=False
    )
    la, lb = (s["label"] for s in doc["sides"])
    title = f"twinstack diff{' — stack ' + doc['stack'] if doc['stack'] else ''}: {la} vs {lb}"
    console.print(escape(title))
    svc_head, svc_rows, tot_head, tot_rows = _rows(doc)
    t = Table(
        title=f"Per service (per instance after overheads; cost in {doc['currency']}/month)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for i, h in enumerate(svc_head):
        t.add_column(escape(h), justify="left" if i < 3 or i == 8 else "right", no_wrap=True)
    for row in svc_rows:
        t.add_row(*map(escape, row))
    console.print(t)
    tt = Table(title="Fleet", box=box.SIMPLE_HEAD, title_justify="left")
    for i, h in enumerate(tot_head):
        tt.add_column(escape(h), justify="left" if i == 0 else "right", overflow="fold")
    for row in tot_rows:
        tt.add_row(*map(escape, row))
    console.print(tt)
    ft = Table(title="Figures used", box=box.SIMPLE_HEAD, title_justify="left")
    ft.add_column("figure")
    ft.add_column("value", justify="right")
    ft.add_column("source", overflow="fold")
    for f in doc["figures"]:
        ft.add_row(escape(f["figure"]), f"{f['value']:g} {f['unit']}", escape(f["source"]))
    console.print(ft)
    console.print(escape(summary(doc)))
    for n in _notes(doc):
        console.print(escape(n))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


# ---------------------------------------------------------------- markdown


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|")


def _md_table(head: list[str], rows: list[list[str]], right_from: int) -> list[str]:
    out = ["| " + " | ".join(_md_cell(h) for h in head) + " |"]
    out.append("|" + "|".join("---:" if i >= right_from else "---" for i in range(len(head))) + "|")
    out.extend("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows)
    return out


def render_markdown(doc: dict[str, Any]) -> str:
    """A pull-request comment: summary first, tables, figures folded away."""
    la, lb = (s["label"] for s in doc["sides"])
    stack = f" — stack `{doc['stack']}`" if doc["stack"] else ""
    svc_head, svc_rows, tot_head, tot_rows = _rows(doc)
    lines = [f"### twinstack diff{stack}: {la} vs {lb}", "", f"**{summary(doc)}**", ""]
    lines.append(f"#### Per service (per instance after overheads; {doc['currency']}/month)")
    lines.append("")
    lines.extend(_md_table(svc_head, svc_rows, 3))
    lines += ["", "#### Fleet", ""]
    lines.extend(_md_table(tot_head, tot_rows, 1))
    lines += ["", "<details><summary>Figures used</summary>", ""]
    lines.extend(
        _md_table(
            ["figure", "value", "source"],
            [[f["figure"], f"{f['value']:g} {f['unit']}", f["source"]] for f in doc["figures"]],
            9,
        )
    )
    lines += ["", "</details>", ""]
    lines.extend(f"- {n}" for n in _notes(doc))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------- chart


def render_chart(doc: dict[str, Any], path: Path) -> None:
    """Instances per host and monthly cost per service, one bar per side (SVG or PNG)."""
    fmt = chart_format(path, "--chart")
    plt = pyplot()

    la, lb = (s["label"] for s in doc["sides"])
    names = [s["service"] for s in doc["services"]]
    x = list(range(len(names)))
    w = 0.4

    def col(label: str, key: str) -> list[float]:
        out = []
        for s in doc["services"]:
            side = s["sides"][label]
            v = side.get(key) if side else None
            out.append(float(v) if v is not None else 0.0)
        return out

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8.0, 1.2 * len(names) + 4), 4.5))
    for ax, key, ylabel in (
        (ax1, "perHost", "instances per host"),
        (ax2, "monthlyCost", f"{doc['currency']} per month"),
    ):
        ax.bar([i - w / 2 for i in x], col(la, key), w, label=la)
        ax.bar([i + w / 2 for i in x], col(lb, key), w, label=lb)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        ax.legend()
    ax1.set_title("Density (instances per host)")
    ax2.set_title("Monthly cost per service")
    stack = f"stack {doc['stack']}: " if doc["stack"] else ""
    fig.suptitle(f"twinstack diff — {stack}{la} vs {lb}")
    fig.tight_layout()
    save_figure(fig, path, fmt, "--chart")
