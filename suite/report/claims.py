"""The paper-claims table: each claim of suite/data/claims.csv, our measured analogue with its 95% interval, and a
verdict computed from the records by :data:`RULE` (the mapping from claims to records is in
:mod:`mlo_bench.suite.report.analogues`)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from mlo_bench.suite.report import analogues as A
from mlo_bench.suite.report import complexity, stats
from mlo_bench.suite.report.doc import Bullets, Cell, Para, Section, Table, cell
from mlo_bench.suite.report.tidy import COMPARED_KEYS, flatten, setting_key

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_MEASURED = "supported", "not supported", "inconclusive", "not measured"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_MEASURED)
#: the paper's two figures within 2% of each other (ratio in [1/1.02, 1.02]) are read as "no difference"
SAME = 1.02
#: a "no difference" claim is supported when the whole interval lies within [1/1.1, 1.1]
EQUIVALENCE = 1.10

RULE = [
    "**Relative claims** (a variant against its table's baseline, e.g. darts-1 vs original-unrolled memory "
    "2051/2381 = 0.861×): we measure the ratio of means over seeds, mean(variant)/mean(baseline), from ok runs of "
    "the same setting (same config except backend, method, inner_steps and seed), with a 95% interval (delta "
    "method on the log ratio, Student t with min(n)−1 degrees of freedom). **supported**: the whole interval is on "
    "the paper's side of 1; **not supported**: the whole interval is on the other side; **inconclusive**: the "
    "interval contains 1 (it overlaps no difference) or a side has a single seed (no interval). Where the paper's "
    f"two figures are within {100 * (SAME - 1):.0f}% of each other, the claim is \"no difference\": supported when "
    f"the interval lies within [1/{EQUIVALENCE:g}, {EQUIVALENCE:g}], not supported when it lies wholly outside that "
    "band, inconclusive otherwise.",
    "**Absolute claims** (the figures of each table's baseline): compared only on runs on the paper's own data set; "
    "supported when the paper's figure lies in the 95% interval of our mean, not supported when outside, "
    "inconclusive with one seed. Absolute memory, time and throughput depend on the paper's hardware and are never "
    "compared in absolute terms (their ratios are, in the other rows).",
    "**Exponent claims** (O(d²) vs O(d³)): least-squares slope of log(counted FLOPs per hypergradient) on log d, "
    "per side, over the complexity section's range (d ≥ 256, or the three largest sizes), with 95% intervals (at "
    "least three distinct d): supported when the materialised side's interval lies wholly above the reverse-mode "
    "side's, not supported when wholly below, inconclusive when they overlap.",
    "**not measured**: the mapping finds no ok run with the metric for one of the sides (the task, method or "
    "backend has not run, or no run matches the claim's setting).",
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
    verdict: str = NOT_MEASURED
    why: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)


def load_claims(text: str | None = None) -> list[Claim]:
    """The packaged claims (or ``text`` in the same CSV format)."""
    if text is None:
        text = resources.files("mlo_bench.suite.data").joinpath("claims.csv").read_text(encoding="utf-8")
    return [Claim(**{k: (v or "").strip() for k, v in row.items()}) for row in csv.DictReader(io.StringIO(text))]


# --------------------------------------------------------------------------------------------------------------
# records → comparable samples


@dataclass
class Run:
    task: str
    backend: str
    method: str
    flat: dict[str, Any]
    metrics: dict[str, Any]
    config: dict[str, Any]


def prepare_runs(records: list[dict[str, Any]]) -> list[Run]:
    """The ok runs, with flat configs (as in the tidy table) and derived metrics added."""
    out = []
    for rec in records:
        if rec.get("status") != "ok":
            continue
        config = rec.get("config") or {}
        flat = {k: v for k, v in flatten(config, "").items()}
        metrics = dict(rec.get("metrics") or {})
        for name, fn in A.DERIVED.items():
            if name not in metrics:
                try:
                    metrics[name] = fn(metrics)
                except (KeyError, TypeError, ZeroDivisionError):
                    metrics[name] = None
        out.append(Run(str(rec.get("task")), str(rec.get("backend")), str(rec.get("method")), flat, metrics, config))
    return out


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, str) and a.lower() == str(b).lower())
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return str(a) == str(b)


def select(runs: list[Run], s: A.Selector, where: dict[str, Any]) -> list[Run]:
    conds = {**dict(s.where), **where}
    return [r for r in runs if r.task == s.task and r.method == s.method
            and (s.backend is None or r.backend == s.backend)
            and all(k in r.flat and _equal(r.flat[k], v) for k, v in conds.items())]


def metric_value(run: Run, metric: str) -> float | None:
    v = run.metrics.get(metric)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def group_key(run: Run, extra_drop: tuple[str, ...] = ()) -> str:
    """Runs compared side by side share this key: the config without backend, method, inner_steps, seed."""
    config = {k: v for k, v in run.config.items() if k not in ("inner_steps",)}
    if extra_drop:
        config = json.loads(json.dumps(config, default=str))
        for key in extra_drop:
            node = config
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.get(p, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node.pop(leaf, None)
    return setting_key(config, COMPARED_KEYS)


def paired_samples(num: list[Run], den: list[Run], metric: str,
                   extra_drop: tuple[str, ...] = ()) -> tuple[list[Run], list[Run], int]:
    """The numerator's and denominator's runs of the shared setting with the most runs (and how many settings)."""
    by: dict[str, tuple[list[Run], list[Run]]] = {}
    for side, runs in ((0, num), (1, den)):
        for r in runs:
            if metric_value(r, metric) is not None:
                by.setdefault(group_key(r, extra_drop), ([], []))[side].append(r)
    shared = {k: v for k, v in by.items() if v[0] and v[1]}
    if not shared:
        return [], [], 0
    best = max(shared.values(), key=lambda v: (len(v[0]) + len(v[1])))
    return best[0], best[1], len(shared)


# --------------------------------------------------------------------------------------------------------------
# verdicts (pure functions of the intervals: tested on their own)


def ratio_verdict(expected: float, lo: float, hi: float) -> str:
    """Verdict of a relative claim from the measured ratio's 95% interval [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    if 1 / SAME <= expected <= SAME:
        if lo >= 1 / EQUIVALENCE and hi <= EQUIVALENCE:
            return SUPPORTED
        if hi < 1 / EQUIVALENCE or lo > EQUIVALENCE:
            return NOT_SUPPORTED
        return INCONCLUSIVE
    if expected > 1:
        return SUPPORTED if lo > 1 else NOT_SUPPORTED if hi < 1 else INCONCLUSIVE
    return SUPPORTED if hi < 1 else NOT_SUPPORTED if lo > 1 else INCONCLUSIVE


def absolute_verdict(expected: float, lo: float, hi: float) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    return SUPPORTED if lo <= expected <= hi else NOT_SUPPORTED


def exponent_verdict(num: tuple[float, float], den: tuple[float, float]) -> str:
    """The claim: num's exponent exceeds den's. Each side is a (lo, hi) 95% interval."""
    if not all(math.isfinite(x) for x in (*num, *den)):
        return INCONCLUSIVE
    if num[0] > den[1]:
        return SUPPORTED
    if num[1] < den[0]:
        return NOT_SUPPORTED
    return INCONCLUSIVE


# --------------------------------------------------------------------------------------------------------------
# evaluating one claim


def _g(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:.3g}"


def _record_metric(claim_metric: str, runs: list[Run]) -> str | None:
    candidates = A.METRICS.get(claim_metric, ())
    for m in candidates:
        if any(metric_value(r, m) is not None for r in runs):
            return m
    return candidates[0] if candidates else None


def _missing(sel: A.Selector, runs: list[Run], where: dict[str, Any], metric: str) -> str:
    name = f"{sel.task}/{sel.backend or '*'}/{sel.method}"
    if not select(runs, sel, where):
        return f"no ok run of {name}"
    return f"no {metric} in the ok runs of {name}"


def _describe(sel: A.Selector, where: dict[str, Any]) -> str:
    """The selector with the claim's setting filters."""
    return A.Selector(sel.task, sel.method, sel.backend, tuple(sorted({**dict(sel.where), **where}.items()))).describe()


def _why_missing(sides: list[tuple[A.Selector, list[Run]]], runs: list[Run], where: dict[str, Any],
                 metric: str) -> str:
    """Why a comparison has no samples: each side without a usable run, or no shared setting."""
    reasons = [_missing(s, runs, where, metric) for s, chosen in sides
               if not any(metric_value(r, metric) is not None for r in chosen)]
    return "; ".join(reasons) or "the two sides never ran in the same setting"


def _ratio_result(res: Result, runs: list[Run], num: A.Selector, den: A.Selector, where: dict[str, Any],
                  metric: str | None, expected: float) -> Result:
    if metric is None:
        res.why = "no record metric is mapped to this claim's metric"
        return res
    num_runs, den_runs = select(runs, num, where), select(runs, den, where)
    a, b, n_settings = paired_samples(num_runs, den_runs, metric)
    if not a or not b:
        res.why = _why_missing([(num, num_runs), (den, den_runs)], runs, where, metric)
        return res
    ratio, lo, hi, na, nb = stats.ratio_interval([metric_value(r, metric) for r in a],
                                                 [metric_value(r, metric) for r in b])
    res.verdict = ratio_verdict(expected, lo, hi)
    res.measured = (f"{_g(ratio)}× [{_g(lo)}, {_g(hi)}] (n={na} vs {nb})" if math.isfinite(lo)
                    else f"{_g(ratio)}× (n={na} vs {nb}; no interval)")
    res.numbers = {"ratio": ratio, "lo": lo, "hi": hi, "n_num": na, "n_den": nb, "settings": n_settings}
    if n_settings > 1:
        res.why = f"largest of {n_settings} shared settings"
    return res


def evaluate(claims: list[Claim], records: list[dict[str, Any]]) -> list[Result]:
    runs = prepare_runs(records)
    index = {(c.source, c.table, c.setting, c.metric, c.variant): c for c in claims}
    return [evaluate_one(c, runs, index) for c in claims]


def evaluate_one(c: Claim, runs: list[Run], index: dict[tuple, Claim]) -> Result:
    if c.claim_id in A.EXPLICIT:
        return _explicit(c, A.EXPLICIT[c.claim_id], runs)
    sel = A.VARIANTS.get((c.task, c.variant))
    baseline = A.BASELINES.get((c.source, c.table))
    where = dict(A.SETTING_FILTERS.get(c.setting, {}))
    metric = _record_metric(c.metric, runs)
    paper = f"{c.value} {c.unit}"
    if sel is None:
        return Result(c, f"{c.variant} · {c.setting} · {c.metric}", paper, "–",
                      why=f"no analogue mapped for {c.task}/{c.variant}")
    if baseline is None or baseline == c.variant:
        res = Result(c, f"{c.variant} · {c.setting} · {c.metric} (absolute)", paper,
                     _describe(sel, {**where, **A.PAPER_DATA.get(c.task, {})}))
        if c.metric in A.HARDWARE_METRICS:
            res.why = "absolute figure of the paper's hardware: compared as ratios in the other rows"
            return res
        return _absolute(res, runs, sel, {**where, **A.PAPER_DATA.get(c.task, {})}, metric,
                         float(c.value) * A.UNIT_SCALE.get(c.unit, 1.0))
    base = index.get((c.source, c.table, c.setting, c.metric, baseline))
    base_sel = A.VARIANTS.get((c.task, baseline))
    if base is None or base_sel is None:
        return Result(c, f"{c.variant} vs {baseline} · {c.setting} · {c.metric}", paper, sel.describe(),
                      why=f"the paper reports no {baseline} figure to compare with")
    expected = float(c.value) / float(base.value)
    res = Result(c, f"{c.variant} / {baseline} · {c.setting} · {c.metric}",
                 f"{c.value} / {base.value} {c.unit} = {expected:.3f}×",
                 f"{_describe(sel, where)} ÷ {_describe(base_sel, where)}")
    return _ratio_result(res, runs, sel, base_sel, where, metric, expected)


def _absolute(res: Result, runs: list[Run], sel: A.Selector, where: dict[str, Any], metric: str | None,
              expected: float) -> Result:
    chosen = [r for r in select(runs, sel, where) if metric and metric_value(r, metric) is not None]
    if metric is None or not chosen:
        res.why = _missing(sel, runs, where, metric or "?") + " on the paper's data"
        return res
    groups: dict[str, list[Run]] = {}
    for r in chosen:
        groups.setdefault(group_key(r), []).append(r)
    group = max(groups.values(), key=len)
    mean, lo, hi, n = stats.mean_interval([metric_value(r, metric) for r in group])
    res.verdict = absolute_verdict(expected, lo, hi)
    res.measured = f"{_g(mean)} [{_g(lo)}, {_g(hi)}] (n={n})" if math.isfinite(lo) else f"{_g(mean)} (n={n})"
    res.numbers = {"mean": mean, "lo": lo, "hi": hi, "n": n, "expected": expected}
    return res


def _explicit(c: Claim, e: A.Explicit, runs: list[Run]) -> Result:
    where = dict(e.where)
    between = "÷" if e.kind == "ratio" else "vs"
    res = Result(c, e.text, f"{c.value} {c.unit}",
                 f"{_describe(e.num, where)} {between} {_describe(e.den, where)} · {e.metric}")
    if e.kind == "ratio":
        res.paper = f"{c.value} {c.unit} → {e.expected:.3f}×"
        metric = _record_metric(e.metric, runs) if e.metric in A.METRICS else e.metric  # a claim metric is mapped
        return _ratio_result(res, runs, e.num, e.den, where, metric, e.expected)
    # exponent: slope of log metric on log x per side, in the shared setting (x itself left out of the key)
    num, den = select(runs, e.num, where), select(runs, e.den, where)
    a, b, n_settings = paired_samples(num, den, e.metric, extra_drop=(e.x,))
    if not a or not b:
        res.why = _why_missing([(e.num, num), (e.den, den)], runs, where, e.metric)
        return res
    slopes = []
    for side in (a, b):
        xs = [r.flat.get(e.x) for r in side]
        ys = [metric_value(r, e.metric) for r in side]
        f = complexity.fit_xy([float(x) if x is not None else math.nan for x in xs], ys, e.metric)
        slopes.append((f.exponent, f.ci_low, f.ci_high, f.n_points))
    (sa, la, ha, na), (sb, lb, hb, nb) = slopes
    res.verdict = exponent_verdict((la, ha), (lb, hb))
    res.measured = (f"{e.num.backend} {_g(sa)} [{_g(la)}, {_g(ha)}] vs {e.den.backend} {_g(sb)} "
                    f"[{_g(lb)}, {_g(hb)}] (n={na} vs {nb})")
    res.numbers = {"slope_num": sa, "slope_den": sb, "lo_num": la, "hi_num": ha, "lo_den": lb, "hi_den": hb}
    return res


# --------------------------------------------------------------------------------------------------------------
# the report section

TONE = {SUPPORTED: "good", NOT_SUPPORTED: "bad", INCONCLUSIVE: "warn", NOT_MEASURED: "muted"}


def section(results: list[Result]) -> Section:
    counts = Counter(r.verdict for r in results)
    sec = Section("Paper claims")
    sec.add(Para(f"{len(results)} claims from the papers (`suite/data/claims.csv`): "
                 + ", ".join(f"**{counts.get(v, 0)} {v}**" for v in VERDICTS) + "."),
            Para("Verdict rule (computed from the records; the claim → record mapping is "
                 "`suite/report/analogues.py`):"),
            Bullets(RULE))
    header = ["claim", "source", "compared", "paper", "our analogue", "measured (95% interval)", "verdict"]
    rows = []
    for r in results:
        measured = r.measured if r.verdict != NOT_MEASURED else r.why
        if r.why and r.verdict != NOT_MEASURED:
            measured += f"; {r.why}"
        rows.append([cell(f"`{r.claim.claim_id}`"), cell(f"{r.claim.source} {_table_name(r.claim.table)}"),
                     cell(r.text), cell(r.paper), cell(r.analogue), cell(measured),
                     Cell(r.verdict, bold=r.verdict != NOT_MEASURED, tone=TONE[r.verdict])])
    sec.add(Table(header, rows))
    return sec


def _table_name(table: str) -> str:
    return f"T{table}" if table.isdigit() else table
