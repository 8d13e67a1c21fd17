"""Paper-shaped variant tables (Betty's Table 1 for Meta-Weight-Net): rows are a paper table's variants, columns the
values of one task knob (the imbalance factor), then memory and wall time — mean ± std over seeds, from the records —
followed by the comparisons the issue asks the suite to state, each with a verdict computed from the same numbers.

Which records stand for a variant is :data:`mlo_bench.suite.report.analogues.VARIANTS`;
which tables exist, and what they
compare, is :data:`TABLES` below (data, so a task adds its table by adding an entry).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mlo_bench.suite.report import analogues as A
from mlo_bench.suite.report import fmt, stats
from mlo_bench.suite.report.claims import (
    INCONCLUSIVE,
    NOT_MEASURED,
    NOT_SUPPORTED,
    SUPPORTED,
    TONE,
    Run,
    group_key,
    metric_value,
    prepare_runs,
    ratio_verdict,
    select,
)
from mlo_bench.suite.report.doc import Cell, Para, Section, Table, cell

#: "matches or beats": the variant's accuracy may be at most this much lower (relative) and still match
MATCH_TOLERANCE = 0.02


@dataclass(frozen=True)
class Comparison:
    """``num`` against ``den`` on ``metric``: ``better`` (num higher), ``lower`` (num lower) or ``match`` (num at
    least (1 − MATCH_TOLERANCE) × den). ``at`` is ``"max"`` to compare at the largest column value only (e.g. the
    highest imbalance), ``"each"`` per column value, or ``"all"`` pooled over columns."""

    num: str
    den: str
    metric: str
    want: str
    at: str = "all"


@dataclass(frozen=True)
class Claim:
    """A statement made of comparisons: supported when every one is, not supported when one is not."""

    text: str
    comparisons: tuple[Comparison, ...]


@dataclass(frozen=True)
class VariantTable:
    title: str
    task: str
    variants: tuple[str, ...]  # keys of A.VARIANTS for ``task``, in row order
    column: str  # the flat config key whose values are the columns (e.g. task.imbalance_factor)
    column_label: str
    quality: str  # the metric in the columns
    cost: tuple[str, ...]  # metrics pooled over the columns, after them
    treatments: tuple[str, ...] = ()  # config keys that tell variants apart besides backend/method/inner_steps
    claims: tuple[Claim, ...] = ()


_MWN_VARIANTS = ("erm", "original-unrolled", "unroll-1", "cg", "neumann", "darts-1", "darts-5")
_MWN_REWEIGHTING = tuple(v for v in _MWN_VARIANTS if v != "erm")

TABLES: tuple[VariantTable, ...] = (
    VariantTable(
        title="Meta-Weight-Net on long-tailed data (Betty Table 1, our analogue)",
        task="mwn", variants=_MWN_VARIANTS, column="task.imbalance_factor", column_label="IF",
        quality="test_accuracy", cost=("peak_live_bytes", "peak_memory_bytes", "time_total_s"),
        treatments=("task.reweight",),
        claims=(
            Claim("MWN beats ERM at the highest imbalance (each reweighting variant against ERM)",
                  tuple(Comparison(v, "erm", "test_accuracy", "better", at="max") for v in _MWN_REWEIGHTING)),
            Claim("darts with 1 step matches or beats the original unrolled MWN in accuracy while using less "
                  "memory (peak live bytes) and less wall time",
                  (Comparison("darts-1", "original-unrolled", "test_accuracy", "match", at="each"),
                   Comparison("darts-1", "original-unrolled", "peak_live_bytes", "lower"),
                   Comparison("darts-1", "original-unrolled", "time_total_s", "lower"))),
        ),
    ),
)


def comparison_verdict(want: str, lo: float, hi: float) -> str:
    """Verdict of one comparison from the 95% interval [lo, hi] of the ratio num/den."""
    if want == "better":
        return ratio_verdict(2.0, lo, hi)
    if want == "lower":
        return ratio_verdict(0.5, lo, hi)
    if want == "match":
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return INCONCLUSIVE
        floor = 1 - MATCH_TOLERANCE
        return SUPPORTED if lo >= floor else NOT_SUPPORTED if hi < floor else INCONCLUSIVE
    raise ValueError(f"unknown comparison {want!r}; expected better, lower or match")


def combine(verdicts: list[str]) -> str:
    if not verdicts or NOT_MEASURED in verdicts:
        return NOT_MEASURED
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED
    return SUPPORTED if all(v == SUPPORTED for v in verdicts) else INCONCLUSIVE


def _rows(spec: VariantTable, runs: list[Run]) -> tuple[dict[str, list[Run]], int]:
    """Each variant's runs in the setting shared by the most runs (the column knob and the treatments aside), and
    how many settings there were."""
    drop = (spec.column, *spec.treatments)
    by_setting: dict[str, dict[str, list[Run]]] = {}
    for name in spec.variants:
        for r in select(runs, A.VARIANTS[(spec.task, name)], {}):
            by_setting.setdefault(group_key(r, drop), {}).setdefault(name, []).append(r)
    if not by_setting:
        return {}, 0
    best = max(by_setting.values(), key=lambda v: (len(v), sum(map(len, v.values()))))
    return best, len(by_setting)


def _column_values(rows: dict[str, list[Run]], column: str) -> list[Any]:
    values = {r.flat.get(column) for rs in rows.values() for r in rs if r.flat.get(column) is not None}
    return sorted(values, key=lambda v: (float(v) if isinstance(v, (int, float)) else math.inf, str(v)))


def _at(rs: list[Run], column: str, value: Any) -> list[Run]:
    return [r for r in rs if value is None or r.flat.get(column) == value]


def _values(rs: list[Run], metric: str) -> list[float]:
    return [v for v in (metric_value(r, metric) for r in rs) if v is not None]


def _compare(cmp: Comparison, rows: dict[str, list[Run]], spec: VariantTable, columns: list[Any]) -> list[str]:
    """Lines "num/den at IF …: ratio [interval] → verdict", one per compared column value (or one pooled)."""
    where = [columns[-1]] if cmp.at == "max" and columns else columns if cmp.at == "each" else [None]
    out = []
    for value in where:
        a = _values(_at(rows.get(cmp.num, []), spec.column, value), cmp.metric)
        b = _values(_at(rows.get(cmp.den, []), spec.column, value), cmp.metric)
        label = f"{cmp.num} / {cmp.den} · {cmp.metric}"
        if value is not None:
            label += f" · {spec.column_label} {_v(value)}"
        if not a or not b:
            out.append((label, "–", NOT_MEASURED))
            continue
        ratio, lo, hi, na, nb = stats.ratio_interval(a, b)
        verdict = comparison_verdict(cmp.want, lo, hi)
        out.append((label, f"{fmt.ratio(ratio)} {fmt.interval(lo, hi)} (n={na} vs {nb})", verdict))
    return out


def _v(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def evaluate(spec: VariantTable, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The table's numbers and its claims' verdicts (``None`` when no run of the task's variants is ok)."""
    rows, n_settings = _rows(spec, prepare_runs(records))
    if not rows:
        return None
    columns = _column_values(rows, spec.column)
    claims = []
    for claim in spec.claims:
        lines = [line for cmp in claim.comparisons for line in _compare(cmp, rows, spec, columns)]
        claims.append((claim.text, combine([v for _, _, v in lines]), lines))
    return {"rows": rows, "columns": columns, "settings": n_settings, "claims": claims}


def _cell(metric: str, rs: list[Run], best: bool) -> Cell:
    mean, std, n = stats.mean_std(_values(rs, metric))
    return Cell(fmt.mean_std(metric, mean, std, n), bold=best and n > 0)


def section(spec: VariantTable, result: dict[str, Any]) -> Section:
    rows, columns = result["rows"], result["columns"]
    sec = Section(spec.title)
    sec.add(Para(
        f"Rows: the variants (record selectors in `suite/report/analogues.py`); columns: {spec.quality} per "
        f"{spec.column_label} (`{spec.column}`), then {', '.join(spec.cost)} over every {spec.column_label}: mean ± "
        "std (number of runs). Runs of one setting only (the one with the most variants)"
        + (f"; {result['settings'] - 1} other setting(s) of these variants are not in this table. "
           if result["settings"] > 1 else ". ")
        + "Classifier updates = outer steps × inner steps. Best per column in bold."))
    header = ["variant", "backend / method", "updates",
              *[f"{spec.quality} · {spec.column_label} {_v(c)}" for c in columns], *spec.cost]
    best = {}
    for key, metric in [(c, spec.quality) for c in columns] + [(None, m) for m in spec.cost]:
        means = {v: stats.mean_std(_values(_at(rs, spec.column, key), metric))[0] for v, rs in rows.items()}
        means = {v: m for v, m in means.items() if math.isfinite(m)}
        if means:
            pick = max if stats.higher_is_better(metric) else min
            best[(key, metric)] = pick(means, key=means.get)
    table_rows = []
    for name in spec.variants:
        rs = rows.get(name)
        if not rs:
            continue
        s = A.VARIANTS[(spec.task, name)]
        updates = sorted({int(r.config.get("steps", 0)) * int(r.config.get("inner_steps", 1)) for r in rs})
        table_rows.append(
            [cell(name, bold=True), cell(f"{s.backend or '*'} / {s.method}"), cell(", ".join(map(str, updates)))]
            + [_cell(spec.quality, _at(rs, spec.column, c), best.get((c, spec.quality)) == name) for c in columns]
            + [_cell(m, rs, best.get((None, m)) == name) for m in spec.cost])
    missing = [n for n in spec.variants if n not in rows]
    sec.add(Table(header, table_rows, align=["l", "l", "r"] + ["r"] * (len(header) - 3)))
    if missing:
        sec.add(Para("Not measured in this setting: " + ", ".join(missing) + "."))
    sec.add(Para(
        "Claims at this scale (verdicts computed from the table's runs: the ratio of means with its 95% interval, "
        "as in the paper-claims rule; **better**/**lower**: the whole interval on the claimed side of 1; "
        f"**matches**: the interval's lower end at least {1 - MATCH_TOLERANCE:g}):"))
    counts: Counter = Counter()
    for text, verdict, lines in result["claims"]:
        counts[verdict] += 1
        sec.add(Para(f"**{text}** — {verdict}"))
        sec.add(Table(["comparison", "measured (95% interval)", "verdict"],
                      [[cell(label), cell(measured), Cell(v, bold=True, tone=TONE[v])] for label, measured, v in
                       lines]))
    return sec


def sections(records: list[dict[str, Any]]) -> list[Section]:
    """One section per table whose task has ok runs."""
    out = []
    for spec in TABLES:
        result = evaluate(spec, records)
        if result is not None:
            out.append(section(spec, result))
    return out
