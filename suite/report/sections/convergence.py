"""Convergence of stochastic solvers: the trace metrics a task declares in ``Paper.convergence`` (each with a tolerance)
against time and against oracle calls, as benchopt draws them.

For each such task: the ok runs with a trace, one line per backend × method. Where a backend × method was run at several
configs (a grid of step sizes — the same config apart from the seed is one config), the line is the config whose median
over seeds of the first metric's last value is lowest (the best of the grid, as benchopt's users pick it); the others
are counted. A config is one run per seed (a repeat of the same config and seed, e.g. a grid point equal to the
experiment's defaults in another results directory, counts once: the later run). At each measured step: the median over
seeds of the metric with its 20–80% quantile band, at the median over seeds of the run's training-clock time there
(``elapsed_s``: the task's metrics are computed outside the clock) and at the oracle calls of that many outer steps —
per outer step, the lower-level gradients (``inner_step_evals``) plus the hypergradient's gradient-like passes
(``gradient_count``: the method's declared ``gradients`` per edge + the top loss's gradient; lines without a count are
left off that axis). A table and one computed sentence rank the lines by the time at which the median first reaches the
tolerance. Nothing here names a task."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlo_bench.suite.report import specs
from mlo_bench.suite.report.render import fmt
from mlo_bench.suite.report.render.doc import Cell, Figure, Para, Section, Table, cell, slug
from mlo_bench.suite.report.runs import Run, group_key, prepare
from mlo_bench.suite.report.sections import Context, Rendered
from mlo_bench.suite.report.sections.curves import read_trace, record_paths

QUANTILES = (0.2, 0.8)


def _config_key(run: Run) -> str:
    return group_key(run) + json.dumps(run.config.get("method"), sort_keys=True, default=str) + str(
        run.config.get("inner_steps"))


def oracle_calls_per_step(run: Run) -> float | None:
    """Gradient-like passes of one outer step: the inner steps' gradients + the hypergradient's count."""
    m = run.metrics
    evals, count = m.get("inner_step_evals"), m.get("gradient_count")
    if evals is None or count is None:
        return None
    return float(evals) + float(count)


def curve(runs: list[Run], metric: str, paths: dict[str, str | None]) -> pd.DataFrame:
    """``step, median, lo, hi, time_s, calls, n`` over the runs' traces (rows where ``metric`` was measured)."""
    frames = []
    for r in runs:
        t = read_trace(paths.get(r.run_id), (metric, "elapsed_s"))
        if t is None or metric not in t or "elapsed_s" not in t:
            continue
        t = t[["step", metric, "elapsed_s"]].dropna()
        per = oracle_calls_per_step(r)
        frames.append(t.assign(calls=t["step"] * per if per is not None else np.nan))
    if not frames:
        return pd.DataFrame(columns=["step", "median", "lo", "hi", "time_s", "calls", "n"])
    g = pd.concat(frames).groupby("step")
    out = pd.DataFrame({"median": g[metric].median(), "lo": g[metric].quantile(QUANTILES[0]),
                        "hi": g[metric].quantile(QUANTILES[1]), "time_s": g["elapsed_s"].median(),
                        "calls": g["calls"].median(), "n": g[metric].count()}).reset_index()
    return out.sort_values("step")


def lines(task: str, records: list[dict[str, Any]]) -> tuple[dict[str, list[Run]], dict[str, int]]:
    """Per ``backend · method``: the runs of its best config (see the module docstring), and how many configs it had."""
    metric = next(iter(specs.paper(task).convergence))
    paths = record_paths(records)
    by: dict[str, dict[str, dict[Any, Run]]] = {}
    for run in sorted((r for r in prepare(records) if r.task == task), key=lambda r: r.run_id):
        # one run per seed of a config: a grid's point that repeats the experiment's defaults (another results
        # directory, so not resumed) would otherwise count its seeds twice; the later run is kept
        by.setdefault(f"{run.backend} · {run.method}", {}).setdefault(_config_key(run), {})[str(run.seed)] = run
    best, configs = {}, {}
    for label in sorted(by):
        def final(runs: list[Run]) -> float:
            c = curve(runs, metric, paths)
            return float(c["median"].iloc[-1]) if len(c) else math.inf

        best[label] = min((list(seeds.values()) for seeds in by[label].values()), key=final)
        configs[label] = len(by[label])
    return best, configs


def time_to(c: pd.DataFrame, tol: float) -> float | None:
    """The median time at the first measured step whose median is ≤ ``tol`` (``None``: not reached)."""
    hit = c[c["median"] <= tol]
    return None if hit.empty else float(hit["time_s"].iloc[0])


def ranking(task: str, metric: str, tol: float, data: dict[str, pd.DataFrame]) -> str:
    """The computed sentence: lines ordered by the time to reach the tolerance, those that never did named."""
    times = {label: time_to(c, tol) for label, c in data.items() if len(c)}
    reached = sorted((t, label) for label, t in times.items() if t is not None)
    missed = sorted(label for label, t in times.items() if t is None)
    if not times:
        return f"`{task}`: no run has a `{metric}` trace."
    text = f"`{task}`, ranked by the time for the median `{metric}` to reach ≤ {tol:g}: "
    text += ", ".join(f"{label} {fmt.value('time_total_s', t)}" for t, label in reached) if reached else "none did"
    if missed:
        text += f"; not reached within the runs: {', '.join(missed)}"
    return text + "."


def _table(metric: str, tol: float, data: dict[str, pd.DataFrame], configs: dict[str, int]) -> Table:
    header = ["line", "seeds", "configs", f"{metric} last (20–80%)", f"time to ≤ {tol:g}", "oracle calls then"]
    rows = []
    order = sorted(data, key=lambda x: (time_to(data[x], tol) is None, time_to(data[x], tol) or 0.0, x))
    for label in order:
        c = data[label]
        if not len(c):
            rows.append([cell(label, bold=True), cell(0), cell(configs[label]), Cell("no trace", tone="muted"),
                         cell("-"), cell("-")])
            continue
        last = c.iloc[-1]
        t = time_to(c, tol)
        calls = c[c["median"] <= tol]["calls"].iloc[0] if t is not None else None
        rows.append([cell(label, bold=True), cell(int(last["n"])), cell(configs[label]),
                     cell(f"{last['median']:.3g} ({last['lo']:.3g}–{last['hi']:.3g})"),
                     cell(fmt.value("time_total_s", t) if t is not None else "not reached"),
                     cell(f"{calls:.0f}" if calls is not None and np.isfinite(calls) else "-")])
    return Table(header, rows, align=["l", "r", "r", "r", "r", "r"])


def figure(task: str, metric: str, data: dict[str, pd.DataFrame], path: Path) -> Figure | None:
    """Two panels: the metric against time and against oracle calls (log-log), median and 20–80% band per line."""
    if not any(len(c) for c in data.values()):
        return None
    from mlo_bench.suite.report.render.figures import pyplot, save

    plt, sns = pyplot()
    # a colour per method, a line style per backend: with nine solvers on two backends, 18 colours would repeat
    methods = sorted({label.split(" · ")[-1] for label in data})
    backends = sorted({label.split(" · ")[0] for label in data})
    palette = dict(zip(methods, sns.color_palette("tab10" if len(methods) <= 10 else "husl", max(len(methods), 3)),
                       strict=False))
    styles = dict(zip(backends, ["-", "--", ":", "-."] * (1 + len(backends) // 4), strict=False))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), squeeze=False)
    for ax, x, xlabel in ((axes[0][0], "time_s", "time (s, training clock)"), (axes[0][1], "calls", "oracle calls")):
        for label, c in data.items():
            c = c[(c["median"] > 0) & c[x].notna() & (c[x] > 0)]
            if c.empty:
                continue
            color, style = palette[label.split(" · ")[-1]], styles[label.split(" · ")[0]]
            ax.plot(c[x], c["median"], lw=1.4, color=color, ls=style, label=label)
            ax.fill_between(c[x], c["lo"].clip(lower=1e-300), c["hi"], color=color, alpha=0.12, lw=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(f"{task} · {metric}", fontsize=10)
    axes[0][1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    caption = (f"`{task}`: `{metric}` against time and oracle calls, median over seeds, band 20–80% quantiles; "
               "one line per backend · method at its best config (colour: method; line style: backend).")
    return Figure(save(fig, path), caption)


def section(task: str, records: list[dict[str, Any]], folder: Path | None) -> tuple[Section, list[Path]] | None:
    tolerances = dict(specs.paper(task).convergence)
    best, configs = lines(task, records) if tolerances else ({}, {})
    if not best:
        return None
    paths = record_paths(records)
    sec = Section(f"{task}: convergence of the solvers", anchor_id=slug(f"{task}-convergence"))
    sec.add(Para("Median over seeds with the 20–80% band, against the training clock and against oracle calls "
                 "(gradients and Hessian-vector products per outer step, from the methods' declared counts); each "
                 "line at the config of its grid with the lowest final median."))
    written = []
    for metric, tol in tolerances.items():
        data = {label: curve(runs, metric, paths) for label, runs in best.items()}
        sec.add(Para(ranking(task, metric, tol, data)))
        sec.add(_table(metric, tol, data, configs))
        if folder is not None:
            from mlo_bench.suite.report.render.figures import safe

            fig = safe(figure, task, metric, data, folder / f"{slug(task)}-{slug(metric)}-convergence.png")
            if fig is not None:
                sec.add(fig)
                written.append(fig.path)
    return sec, written


def part(ctx: Context) -> Rendered:
    """One section per task that declares convergence metrics and has ok runs."""
    secs, written = [], []
    for task in sorted(specs.tasks()):
        got = section(task, ctx.records, ctx.figures)
        if got is not None:
            secs.append(got[0])
            written.extend(got[1])
    return Rendered(secs, written)
