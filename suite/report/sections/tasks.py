"""One section per task (name order): a subsection per setting (the same config except backend, method and seed;
settings are never pooled) with its comparison table, what a partial sweep is missing and its figures, then one
subsection per group of settings that differ only in the task's declared size knob (``Task.paper.size``): how the
task's ``size_metrics`` grow with it. Figures are drawn for the :data:`MAX_FIGURE_SETTINGS` largest settings of a
task only; every setting has its table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlo_bench.suite.report import specs
from mlo_bench.suite.report.render import figures
from mlo_bench.suite.report.render.doc import Bullets, Figure, Para, Section, slug
from mlo_bench.suite.report.sections import Context, Rendered, tables
from mlo_bench.suite.report.sections.tables import Setting

#: per task, settings beyond this many (by run count) get their table but no figures
MAX_FIGURE_SETTINGS = 6
#: gaps of a setting quoted in the summary's line for it (the rest: …)
QUOTED_GAPS = 3


def by_task(settings: list[Setting]) -> list[tuple[str, list[Setting]]]:
    """The settings of each task, tasks in name order, each task's in their order (largest first)."""
    return [(task, [s for s in settings if s.task == task]) for task in sorted({s.task for s in settings})]


def partial_lines(settings: list[Setting]) -> list[str]:
    """One line per setting of a partial sweep (:func:`tables.coverage` finds gaps), linking its subsection."""
    out = []
    for _, task_settings in by_task(settings):
        for s in task_settings:
            notes = tables.coverage(s)
            if notes:
                out.append(f"[{s.title}](#{s.anchor}): {len(notes)} gap(s) — " + "; ".join(notes[:QUOTED_GAPS])
                           + ("; …" if len(notes) > QUOTED_GAPS else ""))
    return out


def part(ctx: Context) -> Rendered:
    """Each task's section, its settings' subsections and its scaling subsections, with their figures."""
    out = Rendered()
    folder = ctx.figures
    for task, task_settings in by_task(ctx.settings):
        sec = Section(f"Task: {task}")
        n_runs = sum(len(s.runs) for s in task_settings)
        sec.add(Para(f"{_runs(n_runs)} in {len(task_settings)} setting(s) (a setting = the same config except backend, "
                     "method and seed; settings are never pooled)."))
        out.sections.append(sec)
        if len(task_settings) > MAX_FIGURE_SETTINGS and folder is not None:
            sec.add(Para(f"Figures are drawn for the {MAX_FIGURE_SETTINGS} largest settings only; every setting "
                         "has its table."))
        for rank, setting in enumerate(task_settings):
            sub = Section(setting.title, level=3, anchor_id=setting.anchor)
            metrics = tables.key_metrics(_with_attrs(setting.runs, ctx.wide), task)
            sub.add(Para(f"{_runs(len(setting.runs))} ({tables.status_text(tables.status_counts(setting.runs))}); "
                         f"{setting.description}."))
            sub.add(tables.comparison(setting, metrics))
            if not metrics:
                sub.add(Para("No run of this setting ended ok: no metrics to show."))
            notes = tables.coverage(setting)
            if notes:
                sub.add(Para("**Missing or failed in this setting:**"), Bullets(notes))
            if folder is not None and rank < MAX_FIGURE_SETTINGS:
                for fig in setting_figures(setting, metrics, folder):
                    sub.add(fig)
                    out.figures.append(fig.path)
            out.sections.append(sub)
        for sub, written in scaling(task, task_settings, folder):
            out.sections.append(sub)
            out.figures.extend(written)
    return out


def scaling(task: str, task_settings: list[Setting], folder: Path | None) -> list[tuple[Section, list[Path]]]:
    """One subsection per group of ``task_settings`` that differ only in the size knob, and the figures drawn into
    ``folder`` (none when it is ``None``)."""
    paper = specs.paper(task)
    size, label, timed = paper.size, paper.size_label, paper.size_metrics
    out = []
    for k, group in enumerate(tables.scaling_groups(task_settings)):
        names = ", ".join(s.name for s in group)
        sub = Section(f"{task} · scaling with {label} (settings {names})", level=3,
                      anchor_id=slug(f"{task}-scaling-{k + 1}"))
        sub.add(Para(f"The same config at several sizes {label} (`{size}`): how {', '.join(timed)} grow."))
        written = []
        for j, metric in enumerate(timed):
            sub.add(tables.scaling_table(group, metric))
            if folder is not None:
                runs = pd.concat([s.runs for s in group], ignore_index=True)
                fig = figures.safe(figures.scaling, runs, folder / f"{slug(task)}-scaling-{k + 1}"
                                   f"{'' if j == 0 else f'-{slug(metric)}'}.png", f"{task}: {metric} against {label}",
                                   str(size), metric)
                if fig is not None:
                    sub.add(fig)
                    written.append(fig.path)
        out.append((sub, written))
    return out


def _runs(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def _with_attrs(runs: pd.DataFrame, w: pd.DataFrame) -> pd.DataFrame:
    runs = runs.copy()
    runs.attrs["metrics"] = w.attrs["metrics"]
    return runs


def setting_figures(setting: Setting, metrics: list[str], folder: Path) -> list[Figure]:
    """A setting's figures in ``folder``: its key metrics and its costs by method and backend, and hypergradient
    quality against cost (none with fewer than two combinations that ended ok)."""
    ok_combos = [c for c in setting.combos if (c.runs["status"] == "ok").any()]
    if len(ok_combos) < 2:
        return []
    labels = {rid: c.label for c in setting.combos for rid in c.runs["run_id"]}
    stem = f"{slug(setting.task)}-{setting.name.lower()}"
    task = setting.task
    quality = [m for m in specs.quality(task, metrics) + ["hypergrad_rel_error"] if m in metrics][: figures.QUALITY_MAX]
    cost = [m for m in metrics if specs.ranked(task, m) and specs.unit(task, m) in ("s", "bytes")
            and m not in ("compile_s",)]
    out = [
        figures.safe(figures.metric_bars, setting.runs, labels, quality, folder / f"{stem}-metrics.png",
                     f"{task} · setting {setting.name}: results by method and backend",
                     "Key metrics (the task's declared quality metrics and the hypergradient error): bars = mean over "
                     "ok seeds, whiskers = std, dots = individual seeds.", task),
        figures.safe(figures.metric_bars, setting.runs, labels, cost, folder / f"{stem}-cost.png",
                     f"{task} · setting {setting.name}: cost",
                     "Wall time per hypergradient (median per run), total training time and peak memory "
                     "(see `memory_kind`); bars = mean over seeds, whiskers = std, dots = seeds.", task),
        figures.safe(figures.quality_vs_cost, setting.runs, labels, folder / f"{stem}-quality-vs-cost.png",
                     f"{task} · setting {setting.name}: hypergradient quality vs cost"),
    ]
    return [f for f in out if f is not None]
