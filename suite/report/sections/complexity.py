"""The complexity experiment's report section: the fit table, the verdict with its rule, the wall-time/FLOP gap,
the crossovers, the sizes skipped and the log–log figure (the fit itself:
:mod:`mlo_bench.suite.report.sections.complexity_fit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlo_bench.suite.report import specs
from mlo_bench.suite.report.render.doc import Bullets, Cell, Figure, Para, Section, Table, cell
from mlo_bench.suite.report.sections import FIGURE_DIR, Context, Facts, Rendered, complexity_gap
from mlo_bench.suite.report.sections.complexity_fit import (
    EXPECTED,
    FILE,
    MEASURES,
    MIN_SIZES,
    RANGES,
    SIZE,
    TOLERANCE,
    Verdict,
    band_check,
    crossovers,
    exponent_text,
    fit,
    is_materialised,
    is_materialised_row,
    points,
    sweep,
    verdict,
)
from mlo_bench.suite.report.tidy import flatten


def fit_table(table: pd.DataFrame) -> Table:
    """Rows backend × method × L, columns the three measures' exponents with their intervals and ranges."""
    header = ["backend", "method", "L", "kind"] + [f"{m} exponent [95%] (d range, n)" for m in MEASURES]
    rows = []
    for (backend, method, levels), g in table.groupby(["backend", "method", "levels"], sort=True):
        mat = is_materialised(backend, method.split(" ", 1)[0])
        row = [cell(backend), cell(method), cell(levels), cell("materialised" if mat else "matrix-free")]
        for m in MEASURES:
            r = g[g["measure"] == m]
            if r.empty:
                row.append(cell("–"))
                continue
            r = r.iloc[0]
            tone = ""
            if m == "flops_hypergrad":
                check = band_check(EXPECTED[mat], r["ci_low"], r["ci_high"])
                tone = {"in": "good", "out": "bad"}.get(check, "warn")
            span = f"{int(r['d_min'])}–{int(r['d_max'])}, {int(r['n_points'])}"
            row.append(Cell(f"{exponent_text(r)} ({span})", tone=tone))
        rows.append(row)
    caption = (f"Log–log least-squares exponents in d; FLOPs over d ≥ {RANGES['flops_hypergrad']}, time and memory "
               f"over d ≥ {RANGES['time_hypergrad_s']} (the {MIN_SIZES} largest sizes where fewer reach it); "
               "95% t-intervals. FLOP cells are green when the interval lies within the claim's band "
               f"(3 ± {TOLERANCE:g} materialised, 2 ± {TOLERANCE:g} matrix-free). Written to `{FILE}`.")
    return Table(header, rows, align=["l", "l", "r", "l", "r", "r", "r"], caption=caption)


def figure(pts: pd.DataFrame, table: pd.DataFrame, path: Path) -> Figure | None:
    """Measures against d (log–log), one row of panels per L: points = runs, solid line = the fit over its range,
    grey dashed = reference slopes 2 and 3."""
    from mlo_bench.suite.report.render import figures

    if pts.empty or table.empty:
        return None
    plt, _ = figures.pyplot()
    levels = sorted(set(pts["levels"]))
    paths = sorted({(b, p) for b, p in zip(pts["backend"], pts["path"], strict=True)})
    colors = figures.palette(sorted({b for b, _ in paths}))
    methods = sorted({p for _, p in paths})
    markers = dict(zip(methods, "osD^vPX*h" * 3, strict=False))
    styles = dict(zip(methods, ["-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1))] * 3, strict=False))
    fig, axes = plt.subplots(len(levels), len(MEASURES), figsize=(4.4 * len(MEASURES), 3.5 * len(levels)),
                             squeeze=False)
    for i, lv in enumerate(levels):
        for j, m in enumerate(MEASURES):
            ax = axes[i][j]
            sub = pts[(pts["levels"] == lv) & pts[m].notna() & (pts[m] > 0)]
            if sub.empty:
                ax.set_visible(False)
                continue
            for (backend, p), g in sub.groupby(["backend", "path"], sort=True):
                ax.plot(g[SIZE], g[m], ls="", marker=markers[p], ms=4, color=colors[backend], alpha=0.8)
                r = table[(table["backend"] == backend) & (table["method"] == p) & (table["levels"] == lv)
                          & (table["measure"] == m)]
                if not r.empty:
                    r = r.iloc[0]
                    inside = g[g[SIZE] >= r["d_min"]]
                    xs = np.array([r["d_min"], r["d_max"]], dtype=float)
                    c = float(np.exp(np.mean(np.log(inside[m]) - r["exponent"] * np.log(inside[SIZE]))))
                    ax.plot(xs, c * xs ** r["exponent"], ls=styles[p], color=colors[backend], lw=1.4,
                            label=f"{backend} × {p} ({r['exponent']:.2f})")
            x0, x1 = float(sub[SIZE].min()), float(sub[SIZE].max())
            y_mid = float(np.exp(np.median(np.log(sub[m]))))
            x_mid = math.sqrt(x0 * x1)
            for k in (2, 3):
                xs = np.array([x0, x1])
                ax.plot(xs, y_mid * (xs / x_mid) ** k, color="0.55", ls=(0, (2, 2)), lw=1)
                ax.annotate(f"slope {k}", (x1, y_mid * (x1 / x_mid) ** k), fontsize=7, color="0.4",
                            xytext=(2, 0), textcoords="offset points", va="center")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"L={lv}: {m}", fontsize=10)
            ax.set_xlabel("d")
            ax.legend(fontsize=6, loc="upper left", frameon=False)
    fig.tight_layout()
    return Figure(figures.save(fig, path),
                  "Cost of one hypergradient against d (log–log): points = runs; lines = the least-squares fit over "
                  "its range, with its exponent in the legend; grey dashed = reference slopes 2 (O(d²)) and 3 "
                  "(O(d³)).")


@dataclass
class Result:
    section: Section
    table: pd.DataFrame
    verdict: Verdict
    figures: list[Path] = field(default_factory=list)


def _skipped(records: list[dict[str, Any]]) -> list[str]:
    by: dict[tuple[str, str, int], list[int]] = {}
    for rec in records:
        paper = specs.paper(str(rec.get("task")))
        flat = flatten(rec.get("config") if isinstance(rec.get("config"), dict) else {}, "")
        d = flat.get(paper.size) if paper.size else None
        if rec.get("status") == "skipped" and isinstance(d, int):
            levels = flat.get(paper.groups[0]) if paper.groups else 0
            key = (str(rec.get("backend")), str(rec.get("method")), int(levels or 0))
            by.setdefault(key, []).append(d)
    return [f"{b} × {m}, L={lv}: d = {', '.join(map(str, sorted(set(ds))))}" for (b, m, lv), ds in sorted(by.items())]


def build(records: list[dict[str, Any]], out: Path, draw: bool) -> Result | None:
    """The section, the fit table (also written to ``out/complexity_fit.csv``) and the figure; ``None`` when the
    records hold no size sweep."""
    from mlo_bench.suite.run.records import write_atomic

    pts = sweep(points(records))
    table = fit(pts)
    if table.empty:
        return None
    write_atomic(out / FILE, lambda tmp: table.to_csv(tmp, index=False))
    v = verdict(table)
    sec = Section("Complexity: O(d²) versus O(d³)", anchor_id="complexity")
    sizes = sorted({int(d) for d in pts[SIZE]})
    sec.add(Para(f"Cost of one hypergradient as the dimension grows: {len(pts)} ok runs of "
                 f"`{pts['task'].iloc[0]}` at d = {', '.join(map(str, sizes))}, L = "
                 f"{', '.join(str(x) for x in sorted(set(pts['levels'])))} levels. Rule: log–log least squares of "
                 f"each measure in d, FLOPs over d ≥ {RANGES['flops_hypergrad']}, time and memory over "
                 f"d ≥ {RANGES['time_hypergrad_s']} (smaller sizes are dominated by fixed overheads; the "
                 f"{MIN_SIZES} largest sizes where fewer reach the range), 95% interval from the t-distribution on the "
                 "slope's standard error. Materialised = a method or backend that forms d×d matrices (`exact`, "
                 "`naive`); the rest are matrix-free."))
    sec.add(Para(f"**Betty's O(d³) → O(d²) claim: {v.verdict}.** Rule: supported when every materialised FLOP "
                 f"exponent's interval lies within 3 ± {TOLERANCE:g}, every matrix-free one within 2 ± {TOLERANCE:g}, "
                 "and at each L the wall-time exponent of the materialised chain (`naive` × `exact`: Jacobians "
                 "materialised and multiplied) exceeds every matrix-free path's; not supported when a FLOP interval "
                 "lies wholly outside its band or every matrix-free wall-time exponent exceeds the chain's; "
                 "inconclusive otherwise."), Bullets(v.reasons))
    ranges = []
    for m in ("time_hypergrad_s", "peak_live_bytes"):
        rows = table[table["measure"] == m]
        kinds = np.array([is_materialised_row(r) for _, r in rows.iterrows()], dtype=bool)
        parts = [f"{name} {rows[sel]['exponent'].min():.2f} to {rows[sel]['exponent'].max():.2f}"
                 for name, sel in (("materialised", kinds), ("matrix-free", ~kinds)) if sel.any()]
        if parts:
            ranges.append(f"`{m}` exponents: " + "; ".join(parts))
    if ranges:
        sec.add(Para("Over d ≥ " + str(RANGES["time_hypergrad_s"]) + ": " + " — ".join(ranges) + "."))
    sec.add(fit_table(table))
    sec.add(*complexity_gap.blocks(pts, table))
    cross = crossovers(pts)
    if cross:
        lines = []
        for c in cross:
            if c.d is None:
                lines.append(f"L={c.levels}, {c.backend} × {c.method}: never slower than every matrix-free path "
                             f"at the sizes run ({', '.join(map(str, c.sizes))})")
            else:
                note = " (already at the smallest size where all ran)" if c.sizes and c.d == c.sizes[0] else ""
                lines.append(f"L={c.levels}, {c.backend} × {c.method}: slower than every matrix-free path from "
                             f"**d = {c.d}**{note}; at d = {c.sizes[-1]}, {c.ratio:.3g}× the slowest one's time")
        sec.add(Para("Where the materialised path becomes slower (first d at which its median time per "
                     "hypergradient exceeds that of every matrix-free path at the same d):"), Bullets(lines))
    skipped = _skipped(records)
    if skipped:
        sec.add(Para("Sizes over the sweep's budget, recorded as `skipped` and not run:"), Bullets(skipped))
    written = []
    if draw:
        from mlo_bench.suite.report.render import figures

        fig = figures.safe(figure, pts, table, out / FIGURE_DIR / "complexity.png")
        if fig is not None:
            sec.add(fig)
            written.append(fig.path)
    return Result(sec, table, v, written)


def part(ctx: Context) -> Rendered:
    """The complexity section when the records hold a size sweep (nothing otherwise); the claim's verdict goes to
    the command's closing line."""
    cx = build(ctx.records, ctx.out, draw=ctx.figures is not None)
    if cx is None:
        return Rendered()
    return Rendered([cx.section], list(cx.figures), Facts(complexity=cx.verdict.verdict))
