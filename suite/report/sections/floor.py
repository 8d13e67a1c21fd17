"""The floor: each hypergradient's time in units of one lower-level gradient, beside the method's gradient count.

A run records ``cpu_hypergrad_s`` and ``cpu_lower_grad_s`` (one hypergradient and one gradient of the level below the
top, process CPU time, medians of interleaved pairs at the final state), ``time_hypergrad_s`` (the loop's wall median
per outer step), ``time_lower_grad_s`` and ``gradient_count`` (the gradient-like passes the method costs:
:mod:`mlo_bench.suite.measure.floor`). The CPU quotient is the hypergradient's cost counted in gradients as this backend
runs them; divided by the gradient count it is the distance to the floor (× floor). Near 1 the implementation spends its
time on the passes the method needs; a second-order pass (a Hessian-vector product, a mixed VJP) costs ≈ 1–2
gradients, so 1–2× is the arithmetic's own range; far above, the time goes elsewhere (dispatch, syncs, recomputation).
Below 1 a compiler fused or simplified passes, or one gradient's figure is mostly per-call overhead. "… by FLOPs" is
the quotient of counted FLOPs (``flops_hypergrad`` / ``flops_lower_grad``): what the arithmetic alone gives. "… by
wall" is the loop's wall-clock quotient, which on a loaded machine also counts the time a longer call spends
preempted. Medians over seeds, quiet runs where there are any (⚠: every run of the row was timed under load); runs
recorded before the CPU pairs existed use the wall quotient.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mlo_bench.suite.report.render.doc import Cell, Figure, Para, Section, Table, cell, slug
from mlo_bench.suite.report.sections import Context, Rendered

COLUMNS = ("gradient_count", "time_hypergrad_s", "time_lower_grad_s")
#: the issue's target: a matrix-free method within this factor of its floor
WITHIN = 1.3
#: rows named in the explanation (the rest counted)
NAMED = 6


def rows(w: pd.DataFrame) -> pd.DataFrame:
    """One row per task × setting × backend × method (× method knobs): medians of the three figures, the quotient
    and the distance to the floor."""
    if any(c not in w for c in COLUMNS):
        return pd.DataFrame()
    ok = w[(w["status"] == "ok") & w["gradient_count"].notna() & (w["time_lower_grad_s"] > 0)]
    out = []
    keys = ["task", "setting_name", "backend", "method", "variant"]
    for key, g in ok.groupby(keys, sort=True, dropna=False):
        quiet = g[~g["loaded"].fillna(False).astype(bool)]
        use = quiet if len(quiet) else g
        hg, grad = float(use["time_hypergrad_s"].median()), float(use["time_lower_grad_s"].median())
        count = float(use["gradient_count"].median())
        wall = hg / grad if grad > 0 else math.nan
        cpu = _median_quotient(use, "cpu_hypergrad_s", "cpu_lower_grad_s")
        flops = _median_quotient(use, "flops_hypergrad", "flops_lower_grad")
        ratio = cpu if math.isfinite(cpu) else wall
        out.append({**dict(zip(keys, key, strict=True)), "runs": len(use), "loaded_only": quiet.empty,
                    "flops_in_grads": flops, "wall_in_grads": wall, "basis": "cpu" if math.isfinite(cpu) else "wall",
                    "time_hypergrad_s": hg, "time_lower_grad_s": grad, "gradient_count": count,
                    "in_grads": ratio, "x_floor": ratio / count if count > 0 else math.nan})
    return pd.DataFrame(out)


def _median_quotient(g: pd.DataFrame, num: str, den: str) -> float:
    """Median over runs of ``num / den`` (NaN when a column is missing or no run has both)."""
    if num not in g or den not in g:
        return math.nan
    q = (pd.to_numeric(g[num], errors="coerce") / pd.to_numeric(g[den], errors="coerce")).dropna()
    q = q[q > 0]
    return float(q.median()) if len(q) else math.nan


def explain(table: pd.DataFrame) -> list[str]:
    """Sentences, computed from the table, on where the time above the floor goes: preemption (the loop's wall
    quotient above the CPU one) and arithmetic (the CPU quotient following the counted FLOPs)."""
    out = []
    both = table[(table["basis"] == "cpu") & table["wall_in_grads"].notna()]
    waited = both[both["wall_in_grads"] > WITHIN * both["in_grads"]]
    if len(waited):
        x = (waited["wall_in_grads"] / waited["in_grads"]).median()
        out.append(f"In {len(waited)} of {len(both)} rows the loop's wall quotient exceeds the paired CPU quotient by "
                   f"more than ×{WITHIN:g} (median ×{x:.2g}): time a longer call spent preempted under load, not "
                   "computing.")
    far = table[(table["x_floor"] > WITHIN) & table["flops_in_grads"].notna() & (table["basis"] == "cpu")]
    if len(far):
        arith = far[far["in_grads"] <= WITHIN * far["flops_in_grads"]]
        names = ", ".join(f"{r['backend']} × {r['method']} ({r['in_grads']:.1f} by CPU, {r['flops_in_grads']:.1f} "
                          "by FLOPs)" for _, r in arith.head(NAMED).iterrows())
        names += f" and {len(arith) - NAMED} more" if len(arith) > NAMED else ""
        out.append(f"Of the {len(far)} rows above ×{WITHIN:g} of their floor, {len(arith)} take no more than "
                   f"×{WITHIN:g} the time their counted FLOPs allow: the arithmetic itself exceeds the count "
                   "(second-order passes cost more than a gradient)" + (f": {names}." if names else "."))
    return out


def _ms(x: float) -> str:
    return f"{1e3 * x:.3g}"


def _q(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "–"


def figure(table: pd.DataFrame, path: Path) -> Figure | None:
    """Hypergradient time in gradients against the gradient count (log–log), one panel per task setting; the
    diagonal is the floor, the dashed line ×1.3 of it."""
    from mlo_bench.suite.report.render import figures

    if table.empty:
        return None
    plt, _ = figures.pyplot()
    groups = list(table.groupby(["task", "setting_name"], sort=True))
    colors = figures.palette(sorted(set(table["backend"])))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.4 * len(groups), 3.6), squeeze=False)
    markers = dict(zip(sorted(set(table["method"])), "osD^v<>pP*", strict=False))
    for ax, ((task, setting), g) in zip(axes.flat, groups, strict=True):
        for _, r in g.iterrows():
            ax.scatter(r["gradient_count"], r["in_grads"], color=colors[r["backend"]], marker=markers[r["method"]],
                       s=40, label=f"{r['backend']} × {r['method']}")
        top = max(float(g["gradient_count"].max()), float(g["in_grads"].max())) * 1.5
        lo = max(min(float(g["in_grads"].min()), 1.0) / 1.5, 1e-3)
        ax.plot([lo, top], [lo, top], color="0.4", lw=1)
        ax.plot([lo, top], [lo * WITHIN, top * WITHIN], color="0.4", lw=1, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("gradient count (the floor)")
        ax.set_title(f"{task} · setting {setting}", fontsize=10)
    axes[0][0].set_ylabel("hypergradient / one gradient (CPU time)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    return Figure(figures.save(fig, path), "Each hypergradient's time in units of one lower-level gradient against "
                                           "the method's gradient count: on the solid line a method costs exactly "
                                           f"its count; the dashed line is ×{WITHIN:g}.")


def section(w: pd.DataFrame, folder: Path | None) -> tuple[Section, list[Path]] | None:
    """The "Floor" section (``None`` when no run recorded the figures); its figure goes to ``folder`` when given."""
    table = rows(w)
    if table.empty:
        return None
    sec = Section("Floor: hypergradients in gradients", anchor_id="floor")
    sec.add(Para(__doc__.split("\n\n", 1)[0].replace("\n", " ").replace("``", "`")))
    body = []
    for _, r in table.iterrows():
        far = math.isfinite(r["x_floor"]) and r["x_floor"] > WITHIN
        body.append([cell(f"{r['task']} · {r['setting_name']}"), cell(r["backend"]), cell(r["method"]),
                     cell(f"{r['gradient_count']:.0f}"), cell(_ms(r["time_hypergrad_s"])),
                     cell(_ms(r["time_lower_grad_s"])), cell(_q(r["in_grads"]) if r["basis"] == "cpu" else "–"),
                     cell(_q(r["wall_in_grads"])), cell(_q(r["flops_in_grads"])),
                     Cell(f"{r['x_floor']:.2f}" + (" ⚠" if r["loaded_only"] else ""), tone="warn" if far else ""),
                     cell(int(r["runs"]))])
    sec.add(Table(["setting", "backend", "method", "gradient count", "loop hypergrad ms", "one gradient ms",
                   "hypergrad in gradients (CPU)", "… by wall", "… by FLOPs", "× floor", "runs"], body,
                  align=["l", "l", "l", "r", "r", "r", "r", "r", "r", "r", "r"]))
    near = table[table["x_floor"] <= WITHIN]
    sec.add(Para(" ".join([f"{len(near)} of {len(table)} backend × method rows within ×{WITHIN:g} of their floor "
                           "(highlighted: above it).", *explain(table)])))
    written = []
    if folder is not None:
        from mlo_bench.suite.report.render.figures import safe

        fig = safe(figure, table, folder / f"{slug('floor')}.png")
        if fig is not None:
            sec.add(fig)
            written.append(fig.path)
    return sec, written


def part(ctx: Context) -> Rendered:
    """The "Floor" section and its figure (nothing when no run recorded the figures)."""
    got = section(ctx.wide, ctx.figures)
    return Rendered() if got is None else Rendered([got[0]], got[1])
