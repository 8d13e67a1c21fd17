"""Paper-shaped tables, from each task's declarations (``Task.paper.tables``): rows = the table's variants, columns =
the values of one config knob for its quality metric, then its cost metrics pooled over the columns — mean ± std
over seeds — one block per backend, followed by the table's claims with verdicts computed from the same runs.

Comparisons are **paired and per backend**: runs with the same seed share data, initialisation and batches, so each
comparison num/den is made seed by seed (same backend, same column value), as per-seed ratios; the verdict reads
the 95% one-sample t-interval of the mean log ratio (Student t, n − 1 degrees of freedom; the interval shown is its
exponential, a ratio). A backend is never compared with another: a method's cost is measured inside one library.
Where no seed is shared the unpaired ratio of means is used and said. Time metrics leave out pairs with a run
timed on a loaded machine (:mod:`mlo_bench.suite.report.runs`), and say how many. An inconclusive comparison states
how many paired seeds its observed spread would need (:func:`mlo_bench.suite.report.stats.seeds_needed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlo_bench.suite.report import specs, stats
from mlo_bench.suite.report import verdicts as V
from mlo_bench.suite.report.render import figures, fmt
from mlo_bench.suite.report.render.doc import Bullets, Cell, Para, Section, Table, cell
from mlo_bench.suite.report.runs import Run, group_key, loaded, metric_value, prepare, variant_of
from mlo_bench.suite.report.sections import Context, Rendered, paper_figures, rendered


@dataclass
class Line:
    """One comparison on one backend (at one column value)."""

    backend: str
    label: str
    measured: str
    verdict: str
    needed: int | None = None
    note: str = ""


def _drop_keys(task: str, table: Any) -> tuple[str, ...]:
    declared = specs.paper(task).variants
    return (table.column, *table.treatments, "variant", *{k for v in declared for k in v.overrides})


def rows_by_backend(task: str, table: Any, runs: list[Run]) -> dict[str, tuple[dict[str, list[Run]], int]]:
    """Per backend: each variant's runs in the setting shared by the most runs there, and the number of settings."""
    drop = _drop_keys(task, table)
    by: dict[str, dict[str, dict[str, list[Run]]]] = {}
    for r in runs:
        name = variant_of(r) if r.task == task else None
        if name in table.variants:
            by.setdefault(r.backend, {}).setdefault(group_key(r, drop), {}).setdefault(name, []).append(r)
    out = {}
    for backend, settings in by.items():
        best = max(settings.values(), key=lambda v: (len(v), sum(map(len, v.values()))))
        out[backend] = (best, len(settings))
    return out


def _column_values(rows: dict[str, list[Run]], column: str) -> list[Any]:
    values = {r.flat.get(column) for rs in rows.values() for r in rs if r.flat.get(column) is not None}
    return sorted(values, key=lambda v: (float(v) if isinstance(v, (int, float)) else math.inf, str(v)))


def _at(rs: list[Run], column: str, value: Any) -> list[Run]:
    return [r for r in rs if value is None or r.flat.get(column) == value]


@dataclass
class Ratio:
    """num/den on one metric: the (geometric) mean ratio, its 95% interval, n, the log ratios' std (paired only)."""

    ratio: float
    lo: float
    hi: float
    n: int
    sd: float
    paired: bool
    text: str
    note: str = ""


def measure(num: list[Run], den: list[Run], metric: str, task: str | None = None,
            keep_loaded: bool = False) -> Ratio | None:
    """num/den on ``metric``, paired by (``_col``, seed) where at least two seeds are shared, else the unpaired ratio
    of means; time metrics leave out runs timed under load (unless ``keep_loaded``: for display only, never for a
    verdict). ``None`` when a side has no value."""
    note = []
    if specs.timed(task, metric) and not keep_loaded:
        busy = [r for r in num + den if loaded(r.provenance)]
        if busy:
            note.append(f"{len(busy)} run(s) timed under load left out")
            num = [r for r in num if not loaded(r.provenance)]
            den = [r for r in den if not loaded(r.provenance)]
    a = {(r.flat.get("_col"), r.seed): metric_value(r, metric) for r in num}
    b = {(r.flat.get("_col"), r.seed): metric_value(r, metric) for r in den}
    a = {k: x for k, x in a.items() if x is not None}
    b = {k: x for k, x in b.items() if x is not None}
    if not a or not b:
        return None
    shared = sorted(set(a) & set(b), key=str)
    if len(shared) >= 2:
        ratio, lo, hi, n, sd = stats.paired_ratio([(a[k], b[k]) for k in shared])
        return Ratio(ratio, lo, hi, n, sd, True, f"{fmt.ratio(ratio)} {fmt.interval(lo, hi)} (paired, n={n})",
                     "; ".join(note))
    ratio, lo, hi, na, nb = stats.ratio_interval(list(a.values()), list(b.values()))
    note.append("fewer than 2 shared seeds: unpaired ratio of means")
    return Ratio(ratio, lo, hi, min(na, nb), math.nan, False,
                 f"{fmt.ratio(ratio)} {fmt.interval(lo, hi)} (n={na} vs {nb})", "; ".join(note))


def compare_runs(num: list[Run], den: list[Run], metric: str, want: str, tolerance: float,
                 task: str | None = None) -> tuple[str, str, int | None, str]:
    """(measured text, verdict, seeds needed or None, note) of the comparison num/den on ``metric``."""
    m = measure(num, den, metric, task)
    if m is None:
        busy = num and den and specs.timed(task, metric) and (all(loaded(r.provenance) for r in num)
                                                              or all(loaded(r.provenance) for r in den))
        if not busy:
            return "–", V.NOT_MEASURED, None, ""
        raw = measure(num, den, metric, task, keep_loaded=True)  # shown, never judged
        return ((f"⚠ {raw.text}" if raw else "–"), V.NOT_MEASURED, None,
                "every run of a side was timed under load: the ratio under load is shown, not judged")
    verdict = V.comparison_verdict(want, m.lo, m.hi, tolerance)
    needed = (stats.seeds_needed(m.ratio, m.sd, V.boundary(want, tolerance))
              if verdict == V.INCONCLUSIVE and m.paired else None)
    return m.text, verdict, needed, m.note


def _compare(cmp: Any, rows: dict[str, list[Run]], table: Any, columns: list[Any], backend: str,
             task: str) -> list[Line]:
    where = [columns[-1]] if cmp.at == "max" and columns else columns if cmp.at == "each" else [None]
    out = []
    for value in where:
        label = f"{cmp.num} / {cmp.den} · {cmp.metric}" + (
            f" · {table.column_label} {fmt.knob(value)}" if value is not None else "")
        num = [_tagged(r, table.column) for r in _at(rows.get(cmp.num, []), table.column, value)]
        den = [_tagged(r, table.column) for r in _at(rows.get(cmp.den, []), table.column, value)]
        measured, verdict, needed, note = compare_runs(num, den, cmp.metric, cmp.want, table.match_tolerance, task)
        out.append(Line(backend, label, measured, verdict, needed, note))
    return out


def _tagged(r: Run, column: str) -> Run:
    """The run with its column value under the pairing key ``_col`` (seeds pair within a column value)."""
    return Run(r.task, r.backend, r.method, r.seed, {**r.flat, "_col": r.flat.get(column)}, r.metrics, r.config,
               r.provenance, r.run_id)


def evaluate(task: str, table: Any, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The table's rows per backend and its claims' verdicts per backend (``None``: no ok run of its variants)."""
    per_backend = rows_by_backend(task, table, prepare(records))
    if not per_backend:
        return None
    blocks, claims = {}, []
    for backend in _backend_order(per_backend):
        rows, n_settings = per_backend[backend]
        blocks[backend] = {"rows": rows, "columns": _column_values(rows, table.column), "settings": n_settings}
    for claim in table.claims:
        lines, by_backend = [], {}
        for backend, block in blocks.items():
            mine = [ln for cmp in claim.comparisons
                    for ln in _compare(cmp, block["rows"], table, block["columns"], backend, task)]
            lines += mine
            by_backend[backend] = V.combine([ln.verdict for ln in mine])
        overall, why = V.agree(by_backend)
        claims.append({"text": claim.text, "verdict": overall, "why": why, "backends": by_backend, "lines": lines})
    return {"blocks": blocks, "claims": claims}


def _backend_order(per_backend: dict[str, Any]) -> list[str]:
    return sorted(per_backend, key=lambda b: (-sum(len(v) for v in per_backend[b][0].values()), b))


def _cell(task: str, metric: str, rs: list[Run], best: bool) -> Cell:
    mean, std, n = stats.mean_std([v for v in (metric_value(r, metric) for r in rs) if v is not None])
    busy = sum(bool(loaded(r.provenance)) for r in rs) if specs.timed(task, metric) else 0
    text = fmt.mean_std(metric, mean, std, n) + (f" ⚠{busy} loaded" if busy else "")
    return Cell(text, bold=best and n > 0, tone="warn" if busy else "")


def _block_table(task: str, table: Any, block: dict[str, Any]) -> Table:
    rows, columns = block["rows"], block["columns"]
    header = ["variant", "method", "ordering", "updates",
              *[f"{table.quality} {specs.arrow(task, table.quality)} · {table.column_label} {fmt.knob(c)}"
                for c in columns],
              *[f"{m} {specs.arrow(task, m)}" for m in table.cost]]
    best = {}
    for key, metric in [(c, table.quality) for c in columns] + [(None, m) for m in table.cost]:
        means = {v: stats.mean_std([x for x in (metric_value(r, metric) for r in _at(rs, table.column, key))
                                    if x is not None])[0] for v, rs in rows.items()}
        means = {v: m for v, m in means.items() if math.isfinite(m)}
        if len(means) > 1 and specs.direction(task, metric):
            pick = max if specs.higher_is_better(task, metric) else min
            best[(key, metric)] = pick(means, key=means.get)
    body = []
    for name in table.variants:
        rs = rows.get(name)
        if not rs:
            continue
        orderings = sorted({str(r.value("ordering") or "–") for r in rs})
        updates = sorted({int(r.config.get("steps", 0)) * int(r.config.get("inner_steps", 1)) for r in rs})
        body.append([cell(name, bold=True), cell(rs[0].method), cell(", ".join(orderings)),
                     cell(", ".join(map(str, updates)))]
                    + [_cell(task, table.quality, _at(rs, table.column, c), best.get((c, table.quality)) == name)
                       for c in columns]
                    + [_cell(task, m, rs, best.get((None, m)) == name) for m in table.cost])
    return Table(header, body, align=["l", "l", "l", "r"] + ["r"] * (len(header) - 4))


def section(task: str, table: Any, result: dict[str, Any], folder: Path | None = None) -> Section:
    """The table per backend, its figure (``table.figure``; drawn into ``folder`` when given), the claims."""
    sec = Section(f"{task}: {table.title}")
    sec.add(Para(
        f"Rows: the variants `{task}` declares (run with `variant=NAME`); columns: {table.quality} per "
        f"{table.column_label} (`{table.column}`), then {', '.join(table.cost)} over every {table.column_label}: "
        "mean ± std (number of runs), best per column in bold. One block per backend, runs of the setting shared by "
        "the most runs on it. `ordering`: the order of the steps in each outer step, from the records (a record "
        "without the key ran `inner_first`). Updates = outer steps × inner steps. ⚠ = time figures taken while the "
        "load average exceeded the core count."))
    for backend, block in result["blocks"].items():
        extra = block["settings"] - 1
        missing = [n for n in table.variants if n not in block["rows"]]
        notes = ([f"{extra} other setting(s) of these variants on {backend} are not in this table"] if extra else [])
        notes += ([f"not run on {backend} in this setting: {', '.join(missing)}"] if missing else [])
        sec.add(Para(f"**Backend `{backend}`**" + (" — " + "; ".join(notes) + "." if notes else "")),
                _block_table(task, table, block))
    if folder is not None and table.figure:
        fig = figures.safe(paper_figures.draw, task, table, result, folder)
        if fig is not None:
            sec.add(fig)
    sec.add(Para(
        "Claims at this scale, **per backend** and **paired by seed**: each comparison is the geometric mean of the "
        "per-seed ratios num/den (same backend, same seed, same column value) with its 95% t-interval on the log "
        "ratios (Student t, n − 1 df); **higher**/**lower**: the whole interval on the claimed side of 1; **match**: "
        f"its lower end at least {1 - table.match_tolerance:g}. On a backend a claim is supported when each of its "
        "comparisons is, not supported when one is not, inconclusive when some are undecided or not measured; "
        "backends that disagree make it inconclusive overall. Inconclusive comparisons give the paired seeds their "
        "observed spread would need."))
    for c in result["claims"]:
        per = " · ".join(f"{b}: **{v}**" for b, v in c["backends"].items())
        sec.add(Para(f"**{c['text']}** — {c['verdict']}" + (f" ({c['why']})" if c["why"] else "") + f". {per}"))
        sec.add(Table(["backend", "comparison", "measured (95% interval)", "verdict", "seeds needed", "note"],
                      [[cell(ln.backend), cell(ln.label), cell(ln.measured), Cell(ln.verdict, bold=True,
                                                                                 tone=V.TONE[ln.verdict]),
                        cell(_needed(ln.needed)), cell(ln.note)] for ln in c["lines"]]))
    needs = seeds_lines(result)
    if needs:
        sec.add(Para("**Seeds needed** (inconclusive comparisons: paired seeds for the 95% interval to clear its bound "
                     "if the per-seed log ratios kept their observed mean and spread):"), Bullets(needs))
    return sec


def _needed(n: int | None) -> str:
    if n is None:
        return ""
    return f"> {n - 1}" if n > 10_000 else f"≈ {n}"


def seeds_lines(result: dict[str, Any]) -> list[str]:
    out = []
    for c in result["claims"]:
        for ln in c["lines"]:
            if ln.verdict == V.INCONCLUSIVE and ln.needed is not None:
                out.append(f"{ln.backend} · {ln.label}: {ln.measured} → {_needed(ln.needed)} seeds")
    return out


def sections(records: list[dict[str, Any]], folder: Path | None = None) -> list[Section]:
    """One section per declared paper table of a task whose variants have ok runs, tasks in name order (figures
    into ``folder``; none without it)."""
    out = []
    for task in sorted(specs.tasks()):
        for table in specs.paper(task).tables:
            result = evaluate(task, table, records)
            if result is not None:
                out.append(section(task, table, result, folder))
    return out


def part(ctx: Context) -> Rendered:
    """Every declared paper table's section (:func:`sections`) with its figure."""
    return rendered(*sections(ctx.records, ctx.figures))
