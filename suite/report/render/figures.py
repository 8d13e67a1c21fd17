"""Figures (seaborn/matplotlib, Agg backend, PNG). Every function returns the written figure, or ``None`` when its
data is absent — a missing metric skips its figure, never the report."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from mlo_bench.suite.report import specs, stats
from mlo_bench.suite.report.render import fmt
from mlo_bench.suite.report.render.doc import Figure
from mlo_bench.suite.run.records import write_bytes_atomic

BACKEND_ORDER = ("torch", "jax", "naive")
QUALITY_MAX = 3
#: the detail figures' resolution (the report's opening figures set their own); PNGs are stored with an adaptive
#: 256-colour palette — a plot has few colours, and the HTML embeds every figure (issue 26: under 1.5 MB)
DPI = 90
COLOURS = 256


def safe(draw, *args, **kwargs):
    """A figure, or ``None`` with a warning when drawing it fails: a figure never costs the report."""
    try:
        return draw(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        import sys

        print(f"mlo-bench report: warning: figure {getattr(draw, '__name__', draw)} skipped "
              f"({type(exc).__name__}: {exc})", file=sys.stderr)
        import matplotlib.pyplot as plt

        plt.close("all")
        return None


def available() -> str | None:
    """``None`` when figures can be drawn, else the reason (matplotlib/seaborn missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot  # noqa: F401
        import seaborn  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


def pyplot():
    """matplotlib's pyplot (Agg backend) and seaborn, themed alike for every figure of the report."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)
    return plt, sns


def palette(backends: list[str]) -> dict[str, tuple]:
    import seaborn as sns

    order = [b for b in BACKEND_ORDER if b in backends] + sorted(b for b in backends if b not in BACKEND_ORDER)
    colors = sns.color_palette("colorblind", max(len(order), 3))
    return {b: colors[i] for i, b in enumerate(order)}


def save(fig, path: Path, dpi: int = DPI) -> Path:
    """Write ``fig`` to ``path`` as a palette PNG (:data:`COLOURS` colours, atomically) and close it; returns
    ``path``."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    buf.seek(0)
    with Image.open(buf) as img:
        small = img.convert("RGB").quantize(colors=COLOURS)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return write_bytes_atomic(path, out.getvalue())


def _scale(metric: str, values: pd.Series) -> tuple[float, str]:
    """Divide by ``scale`` to show ``values`` in ``unit`` (times and bytes get a readable unit)."""
    finite = values[np.isfinite(values)]
    if finite.empty or fmt.kind(metric) == "plain":
        return 1.0, ""
    text = fmt.value(metric, float(finite.abs().median()) or float(finite.abs().max()))
    unit = text.split(" ")[-1] if " " in text else ""
    scale = {"s": 1, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
    return float(scale.get(unit, 1.0)), unit


def _long(ok: pd.DataFrame, metric: str) -> pd.DataFrame:
    d = ok[["backend", "label", "seed", metric]].rename(columns={metric: "value"})
    return d[np.isfinite(d["value"].astype(float))]


def bars(ax, sns, data: pd.DataFrame, metric: str, colors: dict, order: list[str], task: str | None = None) -> None:
    """One panel on ``ax``: ``data`` (columns ``backend``, ``label``, ``seed``, ``value``) as bars = mean by label
    (hue: backend, ``colors``, ``order`` of labels), whiskers = std, dots = seeds; ``metric`` titles it and picks the
    unit; a log axis where positive values span more than two decades."""
    scale, unit = _scale(metric, data["value"])
    data = data.assign(value=data["value"] / scale)
    hue_order = [b for b in colors if b in set(data["backend"])]
    # drawn with matplotlib directly, not seaborn's barplot + stripplot: the same marks at half the report's time
    # (34 of these figures took 54 of the main job's 95 s of report under the profiler)
    n = max(len(hue_order), 1)
    width = 0.8 / n
    stats = data.groupby(["label", "backend"])["value"].agg(["mean", "std", "count"])
    for j, backend in enumerate(hue_order):
        offset = (j - (n - 1) / 2) * width
        xs, means, stds = [], [], []
        for i, label in enumerate(order):
            if (label, backend) in stats.index:
                row = stats.loc[(label, backend)]
                xs.append(i + offset)
                means.append(row["mean"])
                stds.append(row["std"] if row["count"] > 1 else np.nan)
        if not xs:
            continue
        ax.bar(xs, means, width=width, color=colors[backend], alpha=0.85, label=backend)
        ax.errorbar(xs, means, yerr=np.nan_to_num(stds), fmt="none", ecolor=(0.25, 0.25, 0.25), elinewidth=1.2,
                    capsize=3)
        seeds = data[data["backend"] == backend]
        where = {label: i + offset for i, label in enumerate(order)}
        ax.scatter(seeds["label"].map(where), seeds["value"], s=12, color=(0.15, 0.15, 0.15), zorder=3)
    ax.set_xticks(range(len(order)), order)
    ax.set_xlim(-0.6, len(order) - 0.4)
    positive = data["value"][data["value"] > 0]
    if len(positive) == len(data) and len(positive) and positive.max() / positive.min() > 100:
        ax.set_yscale("log")
    elif (data["value"] >= 0).all():
        ax.set_ylim(bottom=0)  # a std whisker must not suggest negative times or memory
    ax.set_title(f"{metric} {specs.arrow(task, metric)}".rstrip(), fontsize=10)
    ax.set_ylabel(unit)
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=30)
    for tick in ax.get_xticklabels():
        tick.set_ha("right")
    if ax.get_legend() is not None:
        ax.get_legend().remove()


def _ok_runs(runs: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    ok = runs[runs["status"] == "ok"].copy()
    ok["label"] = ok["run_id"].map(labels)
    return ok


def metric_bars(runs: pd.DataFrame, labels: dict[str, str], metrics: list[str], path: Path, title: str,
                caption: str, task: str | None = None) -> Figure | None:
    """One panel per metric: bars = mean over seeds by method (hue: backend), error bars = std, dots = seeds."""
    ok = _ok_runs(runs, labels)
    metrics = [m for m in metrics if m in ok and np.isfinite(ok[m].astype(float)).any()]
    if not metrics or ok.empty:
        return None
    plt, sns = pyplot()
    colors = palette(sorted(set(ok["backend"])))
    order = list(dict.fromkeys(ok.sort_values(["method", "label"])["label"]))
    width = max(3.8, 0.5 * len(order) + 1.4)
    cols = len(metrics) if len(metrics) <= 3 else math.ceil(len(metrics) / 2)
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.4 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        bars(ax, sns, _long(ok, metric), metric, colors, order, task)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    fig.tight_layout()
    legend(fig, colors, set(ok["backend"]))
    fig.suptitle(title, fontsize=11, x=0.01, ha="left", y=1.0, va="bottom")
    return Figure(save(fig, path), caption)


def legend(fig, colors: dict, present: set[str]) -> None:
    """The backend legend above the figure's top right corner (the backends in ``present``, in ``colors``' order)."""
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=b) for b, c in colors.items() if b in present]
    fig.legend(handles=handles, title="backend", loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False,
               ncol=len(handles), fontsize=8, title_fontsize=8)


def quality_vs_cost(runs: pd.DataFrame, labels: dict[str, str], path: Path, title: str,
                    x: str = "time_hypergrad_s", y: str = "hypergrad_rel_error") -> Figure | None:
    """One point per backend × method: mean error (log) against mean cost (log), std over seeds as error bars.

    Zero errors (exact to the last bit) cannot sit on a log axis: they are drawn at the axis floor, hollow."""
    ok = _ok_runs(runs, labels)
    if x not in ok or y not in ok:
        return None
    ok = ok[np.isfinite(ok[x].astype(float)) & np.isfinite(ok[y].astype(float)) & (ok[x] > 0)]
    if ok.empty:
        return None
    plt, _ = pyplot()
    agg = ok.groupby(["backend", "label"]).agg(xm=(x, "mean"), xs=(x, "std"), ym=(y, "mean"), ys=(y, "std"),
                                               n=(x, "size")).reset_index()
    positive = agg["ym"][agg["ym"] > 0]
    floor = float(positive.min()) / 10 if len(positive) else 1e-16
    colors = palette(sorted(set(agg["backend"])))
    markers = dict(zip(colors, "os^DvP*X", strict=False))
    xs_scale, xs_unit = _scale(x, agg["xm"])
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    placed: list[tuple[float, float, int]] = []  # (log10 x, log10 y, stack slot) of labels already drawn
    for _, r in agg.sort_values(["xm", "ym"]).iterrows():
        zero = not r["ym"] > 0
        ym = floor if zero else r["ym"]
        yerr = None
        if not zero and math.isfinite(r["ys"]):
            low = min(r["ys"], ym * 0.999)  # keep the lower whisker above zero on the log axis
            yerr = [[low], [r["ys"]]]
        xerr = [[r["xs"] / xs_scale]] * 2 if math.isfinite(r["xs"]) else None
        ax.errorbar(r["xm"] / xs_scale, ym, xerr=xerr, yerr=yerr, fmt=markers[r["backend"]], ms=8,
                    color=colors[r["backend"]], mfc="white" if zero else colors[r["backend"]], capsize=3, lw=1)
        hx, hy = math.log10(r["xm"]), math.log10(ym)
        taken = {p[2] for p in placed if abs(p[0] - hx) < 0.35 and abs(p[1] - hy) < 0.3}
        stack = next(i for i in range(len(placed) + 1) if i not in taken)
        placed.append((hx, hy, stack))
        ax.annotate(f"{r['label']}" + (" (0)" if zero else ""), (r["xm"] / xs_scale, ym), fontsize=8,
                    xytext=(6, 4 - 11 * stack), textcoords="offset points")
    xs_all = agg["xm"] / xs_scale
    ys_all = agg["ym"].where(agg["ym"] > 0, floor)
    ax.set_xscale("log" if xs_all.max() / xs_all.min() > 10 else "linear")
    ax.set_yscale("log" if ys_all.max() / ys_all.min() > 10 else "linear")
    ax.margins(x=0.12, y=0.12)
    xlog, ylog = (", log" if ax.get_xscale() == "log" else ""), (" (log)" if ax.get_yscale() == "log" else "")
    ax.set_xlabel(f"{x} ({xs_unit}{xlog}) — cost →")
    ax.set_ylabel(f"{y}{ylog} — error ↑")
    ax.set_title(title, fontsize=11)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker=markers[b], color=c, label=b, ms=7) for b, c in colors.items()]
    ax.legend(handles=handles, title="backend", fontsize=8, title_fontsize=8, loc="best")
    fig.tight_layout()
    caption = (f"Hypergradient quality against cost: mean `{y}` against mean `{x}`, one point per "
               "backend × method, whiskers = std over seeds (log axes where values span more than a decade). "
               "Down-left is better."
               + (" Hollow points had zero error and are drawn at the axis floor." if (agg["ym"] <= 0).any()
                  else ""))
    return Figure(save(fig, path), caption)


def bench_scaling(bench: pd.DataFrame, path: Path) -> Figure | None:
    """pytest-benchmark medians against d (log–log), one panel per method, one line per backend."""
    if bench.empty or "d" not in bench or bench["d"].isna().all():
        return None
    data = bench.dropna(subset=["d", "median"])
    if data.empty:
        return None
    plt, sns = pyplot()
    methods = sorted(set(data["method"]))
    colors = palette(sorted(set(data["backend"])))
    cols = min(len(methods), 3)
    rows = math.ceil(len(methods) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    for ax, method in zip(axes.flat, methods, strict=False):
        sub = data[data["method"] == method].sort_values("d")
        for backend, g in sub.groupby("backend"):
            ax.errorbar(g["d"], g["median"], yerr=[g["median"] - g["q1"].fillna(g["median"]),
                                                   g["q3"].fillna(g["median"]) - g["median"]],
                        marker="o", ms=5, capsize=3, color=colors[backend], label=backend)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        sizes = sorted(set(sub["d"]))
        ax.set_xticks(sizes, [f"{x:.0f}" for x in sizes])
        ax.minorticks_off()
        ax.set_title(method, fontsize=10)
        ax.set_xlabel("d")
    for ax in list(axes.flat)[len(methods):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel("median time per hypergradient (s)")
    fig.tight_layout()
    legend(fig, colors, set(data["backend"]))
    return Figure(save(fig, path), "pytest-benchmark: median time of one hypergradient against d (log–log), "
                                   "whiskers = interquartile range. A slope of 2 is O(d²), 3 is O(d³).")


def scaling(runs: pd.DataFrame, path: Path, title: str, key: str = "task.d",
            metric: str = "time_hypergrad_s") -> Figure | None:
    """``metric`` against the size ``key`` (log–log): mean over seeds per backend × method, whiskers = std."""
    if metric not in runs or key not in runs:
        return None
    ok = runs[(runs["status"] == "ok") & runs[metric].notna() & runs[key].notna()]
    if ok.empty or ok[key].nunique() < 2:
        return None
    plt, _ = pyplot()
    colors = palette(sorted(set(ok["backend"])))
    methods = sorted(set(ok["method"]))
    styles = dict(zip(methods, ["-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1))] * 4, strict=False))
    markers = dict(zip(methods, "osD^vPX*" * 3, strict=False))
    scale, unit = _scale(metric, ok[metric].astype(float))
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for (backend, method), g in ok.groupby(["backend", "method"], sort=True):
        agg = g.groupby(key)[metric].agg(["mean", "std"]).reset_index().sort_values(key)
        slope = stats.loglog_slope(g[key].astype(float).tolist(), g[metric].astype(float).tolist())[0]
        label = f"{backend} × {method}" + (f" (slope {slope:.2f})" if math.isfinite(slope) else "")
        ax.errorbar(agg[key], agg["mean"] / scale, yerr=agg["std"].fillna(0) / scale, color=colors[backend],
                    ls=styles[method], marker=markers[method], ms=5, capsize=3, lw=1.4, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted(set(ok[key]))
    ax.set_xticks(sizes, [f"{x:g}" for x in sizes])
    ax.minorticks_off()
    ax.set_xlabel(key.removeprefix("task."))
    ax.set_ylabel(f"{metric} ({unit}, log)" if unit else f"{metric} (log)")
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return Figure(save(fig, path), f"`{metric}` against {key.removeprefix('task.')} (log–log), mean over ok "
                                   "seeds, whiskers = std; the legend gives each line's least-squares slope.")
