"""Assemble the report: read the records, write the tidy tables, make the :class:`~.sections.Context`, call each
part of :data:`PARTS` in order (the report is their sections, in that order, those of :data:`FOLDED` folded: the
contract is :mod:`mlo_bench.suite.report.sections`), remove figures of an earlier report that no part redrew, and
render the document as Markdown and as one self-contained HTML file."""

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
from mlo_bench.suite.report.render import figures, html, markdown
from mlo_bench.suite.report.render.doc import Document
from mlo_bench.suite.report.runs import prepare, recorded_variant, variant_of
from mlo_bench.suite.report.sections import (
    FIGURE_DIR,
    Context,
    Facts,
    Part,
    about,
    bench,
    choice,
    claims,
    complexity,
    convergence,
    curves,
    engines,
    failures,
    floor,
    memory,
    overview,
    papers,
    precision,
    scaling,
    summary,
    tables,
    tasks,
    timing,
)
from mlo_bench.suite.report.tidy import tidy, wide
from mlo_bench.suite.run.records import iter_record_paths, read_records, write_atomic, write_text_atomic

#: the report, part by part, in order
PARTS: tuple[Part, ...] = (overview.part, summary.part, choice.part, tasks.part, bench.part, complexity.part,
                           engines.part, floor.part, precision.part, memory.part, scaling.part, papers.part,
                           curves.part, convergence.part, claims.part, timing.part, failures.part, about.part)
#: the parts whose sections are folded (:attr:`~.render.doc.Section.folded`: heading and first paragraph in view, the
#: rest behind ``<details>``): the report leads with the answer (``overview``) and the summary, and keeps the dumps
#: — every setting's full table, the long lists — one click away
FOLDED: tuple[Part, ...] = tuple(p for p in PARTS if p not in (overview.part, summary.part))


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


def context(records: list[dict[str, Any]], frame: pd.DataFrame, out: Path, corrupt: list[str],
            bench_frame: pd.DataFrame | None = None, bench_files: list[Path] | None = None,
            draw: bool = True) -> Context:
    """What the parts read: the tidy ``frame`` widened to one row per run (``task`` ``?`` where unknown, the task's
    variant, the setting's name) and split into settings, and whether figures are drawn (and why not)."""
    w = wide(frame)
    w["task"] = w["task"].fillna("?")
    w.attrs["metrics"] = sorted(frame["metric"].dropna().unique())
    w["task_variant"] = w["run_id"].map({r.run_id: variant_of(r) for r in prepare(records)})
    configs = {r.get("run_id"): r.get("config") or {} for r in records}
    w["run_variant"] = w["run_id"].map({k: recorded_variant(c) for k, c in configs.items()})  # every status
    settings = tables.split_settings(w, configs)
    w["setting_name"] = w["run_id"].map({rid: s.name for s in settings for rid in s.runs["run_id"]})
    return Context(records=records, wide=w, settings=settings, out=out, corrupt=corrupt,
                   why_no_figures=figures.available() if draw else "disabled with --no-figures",
                   bench=bench_frame, bench_files=list(bench_files or []))


def build(paths: list[Path], out: Path, bench_files: list[Path], draw: bool = True) -> dict[str, Any]:
    """Write every report file into ``out``; returns what was written (for the CLI's closing line)."""
    loaded = load(paths)
    bench_frame = bench.load_all(bench_files) if bench_files else None  # a bad --bench file fails before writing
    out.mkdir(parents=True, exist_ok=True)
    records = loaded.records
    frame = tidy(records)
    write_atomic(out / "results.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
    write_atomic(out / "results.csv", lambda tmp: frame.to_csv(tmp, index=False))
    ctx = context(records, frame, out, loaded.corrupt, bench_frame, bench_files, draw)
    doc = Document(
        "mlo-bench report",
        f"{len(records)} runs from {', '.join(f'`{p}`' for p in paths)} · generated "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by mlo-bench {__version__}")
    written: list[Path] = []
    facts = Facts(choices=[], claims=Counter(), complexity=None, bench=0, loaded=0)  # where no part gives one
    for part in PARTS:
        got = part(ctx)
        for sec in got.sections:
            sec.folded = sec.folded or part in FOLDED
        doc.sections.extend(got.sections)
        written.extend(got.figures)
        facts.update(got.facts)
    _remove_stale(out / FIGURE_DIR, written)
    write_text_atomic(out / "report.md", markdown.render(doc, out))
    write_text_atomic(out / "report.html", html.render(doc))
    return {"out": out, "runs": len(ctx.wide), "not_ok": int((ctx.wide["status"] != "ok").sum()),
            "corrupt": loaded.corrupt, "figures": written, **facts}


def _remove_stale(folder: Path, keep: list[Path]) -> None:
    """Figures of an earlier report in the same folder that this one did not redraw."""
    if not folder.is_dir():
        return
    keep_names = {p.name for p in keep}
    for png in folder.glob("*.png"):
        if png.name not in keep_names:
            png.unlink(missing_ok=True)


def print_done(info: dict[str, Any]) -> None:
    """The command's closing lines: where the report is, what it holds, the choices; warnings on stderr."""
    out = info["out"]
    verdicts = ", ".join(f"{v} {k}" for k, v in info["claims"].items())
    print(f"report: {out / 'report.html'}  ({info['runs']} runs, {info['not_ok']} not ok, "
          f"{len(info['corrupt'])} corrupt skipped; {len(info['figures'])} figures; claims: {verdicts}"
          + (f"; {info['bench']} benchmarks" if info["bench"] else "") + ")")
    print(f"also:   {out / 'report.md'}, {out / 'results.csv'}, {out / 'results.parquet'}")
    for line in info.get("choices", []):
        print("choice: " + line.replace("**", "").replace("`", ""))
    if info.get("complexity"):
        print(f"complexity: {out / 'complexity_fit.csv'} (O(d³) → O(d²) claim: {info['complexity']})")
    for c in info["corrupt"]:
        print(f"mlo-bench report: warning: skipped unreadable record {c}", file=sys.stderr)
