"""The report's opening figure, one per task: quality against cost with the Pareto front drawn.

x: time per outer step (log); y: the task's headline quality metric, its better direction up (a lower-is-better
metric's axis is inverted); one point per backend × method (colour: backend; marker area: memory, on a log scale
between the panel's smallest and largest), whiskers = std over seeds where two or more ran; the quality–time Pareto
front as a dashed staircase, its points labelled; the recommended combination ringed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mlo_bench.suite.report.render import figures, fmt
from mlo_bench.suite.report.render.doc import Figure

#: the opening figures' size (inches) and resolution: four fit a 1400-pixel-wide screen's first view with text
SIZE = (4.7, 3.1)
DPI = 100
#: marker areas (points²) of the smallest and the largest memory in a panel
AREA = (18.0, 220.0)
COLUMNS = ("backend", "label", "time", "time_sd", "quality", "quality_sd", "memory", "n", "front", "pick")


def _areas(memory: pd.Series) -> np.ndarray:
    m = memory.astype(float).to_numpy()
    ok = np.isfinite(m) & (m > 0)
    if ok.sum() < 2 or m[ok].max() == m[ok].min():
        return np.where(ok, 70.0, 30.0)
    logs = np.log(np.where(ok, m, m[ok].min()))
    lo, hi = logs.min(), logs.max()
    return np.where(ok, AREA[0] + (AREA[1] - AREA[0]) * (logs - lo) / (hi - lo), 30.0)


def frontier(points: pd.DataFrame, path: Path, title: str, quality: str, direction: str, memory: str,
             cost_unit_metric: str = "time_s") -> Figure | None:
    """The figure of ``points`` (columns :data:`COLUMNS`: means, stds, seed counts, whether on the front, whether
    recommended) written to ``path``; ``None`` without two points that have both a time and a quality."""
    pts = points[np.isfinite(points["time"].astype(float)) & np.isfinite(points["quality"].astype(float))
                 & (points["time"] > 0)].reset_index(drop=True)
    if len(pts) < 2:
        return None
    plt, _ = figures.pyplot()
    colors = figures.palette(sorted(set(pts["backend"])))
    scale, unit = figures._scale(cost_unit_metric, pts["time"])
    x = pts["time"] / scale
    areas = _areas(pts["memory"])
    fig, ax = plt.subplots(figsize=SIZE)
    for i, r in pts.iterrows():
        c = colors[r["backend"]]
        if r["n"] >= 2 and (math.isfinite(r["time_sd"]) or math.isfinite(r["quality_sd"])):
            xe = r["time_sd"] / scale if math.isfinite(r["time_sd"]) else None
            ye = r["quality_sd"] if math.isfinite(r["quality_sd"]) else None
            if xe is not None:
                xe = [[min(xe, x[i] * 0.95)], [xe]]  # the lower whisker stays on the log axis
            ax.errorbar(x[i], r["quality"], xerr=xe, yerr=ye, fmt="none", ecolor=c, alpha=0.55, lw=0.9,
                        capsize=2, zorder=2)
        ax.scatter(x[i], r["quality"], s=areas[i], color=c, alpha=0.8, edgecolors="white", linewidths=0.6,
                   zorder=3)
        if r["pick"]:
            ax.scatter(x[i], r["quality"], s=areas[i] + 140, facecolors="none", edgecolors="black",
                       linewidths=1.3, zorder=4)
    on = pts[pts["front"].astype(bool)].sort_values("time")
    if len(on):
        ax.step(on["time"] / scale, on["quality"], where="post", color="0.35", ls="--", lw=1.0, zorder=1)
        for k, (i, r) in enumerate(on.iterrows()):
            ax.annotate(f"{r['backend']} × {r['label']}", (x[i], r["quality"]), fontsize=7.5, color="0.1",
                        xytext=(5, -9 if k % 2 else 4), textcoords="offset points", zorder=5)
    ax.set_xscale("log")
    q = pts["quality"].astype(float)
    if (q > 0).all() and q.max() / q.min() > 30:
        ax.set_yscale("log")
    if direction == "lower":
        ax.invert_yaxis()
    ax.margins(x=0.15, y=0.12)
    ax.set_xlabel(f"time per outer step ({unit}, log)", fontsize=8.5)
    ax.set_ylabel(f"{quality} ({direction} is better: up)", fontsize=8.5)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9.5, loc="left")
    _legend(ax, plt, colors, pts, memory)
    fig.tight_layout()
    return Figure(figures.save(fig, path, dpi=DPI), _caption(quality, memory, pts))


def _legend(ax, plt, colors: dict, pts: pd.DataFrame, memory: str) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=c, label=b, ms=5) for b, c in colors.items()]
    mem = pts["memory"].astype(float)
    mem = mem[np.isfinite(mem) & (mem > 0)]
    if len(mem) >= 2 and mem.max() > mem.min():
        for value, area in ((mem.min(), AREA[0]), (mem.max(), AREA[1])):
            handles.append(Line2D([], [], ls="", marker="o", color="0.6", ms=math.sqrt(area),
                                  label=fmt.value(memory, float(value))))
    handles.append(Line2D([], [], ls="--", color="0.35", label="Pareto front"))
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              labelspacing=0.9, handletextpad=0.6, borderaxespad=0.2)


def _caption(quality: str, memory: str, pts: pd.DataFrame) -> str:
    seeds = int(pts["n"].max())
    return (f"`{quality}` against time per outer step (log), one point per backend × method, mean over "
            f"{'up to ' if pts['n'].min() != seeds else ''}{seeds} seed(s)"
            + (", whiskers = std" if seeds >= 2 else "")
            + f"; marker area = `{memory}` (log scale); dashed: the quality–time Pareto front (labelled); ringed: the "
            "recommended one (soonest to a result near the best quality, compile counted).")
