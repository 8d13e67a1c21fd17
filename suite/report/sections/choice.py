""""Which one should I use?" — per task and setting, every backend × method on quality, time per outer step, time to
a result, peak memory and hypergradient error; the Pareto-optimal ones marked; one computed sentence per setting.

- **quality**: the task's first declared quality metric (``Task.paper.metrics``: its headline), else ``outer_loss``.
- **time per outer step**: ``time_step_s`` (the median whole step), else ``time_inner_s + time_hypergrad_s +
  time_outer_s`` (medians per run); mean over the seeds timed on a quiet machine; a combination timed only under load
  is marked ⚠ and ranked with those numbers.
- **time to result**: ``compile_s + steps × time per outer step`` at the run's step count (``steps_done``): what a
  run costs, a compiled engine's compile included (``compile_s`` is 0 for an eager one).
- **memory**: ``peak_live_bytes`` where every combination has it (deterministic), else ``peak_memory_bytes``.
- **Pareto-optimal**: no other combination is at least as good on every criterion and better on one (criteria
  missing for some combination are left out of the comparison).
- **the sentence**: among the combinations whose mean quality is within :data:`WITHIN` (relative) of the best, the
  one with the shortest time to result; and, where the fastest-stepping of them compiles (``compile_s`` > 0) and the
  fastest-stepping eager one steps slower, the step count from which the compiled one overtakes:
  ``n* = Δcompile / Δstep``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mlo_bench.suite.report import specs, stats
from mlo_bench.suite.report.render import fmt
from mlo_bench.suite.report.render.doc import Cell, Details, Para, Section, Table, cell
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
    spread: dict[str, float] = field(default_factory=dict)  # criterion -> std over seeds (NaN with one)
    compile: float = 0.0  # mean compile_s (0: eager, or not recorded)
    steps: float = math.nan  # mean steps_done

    @property
    def ttr(self) -> float:
        """Time to result: ``compile + steps × time per outer step`` (NaN without both)."""
        return self.compile + self.steps * self.values.get("time", math.nan)


@dataclass
class Choice:
    """One setting's verdict: its rows, the metric and direction they were ranked on, and the sentence."""

    setting: object
    rows: list[Row]
    quality: str | None
    direction: str | None
    memory: str
    sentence: str | None
    pick: Row | None = None  # the combination the sentence names


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _mean(values) -> float:
    return stats.mean_std(_finite(values))[0]


def rows(setting, quality: str | None, memory: str) -> list[Row]:
    out = []
    for combo in setting.combos:
        ok = combo.runs[combo.runs["status"] == "ok"]
        if ok.empty:
            continue
        row = Row(combo.backend, combo.label, n=len(ok))
        whole = "time_step_s" in ok and ok["time_step_s"].notna().all()
        if whole or all(m in ok for m in STEP):
            steps = ok["time_step_s"] if whole else ok[list(STEP)].sum(axis=1, min_count=len(STEP))
            quiet = steps[ok["loaded"].fillna(False) == False]  # noqa: E712 - a nullable boolean column
            row.loaded_only = quiet.empty and bool(ok["loaded"].fillna(False).any())
            _, row.spread["time"], _ = stats.mean_std(_finite(quiet if not quiet.empty else steps))
            row.values["time"] = _mean(quiet if not quiet.empty else steps)
        for key, metric in (("quality", quality), ("memory", memory), ("error", "hypergrad_rel_error")):
            if metric and metric in ok:
                row.values[key], row.spread[key], _ = stats.mean_std(_finite(ok[metric]))
        if "compile_s" in ok and _finite(ok["compile_s"]):
            row.compile = _mean(ok["compile_s"])
        if "steps_done" in ok and _finite(ok["steps_done"]):
            row.steps = _mean(ok["steps_done"])
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


def front(rs: list[Row], direction: str) -> list[Row]:
    """The quality–time Pareto front (minimise time, optimise quality in ``direction``), fastest first."""
    scored = sorted((r for r in rs if math.isfinite(r.values.get("quality", math.nan))
                     and math.isfinite(r.values.get("time", math.nan))),
                    key=lambda r: (r.values["time"], -r.values["quality"] if direction == "higher"
                                   else r.values["quality"]))
    out: list[Row] = []
    for r in scored:
        if not out or (r.values["quality"] > out[-1].values["quality"] if direction == "higher"
                       else r.values["quality"] < out[-1].values["quality"]):
            out.append(r)
    return out


def crossover(compiled: Row, eager: Row) -> float:
    """From how many steps ``compiled`` (compile > 0, faster step) is done sooner than ``eager``:
    ``Δcompile / Δstep`` (NaN where its step is not faster)."""
    dstep = eager.values.get("time", math.nan) - compiled.values.get("time", math.nan)
    return (compiled.compile - eager.compile) / dstep if dstep > 0 else math.nan


def _steps(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "?"


def _cost(r: Row) -> str:
    step = fmt.value("time_s", r.values["time"])
    if r.compile > 0:
        return f"{fmt.value('compile_s', r.compile)} compile + {_steps(r.steps)} × {step}"
    return f"{_steps(r.steps)} × {step}, no compile"


def sentence(task: str, where: str, rs: list[Row], quality: str | None, direction: str | None) -> str | None:
    """The computed recommendation for one setting (``None`` without quality or time)."""
    return verdict(task, where, rs, quality, direction)[1]


def verdict(task: str, where: str, rs: list[Row], quality: str | None,
            direction: str | None) -> tuple[Row | None, str | None]:
    """The recommended row and the sentence that names it (``None, None`` without quality or time)."""
    scored = [r for r in rs if math.isfinite(r.values.get("quality", math.nan))
              and math.isfinite(r.values.get("time", math.nan))]
    if len(scored) < 2 or quality is None or direction is None:
        return None, None
    qs = [r.values["quality"] for r in scored]
    best = max(qs) if direction == "higher" else min(qs)
    tol = WITHIN * abs(best)
    near = [r for r in scored if (r.values["quality"] >= best - tol if direction == "higher"
                                  else r.values["quality"] <= best + tol)]
    timed = [r for r in near if math.isfinite(r.ttr)]
    pick = min(timed, key=lambda r: r.ttr) if timed else min(near, key=lambda r: r.values["time"])
    top = next(r for r in scored if r.values["quality"] == best)
    q = fmt.value(quality, pick.values["quality"])
    t = fmt.value("time_s", pick.values["time"])
    how = "the soonest to a result" if timed else "the fastest per outer step"
    if pick is top:
        head = (f"on **{task}/{where}**, **{pick.backend} × {pick.label}** has the best `{quality}` ({q}) and is "
                f"{how} of those within {WITHIN:.0%} of it")
    else:
        head = (f"on **{task}/{where}**, **{pick.backend} × {pick.label}** is {how} within {WITHIN:.0%} of the best "
                f"`{quality}` ({q}; best {fmt.value(quality, best)}, {top.backend} × {top.label})")
    if not timed:
        return pick, head + f" ({t} per outer step)"
    out = head + f": **{fmt.value('time_s', pick.ttr)} to a result** ({_cost(pick)})"
    return pick, out + _overtake(pick, near)


def _overtake(pick: Row, near: list[Row]) -> str:
    """The compiled-versus-eager clause: from which step count a compiled engine is done sooner than an eager one."""
    eager = [r for r in near if r.compile <= 0 and math.isfinite(r.ttr)]
    compiled = [r for r in near if r.compile > 0 and math.isfinite(r.ttr)]
    if pick.compile > 0 and eager:
        e = min(eager, key=lambda r: r.values["time"])
        n = crossover(pick, e)
        return "" if not math.isfinite(n) else (
            f"; its compile pays off against the fastest eager one, {e.backend} × {e.label} "
            f"({fmt.value('time_s', e.values['time'])} per step), from **{_steps(n)} steps** (Δcompile / Δstep)")
    if pick.compile > 0 or not compiled:
        return ""
    c = min(compiled, key=lambda r: r.values["time"])
    n = crossover(c, pick)
    cs, ps = (fmt.value("time_s", r.values["time"]) for r in (c, pick))
    if not math.isfinite(n):
        return f"; compiled {c.backend} × {c.label} steps no faster ({cs} per step) and never overtakes"
    return (f"; compiled **{c.backend} × {c.label}** steps faster ({cs} vs {ps}) but compiles for "
            f"{fmt.value('compile_s', c.compile - pick.compile)}: it overtakes from **{_steps(n)} steps** "
            "(Δcompile / Δstep)")


def choices(settings: list) -> list[Choice]:
    """Per task (name order), its :data:`MAX_SETTINGS` largest settings with two combinations that ended ok."""
    out = []
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
            pick, line = verdict(task, where, rs, qual, directions["quality"])
            out.append(Choice(s, rs, qual, directions["quality"], memory, line, pick))
    return out


def section(settings: list) -> tuple[Section, list[str]]:
    """The section and its sentences (one per setting with at least two combinations that ended ok)."""
    sec = Section("Which one should I use?", anchor_id="choice")
    sec.add(Para("Per task and setting, every backend × method: quality (the task's first declared quality metric), "
                 "time per outer step (the median step; runs timed under load left out where quiet ones exist, ⚠ "
                 "where none do), time to a result (compile + the run's steps × time per step), peak memory and "
                 "hypergradient error, means over ok seeds. **★** = Pareto-optimal (no other combination is at least "
                 "as good on quality, time per step, memory and error, and better on one). The sentence names the "
                 f"soonest to a result within {WITHIN:.0%} of the best quality, and from which step count a compiled "
                 "engine overtakes an eager one."))
    found = choices(settings)
    for ch in found:
        s, qual, memory, task = ch.setting, ch.quality, ch.memory, ch.setting.task
        where = f"setting {s.name}" + (f" ({s.short})" if s.short else "")
        header = ["", "backend", "method", f"{qual or 'quality'} {specs.arrow(task, qual or '')}".rstrip(),
                  "time / outer step ↓", "compile_s", "time to result ↓", f"{memory} ↓", "hypergrad_rel_error ↓",
                  "runs"]
        body = [[Cell("★" if r.pareto else "", bold=True), cell(r.backend), cell(r.label),
                 cell(fmt.value(qual or "", r.values.get("quality"))),
                 Cell(fmt.value("time_s", r.values.get("time")) + (" ⚠" if r.loaded_only else ""),
                      tone="warn" if r.loaded_only else ""),
                 cell(fmt.value("compile_s", r.compile)), cell(fmt.value("time_s", r.ttr)),
                 cell(fmt.value(memory, r.values.get("memory"))),
                 cell(fmt.value("hypergrad_rel_error", r.values.get("error"))), cell(r.n)]
                for r in sorted(ch.rows, key=lambda r: (not r.pareto, r.values.get("time", math.inf)))]
        sec.add(Para(f"**{task} · [{where}](#{s.anchor})**" + (f" — {ch.sentence}." if ch.sentence else "")),
                Details(f"{task} · {where}: {len(body)} combinations",
                        [Table(header, body, align=["l", "l", "l"] + ["r"] * 7)]))
    sentences = [ch.sentence for ch in found if ch.sentence]
    if not sentences:
        sec.add(Para("No setting has two combinations that ended ok: nothing to choose between."))
    return sec, sentences


def part(ctx: Context) -> Rendered:
    """The "Which one should I use?" section; its sentences go to the command's closing line."""
    sec, sentences = section(ctx.settings)
    return Rendered([sec], facts=Facts(choices=sentences))
