"""Assemble the report: read records, write the tidy tables, draw figures, render Markdown and HTML."""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mlo_bench.suite import __version__
from mlo_bench.suite.report import specs
from mlo_bench.suite.report.render import figures, html, markdown
from mlo_bench.suite.report.render.doc import Bullets, Document, Figure, Para, Section, slug
from mlo_bench.suite.report.render.figures import safe as _safe
from mlo_bench.suite.report.runs import prepare, variant_of
from mlo_bench.suite.report.sections import bench as bench_mod
from mlo_bench.suite.report.sections import choice, curves, engines, floor, papers, tables, timing
from mlo_bench.suite.report.sections import claims as claims_mod
from mlo_bench.suite.report.sections import complexity as complexity_section
from mlo_bench.suite.report.tidy import tidy, wide
from mlo_bench.suite.run.records import iter_record_paths, read_records, write_atomic, write_text_atomic

FIGURE_DIR = "figures"
#: per task, settings beyond this many (by run count) get their table but no figures
MAX_FIGURE_SETTINGS = 6


class InputError(ValueError):
    """Bad input (no records, unreadable directory, bad --bench file): one line, exit code 2."""


@dataclass
class Loaded:
    records: list[dict[str, Any]]
    corrupt: list[str] = field(default_factory=list)


def load(paths: list[Path]) -> Loaded:
    """Every readable record under ``paths``; corrupt ones are collected (path: reason), never fatal."""
    for p in paths:
        if not p.exists():
            raise InputError(f"no such results directory: {p}")
        if p.is_dir():
            try:
                with os.scandir(p):
                    pass
            except OSError as exc:
                raise InputError(f"cannot read results directory {p}: {exc.strerror or exc}") from None
        elif p.name != "record.json":
            raise InputError(f"{p} is neither a results directory nor a record.json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = read_records(paths)
    corrupt = [str(w.message).removeprefix("skipping unreadable record ") for w in caught
               if "unreadable record" in str(w.message)]
    if not records:
        where = ", ".join(str(p) for p in paths)
        found = sum(1 for _ in iter_record_paths(paths))
        if found:
            raise InputError(f"no readable run record under {where} ({found} record.json file(s), all corrupt)")
        raise InputError(f"no run records under {where} (expected runs/<run_id>/record.json; "
                         "make some with mlo-bench run)")
    return Loaded(records, corrupt)


def _provenance(records: list[dict[str, Any]]) -> list[str]:
    machines: Counter = Counter()
    commits: Counter = Counter()
    versions: Counter = Counter()
    for r in records:
        p = r.get("provenance") or {}
        gpu = f", GPU {p['gpu']}" if p.get("gpu") else ""
        machines[f"{p.get('hostname', '?')}: {p.get('cpu', '?')} ({p.get('cpu_count', '?')} CPUs{gpu})"] += 1
        commits[str(p.get("git_commit", "?"))] += 1
        versions[", ".join(f"{k} {p[k]}" for k in ("python", "torch", "jax") if p.get(k))] += 1
    lines = ["machines: " + "; ".join(f"`{m}` ({n} runs)" for m, n in machines.most_common()),
             "code: " + "; ".join(f"git `{c}` ({n} runs)" for c, n in commits.most_common()),
             "software: " + "; ".join(f"{v or '?'} ({n} runs)" for v, n in versions.most_common())]
    if len(machines) > 1:
        lines.append("**timings come from more than one machine: compare them within a machine only**")
    return lines


def build(paths: list[Path], out: Path, bench_files: list[Path], draw: bool = True) -> dict[str, Any]:
    """Write every report file into ``out``; returns what was written (for the CLI's closing line)."""
    loaded = load(paths)
    bench = bench_mod.load_all(bench_files) if bench_files else None  # a bad --bench file fails before writing
    out.mkdir(parents=True, exist_ok=True)
    records = loaded.records
    frame = tidy(records)
    write_atomic(out / "results.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
    write_atomic(out / "results.csv", lambda tmp: frame.to_csv(tmp, index=False))

    w = wide(frame)
    w["task"] = w["task"].fillna("?")
    w.attrs["metrics"] = sorted(frame["metric"].dropna().unique())
    w["task_variant"] = w["run_id"].map({r.run_id: variant_of(r) for r in prepare(records)})
    configs = {r.get("run_id"): r.get("config") or {} for r in records}
    settings = tables.split_settings(w, configs)
    names = {rid: s.name for s in settings for rid in s.runs["run_id"]}
    w["setting_name"] = w["run_id"].map(names)

    why_no_figures = figures.available() if draw else "disabled with --no-figures"
    written: list[Path] = []
    doc = Document(
        "mlo-bench report",
        f"{len(records)} runs from {', '.join(f'`{p}`' for p in paths)} · generated "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by mlo-bench {__version__}")

    counts = tables.status_counts(w)
    not_ok = int((w["status"] != "ok").sum())
    summary = Section("Summary")
    summary.add(Para(f"**{len(w)} runs**: {tables.status_text(counts)}"
                     + (f" — {'the run' if not_ok == 1 else f'the {not_ok} runs'} that did not end ok "
                        f"{'is' if not_ok == 1 else 'are'} listed under "
                        "[Runs that did not end ok](#runs-that-did-not-end-ok)" if not_ok else "")
                     + (f"; **{len(loaded.corrupt)} corrupt record file(s) skipped** (listed below)"
                        if loaded.corrupt else "") + "."))
    summary.add(tables.counts_table(w))
    summary.add(*tables.corrupt_block(loaded.corrupt))

    task_sections: list[Section] = []
    partial_lines = []
    for task in sorted({s.task for s in settings}):
        task_settings = [s for s in settings if s.task == task]
        sec = Section(f"Task: {task}")
        n_runs = sum(len(s.runs) for s in task_settings)
        sec.add(Para(f"{_runs(n_runs)} in {len(task_settings)} setting(s) (a setting = the same config except backend, "
                     "method and seed; settings are never pooled)."))
        task_sections.append(sec)
        if len(task_settings) > MAX_FIGURE_SETTINGS and why_no_figures is None:
            sec.add(Para(f"Figures are drawn for the {MAX_FIGURE_SETTINGS} largest settings only; every setting "
                         "has its table."))
        for rank, setting in enumerate(task_settings):
            sub = Section(setting.title, level=3, anchor_id=setting.anchor)
            metrics = tables.key_metrics(_with_attrs(setting.runs, w), task)
            sub.add(Para(f"{_runs(len(setting.runs))} ({tables.status_text(tables.status_counts(setting.runs))}); "
                         f"{setting.description}."))
            sub.add(tables.comparison(setting, metrics))
            if not metrics:
                sub.add(Para("No run of this setting ended ok: no metrics to show."))
            notes = tables.coverage(setting)
            if notes:
                sub.add(Para("**Missing or failed in this setting:**"), Bullets(notes))
                partial_lines.append(f"[{setting.title}](#{setting.anchor}): {len(notes)} gap(s) — "
                                     + "; ".join(notes[:3]) + ("; …" if len(notes) > 3 else ""))
            if why_no_figures is None and rank < MAX_FIGURE_SETTINGS:
                for fig in _setting_figures(setting, metrics, out / FIGURE_DIR):
                    sub.add(fig)
                    written.append(fig.path)
            task_sections.append(sub)
        size, label, timed = (specs.paper(task).size, specs.paper(task).size_label,
                              specs.paper(task).size_metrics)
        for k, group in enumerate(tables.scaling_groups(task_settings)):
            names = ", ".join(s.name for s in group)
            sub = Section(f"{task} · scaling with {label} (settings {names})", level=3,
                          anchor_id=slug(f"{task}-scaling-{k + 1}"))
            sub.add(Para(f"The same config at several sizes {label} (`{size}`): how {', '.join(timed)} grow."))
            for j, metric in enumerate(timed):
                sub.add(tables.scaling_table(group, metric))
                if why_no_figures is None:
                    runs = pd.concat([s.runs for s in group], ignore_index=True)
                    fig = _safe(figures.scaling, runs, out / FIGURE_DIR / f"{slug(task)}-scaling-{k + 1}"
                                f"{'' if j == 0 else f'-{slug(metric)}'}.png", f"{task}: {metric} against {label}",
                                str(size), metric)
                    if fig is not None:
                        sub.add(fig)
                        written.append(fig.path)
            task_sections.append(sub)

    pick, sentences = choice.section(settings)
    if sentences:
        summary.add(Para("**Which one should I use** (details in [the next section](#choice)):"),
                    Bullets([x[0].upper() + x[1:] + "." for x in sentences]))
    summary.add(Para(timing.summary_line(w)))
    if partial_lines:
        summary.add(Para("**Partial sweeps** (combinations with fewer seeds than others, absent or failed):"),
                     Bullets(partial_lines))
    else:
        summary.add(Para("Every combination of every setting ran the same seeds and ended ok."))
    if why_no_figures:
        summary.add(Para(f"Figures skipped: {why_no_figures}."))
    summary.add(Para("Provenance:"), Bullets(_provenance(records)))
    doc.sections.append(summary)
    doc.sections.append(pick)
    doc.sections.extend(task_sections)

    if bench is not None:
        fig = None
        if why_no_figures is None:
            fig = _safe(figures.bench_scaling, bench, out / FIGURE_DIR / "bench-scaling.png")
            if fig is not None:
                written.append(fig.path)
        doc.sections.append(bench_mod.section(bench, bench_files, fig))
        write_atomic(out / "bench.csv", lambda tmp: bench.to_csv(tmp, index=False))

    cx = complexity_section.build(records, out, draw=why_no_figures is None)  # the O(d²)/O(d³) size sweep, when present
    if cx is not None:
        doc.sections.append(cx.section)
        written.extend(cx.figures)

    doc.sections.extend(engines.sections(settings, records))  # peer engines (libraries) beside the suite's own
    fl = floor.section(w, out / FIGURE_DIR if why_no_figures is None else None)  # hypergradients in gradients
    if fl is not None:
        doc.sections.append(fl[0])
        written.extend(fl[1])

    # each task's declared paper tables (and their figures), paired verdicts per backend
    paper_sections = papers.sections(records, out / FIGURE_DIR if why_no_figures is None else None)
    doc.sections.extend(paper_sections)
    written.extend(b.path for s in paper_sections for b in s.blocks if isinstance(b, Figure))
    curve_sections, curve_figures = curves.sections(records, out / FIGURE_DIR if why_no_figures is None else None)
    doc.sections.extend(curve_sections)  # the trace metrics each task declares (Paper.curves), against the step
    written.extend(curve_figures)
    results = claims_mod.evaluate(claims_mod.load_claims(), records)
    doc.sections.append(claims_mod.section(results))
    doc.sections.append(timing.section(w))

    fail = Section("Runs that did not end ok")
    if not_ok:
        fail.add(Para(f"{not_ok} run(s), by status: "
                      + tables.status_text(Counter({k: v for k, v in counts.items() if k != "ok"})) + "."),
                 tables.failures_table(w))
    else:
        fail.add(Para("None: every run ended ok."))
    fail.add(*tables.corrupt_block(loaded.corrupt))
    doc.sections.append(fail)
    doc.sections.append(_about())

    _remove_stale(out / FIGURE_DIR, written)
    write_text_atomic(out / "report.md", markdown.render(doc, out))
    write_text_atomic(out / "report.html", html.render(doc))
    return {"out": out, "runs": len(w), "not_ok": not_ok, "corrupt": loaded.corrupt, "figures": written,
            "claims": Counter(r.verdict for r in results), "bench": 0 if bench is None else len(bench),
            "complexity": None if cx is None else cx.verdict.verdict, "choices": sentences,
            "loaded": len(timing.flagged(w))}


def _runs(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def _with_attrs(runs: pd.DataFrame, w: pd.DataFrame) -> pd.DataFrame:
    runs = runs.copy()
    runs.attrs["metrics"] = w.attrs["metrics"]
    return runs


def _setting_figures(setting: tables.Setting, metrics: list[str], folder: Path) -> list:
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
        _safe(figures.metric_bars, setting.runs, labels, quality, folder / f"{stem}-metrics.png",
              f"{task} · setting {setting.name}: results by method and backend",
              "Key metrics (the task's declared quality metrics and the hypergradient error): bars = mean over ok "
              "seeds, whiskers = std, dots = individual seeds.", task),
        _safe(figures.metric_bars, setting.runs, labels, cost, folder / f"{stem}-cost.png",
              f"{task} · setting {setting.name}: cost",
              "Wall time per hypergradient (median per run), total training time and peak memory "
              "(see `memory_kind`); bars = mean over seeds, whiskers = std, dots = seeds.", task),
        _safe(figures.quality_vs_cost, setting.runs, labels, folder / f"{stem}-quality-vs-cost.png",
              f"{task} · setting {setting.name}: hypergradient quality vs cost"),
    ]
    return [f for f in out if f is not None]


def _remove_stale(folder: Path, keep: list[Path]) -> None:
    """Figures of an earlier report in the same folder that this one did not redraw."""
    if not folder.is_dir():
        return
    keep_names = {p.name for p in keep}
    for png in folder.glob("*.png"):
        if png.name not in keep_names:
            png.unlink(missing_ok=True)


def _about() -> Section:
    sec = Section("How to read this report")
    sec.add(Bullets([
        "Files beside this report: `results.parquet` and `results.csv` (the tidy table: one row per run × metric, "
        "with the task's knobs as `task.<key>` columns), `report.md` (this content in Markdown), `figures/*.png`.",
        "Values are mean ± sample standard deviation over seeds (n = ok seeds); a combination's failed seeds are "
        "counted in its `runs` column and listed, never averaged in.",
        "Timings are medians per run after a warm-up step, compile time apart (`compile_s`); compare them as ratios "
        "within one machine. Peak memory is the run's own (`memory_kind`: `cpu_rss_delta` is page-granular and "
        "noisy for small problems; `cuda_allocated` / `jax_device` are exact).",
        "`hypergrad_rel_error` is measured against the task's closed-form oracle at the exact lower-level "
        "solution (or, without one, against `exact` at the final state), so it isolates the method's error.",
        "Which metrics are results (ranked, plotted), costs or diagnostics (recorded, never ranked) is declared by "
        "each task (`Task.paper.metrics`); ↑ / ↓ say which way is better.",
        "Times marked ⚠ were taken while the machine's load average exceeded its core count; they are left out of "
        "time verdicts.",
        "Metric definitions: `results/README.md`.",
    ]))
    return sec


def print_done(info: dict[str, Any]) -> None:
    out = info["out"]
    claims = ", ".join(f"{v} {k}" for k, v in info["claims"].items())
    print(f"report: {out / 'report.html'}  ({info['runs']} runs, {info['not_ok']} not ok, "
          f"{len(info['corrupt'])} corrupt skipped; {len(info['figures'])} figures; claims: {claims}"
          + (f"; {info['bench']} benchmarks" if info["bench"] else "") + ")")
    print(f"also:   {out / 'report.md'}, {out / 'results.csv'}, {out / 'results.parquet'}")
    for line in info.get("choices", []):
        print("choice: " + line.replace("**", "").replace("`", ""))
    if info.get("complexity"):
        print(f"complexity: {out / 'complexity_fit.csv'} (O(d³) → O(d²) claim: {info['complexity']})")
    for c in info["corrupt"]:
        print(f"mlo-bench report: warning: skipped unreadable record {c}", file=sys.stderr)
