""""Which one should I use?" — per task and setting, every backend × method on quality, time per outer step, peak
memory and hypergradient error; the Pareto-optimal ones marked; one computed sentence per setting.

- **quality**: the task's first declared quality metric (``Task.paper.metrics``), else ``outer_loss``.
- **time per outer step**: ``time_inner_s + time_hypergrad_s + time_outer_s`` (medians per run), mean over the
  seeds timed on a quiet machine; a combination timed only under load is marked ⚠ and ranked with those numbers.
- **memory**: ``peak_live_bytes`` where every combination has it (deterministic), else ``peak_memory_bytes``.
- **Pareto-optimal**: no other combination is at least as good on every criterion and better on one (criteria
  missing for some combination are left out of the comparison).
- **the sentence**: the fastest combination among those whose mean quality is within :data:`WITHIN` (relative) of
  the best mean quality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mlo_bench.suite.report import specs, stats
from mlo_bench.suite.report.render import fmt
from mlo_bench.suite.report.render.doc import Cell, Para, Section, Table, cell
from mlo_bench.suite.report.sections import Context, Facts, Rendered

#: "within 1% of the best quality"
WITHIN = 0.01
#: settings shown per task (largest first)
MAX_SETTINGS = 3
STEP = ("time_inner_s", "time_hypergrad_s", "time_outer_s")


@dataclass
class Row:
    backend: str
    label: str
    values: dict[str, float] = field(default_factory=dict)  # criterion -> mean
    n: int = 0
    loaded_only: bool = False
    pareto: bool = False


def _mean(values) -> float:
    return stats.mean_std([float(v) for v in values if v is not None and math.isfinite(float(v))])[0]


def rows(setting, quality: str | None, memory: str) -> list[Row]:
    out = []
    for combo in setting.combos:
        ok = combo.runs[combo.runs["status"] == "ok"]
        if ok.empty:
            continue
        row = Row(combo.backend, combo.label, n=len(ok))
        if all(m in ok for m in STEP):
            steps = ok[list(STEP)].sum(axis=1, min_count=len(STEP))
            quiet = steps[ok["loaded"].fillna(False) == False]  # noqa: E712 - a nullable boolean column
            row.loaded_only = quiet.empty and bool(ok["loaded"].fillna(False).any())
            row.values["time"] = _mean(quiet if not quiet.empty else steps)
        for key, metric in (("quality", quality), ("memory", memory), ("error", "hypergrad_rel_error")):
            if metric and metric in ok:
                row.values[key] = _mean(ok[metric])
        out.append(row)
    return out


def mark_pareto(rs: list[Row], directions: dict[str, str]) -> None:
    keys = [k for k in directions if all(math.isfinite(r.values.get(k, math.nan)) for r in rs)]

    def better_eq(a: Row, b: Row, k: str) -> bool:
        return a.values[k] >= b.values[k] if directions[k] == "higher" else a.values[k] <= b.values[k]

    for r in rs:
        r.pareto = bool(keys) and not any(
            all(better_eq(o, r, k) for k in keys) and any(o.values[k] != r.values[k] for k in keys)
            for o in rs if o is not r)


def sentence(task: str, where: str, rs: list[Row], quality: str | None, direction: str | None) -> str | None:
    """The computed recommendation for one setting (``None`` without quality or time)."""
    scored = [r for r in rs if math.isfinite(r.values.get("quality", math.nan))
              and math.isfinite(r.values.get("time", math.nan))]
    if len(scored) < 2 or quality is None or direction is None:
        return None
    qs = [r.values["quality"] for r in scored]
    best = max(qs) if direction == "higher" else min(qs)
    tol = WITHIN * abs(best)
    near = [r for r in scored if (r.values["quality"] >= best - tol if direction == "higher"
                                  else r.values["quality"] <= best + tol)]
    pick = min(near, key=lambda r: r.values["time"])
    top = next(r for r in scored if r.values["quality"] == best)
    q = fmt.value(quality, pick.values["quality"])
    t = fmt.value("time_s", pick.values["time"])
    if pick is top:
        return (f"on **{task}/{where}**, **{pick.backend} × {pick.label}** has the best `{quality}` ({q}) and is the "
                f"fastest of those within {WITHIN:.0%} of it ({t} per outer step)")
    return (f"on **{task}/{where}**, **{pick.backend} × {pick.label}** is fastest ({t} per outer step) within "
            f"{WITHIN:.0%} of the best `{quality}` ({q}; best {fmt.value(quality, best)}, {top.backend} × "
            f"{top.label})")


def section(settings: list) -> tuple[Section, list[str]]:
    """The section and its sentences (one per setting with at least two combinations that ended ok)."""
    sec = Section("Which one should I use?", anchor_id="choice")
    sec.add(Para("Per task and setting, every backend × method: quality (the task's first declared quality metric), "
                 "time per outer step (inner + hypergradient + outer medians; runs timed under load left out where "
                 "quiet ones exist, ⚠ where none do), peak memory and hypergradient error, means over ok seeds. "
                 "**★** = Pareto-optimal (no other combination is at least as good on every column and better on "
                 f"one). The sentence names the fastest combination within {WITHIN:.0%} of the best quality."))
    sentences = []
    for task in sorted({s.task for s in settings}):
        shown = [s for s in settings if s.task == task and sum(
            (c.runs["status"] == "ok").any() for c in s.combos) >= 2][:MAX_SETTINGS]
        for s in shown:
            metrics = [m for m in s.runs.columns if s.runs[m].dtype.kind == "f"]
            qual = (specs.quality(task, metrics) or [None])[0]
            live = "peak_live_bytes" in s.runs and s.runs["peak_live_bytes"].notna().all()
            memory = "peak_live_bytes" if live else "peak_memory_bytes"
            rs = rows(s, qual, memory)
            directions = {"quality": specs.direction(task, qual) if qual else None, "time": "lower",
                          "memory": "lower", "error": "lower"}
            mark_pareto(rs, {k: v for k, v in directions.items() if v})
            where = f"setting {s.name}" + (f" ({s.short})" if s.short else "")
            line = sentence(task, where, rs, qual, directions["quality"])
            if line:
                sentences.append(line)
            header = ["", "backend", "method", f"{qual or 'quality'} {specs.arrow(task, qual or '')}".rstrip(),
                      "time / outer step ↓", f"{memory} ↓", "hypergrad_rel_error ↓", "runs"]
            body = [[Cell("★" if r.pareto else "", bold=True), cell(r.backend), cell(r.label),
                     cell(fmt.value(qual or "", r.values.get("quality"))),
                     Cell(fmt.value("time_s", r.values.get("time")) + (" ⚠" if r.loaded_only else ""),
                          tone="warn" if r.loaded_only else ""),
                     cell(fmt.value(memory, r.values.get("memory"))),
                     cell(fmt.value("hypergrad_rel_error", r.values.get("error"))), cell(r.n)]
                    for r in sorted(rs, key=lambda r: (not r.pareto, r.values.get("time", math.inf)))]
            sec.add(Para(f"**{task} · [{where}](#{s.anchor})**" + (f" — {line}." if line else "")),
                    Table(header, body, align=["l", "l", "l", "r", "r", "r", "r", "r"]))
    if not sentences:
        sec.add(Para("No setting has two combinations that ended ok: nothing to choose between."))
    return sec, sentences


def part(ctx: Context) -> Rendered:
    """The "Which one should I use?" section; its sentences go to the command's closing line."""
    sec, sentences = section(ctx.settings)
    return Rendered([sec], facts=Facts(choices=sentences))
