"""Trace curves: the ``trace.csv`` columns a task declares in ``Paper.curves``, plotted against the outer step.

A run with ``eval_every=N`` writes its task's metrics every N steps into ``trace.csv`` beside its record (blank where
a step did not measure one). For each task that declares curves, one section: per backend, the ok runs of the group
shared by the most runs there (the same config apart from backend, method, seed and the keys the task's variants
override — so variants sit side by side and nothing else is pooled); one line per variant (the task's declared
variant a run stands for, else its method), the mean over seeds at each measured step, a band of ± one std where
more than one seed measured it; one panel per metric, one row of panels per backend. A table gives each line's
first and last mean value and its seed count, so the curve's direction is readable without the figure. A run whose
trace is missing or lacks the metric is counted, never guessed. Nothing here names a task.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from mlo_bench.suite.report import specs
from mlo_bench.suite.report.render import fmt
from mlo_bench.suite.report.render.doc import Cell, Figure, Para, Section, Table, cell, slug
from mlo_bench.suite.report.runs import Run, group_key, prepare, variant_of
from mlo_bench.suite.report.sections import Context, Rendered

TRACE = "trace.csv"


def read_trace(record_path: str | Path | None, metrics: tuple[str, ...]) -> pd.DataFrame | None:
    """``step`` and the ``metrics`` present in the run's ``trace.csv`` (rows where one of them was measured);
    ``None`` when the file is missing, unreadable or has none of them."""
    if not record_path:
        return None
    path = Path(record_path).parent / TRACE
    try:
        trace = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None
    present = [m for m in metrics if m in trace]
    if "step" not in trace or not present:
        return None
    trace = trace[["step", *present]].apply(pd.to_numeric, errors="coerce")
    return trace.dropna(subset=present, how="all")


def groups(task: str, records: list[dict[str, Any]]) -> dict[str, tuple[dict[str, list[Run]], int]]:
    """Per backend: its runs by line label in the group shared by the most runs, and the number of groups."""
    paper = specs.paper(task)
    drop = ("variant", *sorted({k for v in paper.variants for k in v.overrides}))
    by: dict[str, dict[str, dict[str, list[Run]]]] = {}
    for run in prepare(records):
        if run.task != task:
            continue
        label = variant_of(run) or run.method
        by.setdefault(run.backend, {}).setdefault(group_key(run, drop), {}).setdefault(label, []).append(run)
    order = [v.name for v in paper.variants]
    out = {}
    for backend in sorted(by):
        best = max(by[backend].values(), key=lambda g: (sum(map(len, g.values())), len(g)))
        labels = sorted(best, key=lambda x: (order.index(x) if x in order else len(order), x))
        out[backend] = ({x: best[x] for x in labels}, len(by[backend]))
    return out


def record_paths(records: list[dict[str, Any]]) -> dict[str, str | None]:
    """``run_id`` → the path its record was read from (``_path``, set by ``records.read_records``)."""
    return {str(r.get("run_id")): r.get("_path") for r in records if isinstance(r, dict)}


def summarise(runs: list[Run], metric: str, paths: dict[str, str | None]) -> tuple[pd.DataFrame, int]:
    """``step, mean, std, n`` of ``metric`` over the runs' traces, and how many runs had it."""
    frames = []
    for r in runs:
        t = read_trace(paths.get(r.run_id), (metric,))
        if t is not None and metric in t:
            frames.append(t[["step", metric]].dropna())
    if not frames:
        return pd.DataFrame(columns=["step", "mean", "std", "n"]), 0
    agg = pd.concat(frames).groupby("step")[metric].agg(["mean", "std", "count"]).reset_index()
    return agg.rename(columns={"count": "n"}).sort_values("step"), len(frames)


def _table(task: str, metrics: tuple[str, ...], data: dict) -> Table:
    header = ["backend", "line", "runs", *[f"{m}: first → last step (traces)" for m in metrics]]
    rows = []
    for backend, lines in data.items():
        for label, (runs, per_metric) in lines.items():
            row = [cell(backend), cell(label, bold=True), cell(len(runs))]
            for m in metrics:
                agg, n = per_metric[m]
                if n == 0:
                    row.append(Cell("no trace", tone="muted"))
                    continue
                first, last = agg.iloc[0], agg.iloc[-1]
                row.append(cell(f"{fmt.value(m, float(first['mean']))} (step {int(first['step'])}) → "
                                f"{fmt.value(m, float(last['mean']))} (step {int(last['step'])}) ({n})"))
            rows.append(row)
    return Table(header, rows, align=["l", "l", "r"] + ["r"] * len(metrics))


def figure(task: str, metrics: tuple[str, ...], data: dict, path: Path) -> Figure | None:
    """Rows = backends, columns = metrics; one line per label (same colour in every panel), band = ± std."""
    if not any(n for lines in data.values() for _, per in lines.values() for _, n in per.values()):
        return None
    from mlo_bench.suite.report.render.figures import pyplot, save

    plt, sns = pyplot()
    labels = list(dict.fromkeys(label for lines in data.values() for label in lines))
    colors = dict(zip(labels, sns.color_palette("colorblind", max(len(labels), 3)), strict=False))
    styles = dict(zip(labels, ["-", "--", "-.", ":"] * math.ceil(len(labels) / 4), strict=False))
    rows, cols = len(data), len(metrics)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False)
    for i, (backend, lines) in enumerate(data.items()):
        for j, m in enumerate(metrics):
            ax = axes[i][j]
            for label, (_, per) in lines.items():
                agg, n = per[m]
                if not n:
                    continue
                ax.plot(agg["step"], agg["mean"], ls=styles[label], marker="o", ms=3, lw=1.4, color=colors[label],
                        label=label)
                band = agg["std"].fillna(0)
                if (agg["n"] > 1).any():
                    ax.fill_between(agg["step"], agg["mean"] - band, agg["mean"] + band, color=colors[label],
                                    alpha=0.15, lw=0)
            ax.set_title(f"{backend} · {m} {specs.arrow(task, m)}".rstrip(), fontsize=10)
            ax.set_xlabel("outer step")
    handles = [plt.Line2D([], [], color=colors[x], ls=styles[x], label=x) for x in labels]
    fig.tight_layout()
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    caption = (f"`{task}`: {', '.join(f'`{m}`' for m in metrics)} against the outer step, from each run's "
               "`trace.csv`: mean over seeds per variant, band = ± std over seeds.")
    return Figure(save(fig, path), caption)


def section(task: str, records: list[dict[str, Any]], folder: Path | None) -> tuple[Section, list[Path]] | None:
    """The task's curve section (``None`` when it declares no curves or has no ok run) and the figures written."""
    metrics = tuple(specs.paper(task).curves)
    found = groups(task, records) if metrics else {}
    if not found:
        return None
    paths = record_paths(records)
    data = {b: {label: (runs, {m: summarise(runs, m, paths) for m in metrics}) for label, runs in lines.items()}
            for b, (lines, _) in found.items()}
    sec = Section(f"{task}: curves during training", anchor_id=slug(f"{task}-curves"))
    others = [f"{n - 1} other group(s) of runs on {b} not drawn" for b, (_, n) in found.items() if n > 1]
    sec.add(Para(f"The trace metrics `{task}` declares ({', '.join(f'`{m}`' for m in metrics)}), measured every "
                 "`eval_every` steps, per variant (the method where a run stands for no declared variant), mean over "
                 "seeds; per backend the runs of the config shared by the most runs"
                 + (f" ({'; '.join(others)})" if others else "") + ". Runs without a trace (run without "
                 "`eval_every`) show `no trace`."))
    sec.add(_table(task, metrics, data))
    written = []
    if folder is not None:
        from mlo_bench.suite.report.render.figures import safe

        fig = safe(figure, task, metrics, data, folder / f"{slug(task)}-curves.png")
        if fig is not None:
            sec.add(fig)
            written.append(fig.path)
    return sec, written


def sections(records: list[dict[str, Any]], folder: Path | None) -> tuple[list[Section], list[Path]]:
    """One curve section per task (name order) that declares curves and has ok runs."""
    out, written = [], []
    for task in sorted(specs.tasks()):
        got = section(task, records, folder)
        if got is not None:
            out.append(got[0])
            written.extend(got[1])
    return out, written


def part(ctx: Context) -> Rendered:
    """Every curve section (:func:`sections`) with its figure."""
    secs, written = sections(ctx.records, ctx.figures)
    return Rendered(secs, written)
