"""A paper table's figure: the metrics a task asks for (``PaperTable.figure``) by row, beside the table — e.g. data
selection's precision against the pool's base rate. Generic: rows, metrics and reference lines come from the task's
declaration; the runs are the ones the table shows (:func:`mlo_bench.suite.report.sections.papers.evaluate`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlo_bench.suite.report.render import figures
from mlo_bench.suite.report.render.doc import Figure, slug
from mlo_bench.suite.report.runs import metric_value


def _long(table: Any, result: dict[str, Any], metric: str) -> pd.DataFrame:
    """One row per run of the table's blocks with a finite ``metric``: backend, label (the variant), seed, value."""
    rows = []
    for backend, block in result["blocks"].items():
        for name in table.variants:
            for r in block["rows"].get(name, []):
                x = metric_value(r, metric)
                if x is not None and math.isfinite(float(x)):
                    rows.append({"backend": backend, "label": name, "seed": r.seed, "value": float(x)})
    return pd.DataFrame(rows, columns=["backend", "label", "seed", "value"])


def draw(task: str, table: Any, result: dict[str, Any], folder: Path) -> Figure | None:
    """The figure of ``table``'s ``figure`` metrics (``None`` when it declares none or no run has them)."""
    panels = [(m, d) for m in table.figure if not (d := _long(table, result, m)).empty]
    if not panels:
        return None
    plt, sns = figures.pyplot()
    colors = figures.palette(sorted({b for _, d in panels for b in d["backend"]}))
    order = [n for n in table.variants if any(n in set(d["label"]) for _, d in panels)]
    width = max(3.8, 0.5 * len(order) + 1.4)
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 3.6), squeeze=False)
    refs = []
    for ax, (metric, data) in zip(axes.flat, panels, strict=True):
        figures.bars(ax, sns, data, metric, colors, order, task)
        ref = table.references.get(metric)
        line = _long(table, result, ref) if ref else _long(table, result, "")
        for backend, d in line.groupby("backend"):
            ax.axhline(float(np.mean(d["value"])), color=colors.get(backend, "gray"), linestyle="--", linewidth=1.2)
        if not line.empty:
            refs.append(f"dashed line on {metric}: mean {ref} of the table's runs per backend")
    fig.tight_layout()
    figures.legend(fig, colors, {b for _, d in panels for b in d["backend"]})
    fig.suptitle(f"{task}: the paper table by row", fontsize=11, x=0.01, ha="left", y=1.0, va="bottom")
    caption = (f"{', '.join(m for m, _ in panels)} by row of the table above: bars = mean over its runs, whiskers = "
               f"std, dots = runs (seeds), colour = backend" + ("; " + "; ".join(refs) if refs else "") + ".")
    path = folder / f"{slug(task)}-paper-{slug(table.title)[:40]}.png"
    return Figure(figures.save(fig, path), caption)
