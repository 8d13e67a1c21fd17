"""The floor: each hypergradient's time in units of one lower-level gradient, beside the method's gradient count.

A run records ``time_hypergrad_s`` (median per outer step), ``time_lower_grad_s`` (one gradient of the level below the
top at the final state, timed after training) and ``gradient_count`` (the gradient-like passes the method costs:
:mod:`mlo_bench.suite.floor`). Their quotient, time_hypergrad / time_lower_grad, is the hypergradient's cost counted
in gradients as this backend runs them; divided by the gradient count it is the distance to the floor (× floor). Near
1 the implementation spends its time on the passes the method needs; a second-order pass (a Hessian-vector product,
a mixed VJP) costs ≈ 1–2 gradients, so 1–2× is the arithmetic's own range; far above, the time goes elsewhere
(dispatch, syncs, recomputation). Below 1 a compiler fused or simplified passes, or one gradient's figure is mostly
per-call overhead. "… by FLOPs" is the same quotient of counted FLOPs (``flops_hypergrad`` / ``flops_lower_grad``):
what the arithmetic alone would give, undisturbed by load. Medians over seeds, quiet runs where there are any (⚠:
every run of the row was timed under load).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mlo_bench.suite.report.doc import Cell, Figure, Para, Section, Table, cell, slug

COLUMNS = ("gradient_count", "time_hypergrad_s", "time_lower_grad_s")
#: the issue's target: a matrix-free method within this factor of its floor
WITHIN = 1.3


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
        ratio = hg / grad if grad > 0 else math.nan
        flops = (use["flops_hypergrad"] / use["flops_lower_grad"]).median() if "flops_lower_grad" in use else math.nan
        out.append({**dict(zip(keys, key, strict=True)), "runs": len(use), "loaded_only": quiet.empty,
                    "flops_in_grads": float(flops) if flops == flops else math.nan,
                    "time_hypergrad_s": hg, "time_lower_grad_s": grad, "gradient_count": count,
                    "in_grads": ratio, "x_floor": ratio / count if count > 0 else math.nan})
    return pd.DataFrame(out)


def _ms(x: float) -> str:
    return f"{1e3 * x:.3g}"


def figure(table: pd.DataFrame, path: Path) -> Figure | None:
    """Hypergradient time in gradients against the gradient count (log–log), one panel per task setting; the
    diagonal is the floor, the dashed line ×1.3 of it."""
    from mlo_bench.suite.report import figures

    if table.empty:
        return None
    plt, _ = figures._plt()
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
    axes[0][0].set_ylabel("hypergradient time / one gradient's")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    return Figure(figures._save(fig, path), "Each hypergradient's time in units of one lower-level gradient against "
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
                     cell(_ms(r["time_lower_grad_s"])), cell(f"{r['in_grads']:.2f}"),
                     cell("–" if not math.isfinite(r["flops_in_grads"]) else f"{r['flops_in_grads']:.2f}"),
                     Cell(f"{r['x_floor']:.2f}" + (" ⚠" if r["loaded_only"] else ""), tone="warn" if far else ""),
                     cell(int(r["runs"]))])
    sec.add(Table(["setting", "backend", "method", "gradient count", "hypergrad ms", "one gradient ms",
                   "hypergrad in gradients", "… by FLOPs", "× floor", "runs"], body,
                  align=["l", "l", "l", "r", "r", "r", "r", "r", "r", "r"]))
    near = table[table["x_floor"] <= WITHIN]
    sec.add(Para(f"{len(near)} of {len(table)} backend × method rows within ×{WITHIN:g} of their floor "
                 f"(highlighted: above it)."))
    written = []
    if folder is not None:
        from mlo_bench.suite.report.figures import safe

        fig = safe(figure, table, folder / f"{slug('floor')}.png")
        if fig is not None:
            sec.add(fig)
            written.append(fig.path)
    return sec, written
