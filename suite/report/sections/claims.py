"""The paper-claims table: every claim of the reference list (``suite/data/claims.csv``), measured where a task
declares it (the task's claims CSV, ``Task.paper.claims``) with the task's variants, settings and rules, and a
verdict computed from the records by :data:`RULE`. Relative claims are compared per backend, paired by seed.

A task's CSV may also hold claims the reference list lacks (figures of a source beside the papers, e.g. Betty's
tutorial): they follow the reference rows (:func:`all_claims`), judged by the same rules."""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from mlo_bench.suite.report import specs, stats
from mlo_bench.suite.report import verdicts as V
from mlo_bench.suite.report.render.doc import Bullets, Cell, Para, Section, Table, cell
from mlo_bench.suite.report.runs import Run, equal, group_key, loaded, metric_value, prepare, variant_of
from mlo_bench.suite.report.sections import Context, Facts, Rendered, papers
from mlo_bench.suite.report.sections import complexity_fit as complexity

#: why a time claim is not measured when each of its runs on one side was timed under load
LOADED_WHY = "every run of a side was timed under load (left out of time verdicts)"
#: a run shorter than 1/SHORT_FRACTION of its task's default steps is a probe, not a trained result
SHORT_FRACTION = 10

RULE = [
    "**Relative claims** (a variant against its table's baseline, e.g. darts-1 vs original-unrolled memory "
    "2051/2381 = 0.861×): on each backend where both variants ran, in their shared setting, the per-seed ratios "
    "variant/baseline (same seed: same data, initialisation and batches) give the geometric mean ratio and its 95% "
    "t-interval on the log ratios (Student t, n − 1 df); without two shared seeds, the unpaired ratio of means "
    "(delta method). **supported**: the whole interval on the paper's side of 1; **not supported**: wholly on the "
    f"other side; **inconclusive**: it contains 1, or no interval. Where the paper's two figures are within "
    f"{100 * (V.SAME - 1):.0f}% of each other the claim is \"no difference\": supported inside "
    f"[1/{V.EQUIVALENCE:g}, {V.EQUIVALENCE:g}], not supported wholly outside. Backends that disagree make the claim "
    "inconclusive. Time figures taken under load are left out.",
    "**Absolute claims** (each table's baseline): only on runs on the paper's own data; supported when the paper's "
    "figure lies in the 95% interval of our mean, not supported when outside, inconclusive with one seed.",
    "**Exponent claims** (O(d²) vs O(d³)): least-squares slope of log(metric) on log(size) per side, over the "
    "complexity section's range, 95% intervals: supported when the materialised side's interval lies wholly above "
    "the other's, not supported when wholly below, inconclusive when they overlap.",
    "**Trained runs only** for a claim on a quality metric (accuracy, loss): runs of fewer than "
    f"1/{SHORT_FRACTION:g} of the task's default steps (memory and time probes, e.g. 2 steps at BERT-base) are left "
    "out of it.",
    f"**{V.NOT_COMPARED}**: left out by design — absolute time and memory of the paper's hardware (their ratios are "
    f"compared in the other rows). **{V.NOT_MEASURED}**: no ok run for a side, every run of a side timed under "
    "load (time claims only: a loaded machine moves them here, see Timing), or no task in the suite declares the "
    "claim yet.",
]


@dataclass
class Claim:
    claim_id: str
    source: str
    table: str
    task: str
    setting: str
    variant: str
    metric: str
    value: str
    unit: str


@dataclass
class Result:
    claim: Claim
    text: str  # what is compared
    paper: str  # the paper's figure (or ratio)
    analogue: str  # which records stand for it
    measured: str = "–"
    verdict: str = V.NOT_MEASURED
    why: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    owner: str = ""  # the task that declares it


#: units of absolute figures that depend on the paper's hardware
HARDWARE_UNITS = ("s", "1/s", "bytes")
UNIT_SCALE = {"percent": 0.01, "MiB": 1024.0**2, "GiB": 1024.0**3, "min": 60.0, "s": 1.0}


def parse(text: str) -> list[Claim]:
    return [Claim(**{k: (v or "").strip() for k, v in row.items()}) for row in csv.DictReader(io.StringIO(text))]


def load_claims(text: str | None = None) -> list[Claim]:
    """The reference list (``suite/data/claims.csv``), or ``text`` in the same CSV format."""
    if text is None:
        text = resources.files("mlo_bench.suite.data").joinpath("claims.csv").read_text(encoding="utf-8")
    return parse(text)


def task_claims() -> list[Claim]:
    """The claims the registered tasks declare that the reference list lacks, in task order (one-line error on an
    id that two tasks declare)."""
    known, out, seen = {c.claim_id for c in load_claims()}, [], {}
    for task in sorted(specs.tasks()):
        path = specs.claims_file(task)
        for c in parse(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else ():
            if c.claim_id in known:
                continue
            if c.claim_id in seen:
                raise ValueError(f"claim {c.claim_id!r} is declared by tasks {seen[c.claim_id]!r} and {task!r}; "
                                 "a claim id names one claim")
            seen[c.claim_id] = task
            out.append(c)
    return out


def all_claims() -> list[Claim]:
    """The reference list, then :func:`task_claims`."""
    return [*load_claims(), *task_claims()]


def owners() -> dict[str, str]:
    """claim id → the registered task whose claims CSV declares it."""
    out = {}
    for task in sorted(specs.tasks()):
        path = specs.claims_file(task)
        if path is not None and path.is_file():
            out.update({c.claim_id: task for c in parse(path.read_text(encoding="utf-8"))})
    return out


def _select(runs: list[Run], task: str, variant: str, where: dict[str, Any]) -> list[Run]:
    return [r for r in runs if r.task == task and variant_of(r) == variant
            and all(k in r.flat and equal(r.flat[k], v) for k, v in where.items())]


def trained(runs: list[Run], task: str, metric: str) -> tuple[list[Run], int]:
    """``runs`` without the probes (fewer than 1/:data:`SHORT_FRACTION` of the task's default steps) where ``metric``
    is a quality metric of the task; and how many were left out."""
    m = specs.spec(task, metric)
    if m is None or not m.quality:
        return runs, 0
    kept = []
    for r in runs:
        default, steps = specs.default_steps(task, r.config.get("task") or {}), r.config.get("steps")
        short = isinstance(steps, int | float) and default is not None and steps * SHORT_FRACTION < default
        if not short:
            kept.append(r)
    return kept, len(runs) - len(kept)


def _metric(task: str, claim_metric: str, runs: list[Run]) -> str:
    candidates = specs.paper(task).claim_metrics.get(claim_metric, (claim_metric,))
    return next((m for m in candidates if any(metric_value(r, m) is not None for r in runs)), candidates[0])


def _drop(task: str) -> tuple[str, ...]:
    return ("variant", *{k for v in specs.paper(task).variants for k in v.overrides})


def per_backend(task: str, num: list[Run], den: list[Run], metric: str, expected: float) -> dict[str, Any]:
    """Per backend where both sides ran: the shared setting with the most runs, paired ratio and verdict."""
    out = {}
    for backend in sorted({r.backend for r in num} & {r.backend for r in den}):
        groups: dict[str, tuple[list[Run], list[Run]]] = {}
        for side, rs in ((0, num), (1, den)):
            for r in rs:
                if r.backend == backend:
                    groups.setdefault(group_key(r, _drop(task)), ([], []))[side].append(r)
        shared = [g for g in groups.values() if g[0] and g[1]]
        if not shared:
            continue
        a, b = max(shared, key=lambda g: len(g[0]) + len(g[1]))
        m = papers.measure(a, b, metric, task)
        if m is None:
            continue
        verdict = V.ratio_verdict(expected, m.lo, m.hi)
        out[backend] = (m, verdict)
    return out


def _ratio(res: Result, runs: list[Run], task: str, num: str, den: str, where: dict[str, Any], claim_metric: str,
           expected: float) -> Result:
    a, b = _select(runs, task, num, where), _select(runs, task, den, where)
    metric = _metric(task, claim_metric, a + b)
    (a, short_a), (b, short_b) = trained(a, task, metric), trained(b, task, metric)
    found = per_backend(task, a, b, metric, expected)
    if not found:
        missing = [n for n, rs in ((num, a), (den, b)) if not rs]
        if missing and short_a + short_b:
            res.why = (f"no trained run of {task}/{', '.join(missing)}: {short_a + short_b} run(s) shorter than "
                       f"1/{SHORT_FRACTION:g} of the task's default steps left out")
            return res
        busy = specs.timed(task, metric) and any(all(loaded(r.provenance) for r in rs) for rs in (a, b))
        res.why = (f"no ok run of {task}/{', '.join(missing)}" + (f" with {_where(where)}" if where else "")
                   if missing else LOADED_WHY if busy
                   else "the two variants never ran on one backend in one setting")
        return res
    res.verdict, why = V.agree({b_: v for b_, (_, v) in found.items()})
    res.measured = "; ".join(f"{b_} {m.text}: {v}" for b_, (m, v) in found.items())
    res.why = "; ".join(x for x in [why] + [f"{b_}: {m.note}" for b_, (m, _) in found.items() if m.note] if x)
    res.numbers = {b_: {"ratio": m.ratio, "lo": m.lo, "hi": m.hi, "n": m.n, "paired": m.paired}
                   for b_, (m, _) in found.items()}
    return res


def _where(where: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in where.items())


def evaluate(claims: list[Claim], records: list[dict[str, Any]]) -> list[Result]:
    runs, own = prepare(records), owners()
    index = {(c.source, c.table, c.setting, c.metric, c.variant): c for c in claims}
    return [evaluate_one(c, runs, own.get(c.claim_id), index) for c in claims]


def evaluate_one(c: Claim, runs: list[Run], task: str | None, index: dict[tuple, Claim]) -> Result:
    paper = f"{c.value} {c.unit}"
    if task is None:
        return Result(c, f"{c.variant} · {c.setting} · {c.metric}", paper, "–",
                      why=f"no task in the suite declares it (task `{c.task}` has not landed)")
    p = specs.paper(task)
    where = dict(p.settings.get(c.setting, {}))
    rule = p.rules.get(c.claim_id)
    if rule is not None:
        where.update(rule.where)
        res = Result(c, rule.text, paper, f"{task}: {rule.num} {'÷' if rule.kind == 'ratio' else 'vs'} {rule.den}"
                     + (f" [{_where(where)}]" if where else ""), owner=task)
        if rule.kind == "ratio":
            side = (f"{rule.expected:.3f}×" if math.isfinite(rule.expected) and rule.expected > 0
                    else "more than 1×" if rule.expected > 1 else "less than 1×")
            res.paper = f"{c.value} {c.unit}".strip() + f" → {side}"
            return _ratio(res, runs, task, rule.num, rule.den, where, rule.metric, rule.expected)
        return _exponent(res, runs, task, rule, where)
    baseline = p.baselines.get((c.source, c.table))
    ours = p.claim_variants.get(c.variant, c.variant)  # the task's variant that measures the paper's row
    if baseline is None or baseline == c.variant:
        data = {**where, **p.paper_data}
        res = Result(c, f"{c.variant} · {c.setting} · {c.metric} (absolute)", paper,
                     f"{task}: {ours} [{_where(data)}]", owner=task)
        metric = _metric(task, c.metric, runs)
        if specs.unit(task, metric) in HARDWARE_UNITS:
            res.verdict = V.NOT_COMPARED
            res.why = "absolute figure of the paper's hardware: compared as ratios in the other rows"
            return res
        return _absolute(res, _select(runs, task, ours, data), metric,
                         float(c.value) * UNIT_SCALE.get(c.unit, 1.0))
    base = index.get((c.source, c.table, c.setting, c.metric, baseline))
    if base is None:
        return Result(c, f"{c.variant} vs {baseline} · {c.setting} · {c.metric}", paper, "–", owner=task,
                      why=f"the paper reports no {baseline} figure to compare with")
    expected = float(c.value) / float(base.value)
    res = Result(c, f"{c.variant} / {baseline} · {c.setting} · {c.metric}",
                 f"{c.value} / {base.value} {c.unit} = {expected:.3f}×",
                 f"{task}: {ours} ÷ {baseline}" + (f" [{_where(where)}]" if where else ""), owner=task)
    return _ratio(res, runs, task, ours, p.claim_variants.get(baseline, baseline), where, c.metric, expected)


def _absolute(res: Result, chosen: list[Run], metric: str, expected: float) -> Result:
    chosen, _ = trained(chosen, res.owner, metric) if res.owner else (chosen, 0)
    chosen = [r for r in chosen if metric_value(r, metric) is not None]
    if not chosen:
        res.why = "no ok run on the paper's data"
        return res
    groups: dict[str, list[Run]] = {}
    for r in chosen:
        groups.setdefault(f"{r.backend} {group_key(r)}", []).append(r)
    group = max(groups.values(), key=len)
    mean, lo, hi, n = stats.mean_interval([metric_value(r, metric) for r in group])
    res.verdict = V.absolute_verdict(expected, lo, hi)
    res.measured = f"{_g(mean)} [{_g(lo)}, {_g(hi)}] (n={n}, {group[0].backend})"
    res.numbers = {"mean": mean, "lo": lo, "hi": hi, "n": n, "expected": expected}
    return res


def _g(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:.3g}"


def _exponent(res: Result, runs: list[Run], task: str, rule: Any, where: dict[str, Any]) -> Result:
    size = specs.paper(task).size
    num, den = _select(runs, task, rule.num, where), _select(runs, task, rule.den, where)
    groups: dict[str, tuple[list[Run], list[Run]]] = {}
    for side, rs in ((0, num), (1, den)):
        for r in rs:
            if metric_value(r, rule.metric) is not None and size:
                groups.setdefault(group_key(r, (size, *_drop(task))), ([], []))[side].append(r)
    shared = [g for g in groups.values() if g[0] and g[1]]
    if not shared:
        missing = [n for n, rs in ((rule.num, num), (rule.den, den)) if not rs]
        res.why = f"no ok run of {task}/{', '.join(missing)}" if missing else "the two sides never share a setting"
        return res
    slopes = []
    for side in max(shared, key=lambda g: len(g[0]) + len(g[1])):
        f = complexity.fit_xy([float(r.flat.get(size)) for r in side], [metric_value(r, rule.metric) for r in side],
                              rule.metric)
        slopes.append((f.exponent, f.ci_low, f.ci_high, f.n_points))
    (sa, la, ha, na), (sb, lb, hb, nb) = slopes
    res.verdict = V.exponent_verdict((la, ha), (lb, hb))
    res.measured = f"{rule.num} {_g(sa)} [{_g(la)}, {_g(ha)}] vs {rule.den} {_g(sb)} [{_g(lb)}, {_g(hb)}] " \
                   f"(n={na} vs {nb})"
    res.numbers = {"slope_num": sa, "slope_den": sb, "lo_num": la, "hi_num": ha, "lo_den": lb, "hi_den": hb}
    return res


def section(results: list[Result]) -> Section:
    counts = Counter(r.verdict for r in results)
    sec = Section("Paper claims")
    extra = len(task_claims())
    busy = sum(r.verdict == V.NOT_MEASURED and r.why == LOADED_WHY for r in results)
    tally = [f"**{counts.get(v, 0)} {v}**" + (f" ({busy} of them time claims whose runs were all timed under load)"
                                              if v == V.NOT_MEASURED and busy else "") for v in V.VERDICTS]
    sec.add(Para(f"{len(results)} claims: {len(results) - extra} from the papers (`suite/data/claims.csv`; each task "
                 f"declares its own in its claims CSV), {extra} that tasks add from other sources: "
                 + ", ".join(tally) + "."),
            Para("Verdict rule (computed from the records; which runs stand for a claim is declared by its task's "
                 "`paper`):"), Bullets(RULE))
    header = ["claim", "source", "compared", "paper", "our analogue", "measured (95% interval)", "verdict"]
    rows = []
    for r in results:
        measured = r.measured if r.verdict not in (V.NOT_MEASURED, V.NOT_COMPARED) else r.why
        if r.why and r.verdict not in (V.NOT_MEASURED, V.NOT_COMPARED):
            measured += f"; {r.why}"
        rows.append([cell(f"`{r.claim.claim_id}`"), cell(f"{r.claim.source} {_table_name(r.claim.table)}"),
                     cell(r.text), cell(r.paper), cell(r.analogue), cell(measured),
                     Cell(r.verdict, bold=r.verdict not in (V.NOT_MEASURED, V.NOT_COMPARED), tone=V.TONE[r.verdict])])
    sec.add(Table(header, rows))
    return sec


def _table_name(table: str) -> str:
    return f"T{table}" if table.isdigit() else table


def part(ctx: Context) -> Rendered:
    """The "Paper claims" section over the reference list and the tasks' own claims; the count per verdict goes to
    the closing line."""
    results = evaluate(all_claims(), ctx.records)
    return Rendered([section(results)], facts=Facts(claims=Counter(r.verdict for r in results)))
