"""Precision: what a low precision (``precision=bf16|fp16``, with ``/full`` where the hypergradient ran in fp32) did to
each method's hypergradient, its memory and its time, against the same experiment in fp32.

Generic: it reads the records' ``precision`` (tidy columns ``precision`` and ``precision_setting``: one experiment's
runs in several precisions share the latter) and the standard metrics — ``hypergrad_rel_error`` and
``hypergrad_cosine`` (against the task's reference: its oracle, or ``exact`` in fp32 at the run's final state),
``peak_live_bytes``, ``time_step_s`` — never a task's own. Values are medians over seeds of ok runs. The sentence per
task is computed: the methods whose low-precision error stays within :data:`WITHIN` × their fp32 error on every
backend and precision measured, and those that do not.
"""

from __future__ import annotations

import math

import pandas as pd

from mlo_bench.suite.report.render import figures as figs
from mlo_bench.suite.report.render.doc import Cell, Figure, Para, Section, Table, cell
from mlo_bench.suite.report.sections import Context, Rendered, rendered

#: a method "survives" a low precision when its hypergradient error stays within this factor of its fp32 error
WITHIN = 10.0
METRICS = ("hypergrad_rel_error", "hypergrad_cosine", "peak_live_bytes", "time_step_s", "hypergrad_nonfinite")
KEYS = ["task", "precision_setting", "backend", "method", "variant"]


def _order(label: str) -> tuple[int, str]:
    return ({"fp32": 0, "bf16": 1, "bf16/full": 2, "fp16": 3, "fp16/full": 4}.get(label, 9), label)


def medians(w: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment × backend × method × precision: the medians of :data:`METRICS` over ok runs, for the
    experiments measured in fp32 and in at least one other precision."""
    if "precision" not in w or w.empty:
        return pd.DataFrame()
    ok = w[w["status"] == "ok"].copy()
    if "hypergrad_nonfinite" in ok:  # a non-finite hypergradient is an infinite error, never a missing one
        bad = ok["hypergrad_nonfinite"].fillna(0) > 0
        ok.loc[bad, "hypergrad_rel_error"] = math.inf
    present = [m for m in METRICS if m in ok]
    if not present or ok.empty:
        return pd.DataFrame()
    med = ok.groupby([*KEYS, "precision"], dropna=False)[present].median().reset_index()
    labels = med.groupby(KEYS, dropna=False)["precision"].transform(lambda s: len(set(s)) > 1 and "fp32" in set(s))
    return med[labels.astype(bool)]


def _ratio(x: float, base: float) -> float:
    """x / base; inf for a non-finite hypergradient (x = inf) against a finite fp32 error."""
    ok_base = base and math.isfinite(base) and base > 0
    return (math.inf if x == math.inf else x / base if math.isfinite(x) else math.nan) if ok_base else math.nan


def survivors(med: pd.DataFrame, task: str) -> tuple[list[str], dict[str, float]]:
    """``(methods within WITHIN× their fp32 error everywhere, {method: worst ratio} for the others)`` of ``task``."""
    within, worst = [], {}
    t = med[med["task"] == task]
    if "hypergrad_rel_error" not in t:
        return [], {}
    for method, g in t.groupby("method"):
        ratios = []
        for _, h in g.groupby(["precision_setting", "backend", "variant"], dropna=False):
            base = h.loc[h["precision"] == "fp32", "hypergrad_rel_error"]
            if base.empty:
                continue
            ratios += [_ratio(x, float(base.iloc[0])) for x in h.loc[h["precision"] != "fp32", "hypergrad_rel_error"]]
        ratios = [r for r in ratios if not math.isnan(r)]
        if not ratios:
            continue
        if max(ratios) <= WITHIN:
            within.append(str(method))
        else:
            worst[str(method)] = max(ratios)
    return sorted(within), worst


def sentence(med: pd.DataFrame, task: str) -> str:
    within, worst = survivors(med, task)
    if not within and not worst:
        return f"{task}: no hypergradient error measured in both fp32 and a low precision."
    parts = [f"**{task}**: hypergradient error within {WITHIN:g}× of fp32 in every low precision measured: "
             + (", ".join(f"`{m}`" for m in within) or "none")]
    if worst:
        parts.append("beyond it: " + ", ".join(f"`{m}` (up to {r:,.0f}×)" if math.isfinite(r)
                                               else f"`{m}` (non-finite)" for m, r in sorted(worst.items())))
    return "; ".join(parts) + "."


def _fmt(x: float, kind: str) -> str:
    if kind == "err" and x == math.inf:
        return "non-finite"
    if x is None or not math.isfinite(x):
        return "–"
    if kind == "bytes":
        return f"{x / 1024:,.1f} KiB"
    if kind == "time":
        return f"{x * 1e3:.3g} ms"
    return f"{x:.3g}" if kind == "err" else f"{x:.3f}"


#: config columns beside the ``task.*`` knobs whose differences name a task's settings in the table (``program=lbi``)
SETTING_COLUMNS = ("inner_steps", "steps", "ordering", "dtype")


def setting_labels(w: pd.DataFrame, task: str) -> dict[str, str]:
    """``precision_setting`` → the knobs that tell it from the task's other settings; ``{}`` with one setting."""
    t = w[w["task"] == task]
    if "precision_setting" not in t or t["precision_setting"].nunique() < 2:
        return {}
    cols = [c for c in t.columns if (c.startswith("task.") and c != "task.name") or c in SETTING_COLUMNS]
    first = t.groupby("precision_setting")[cols].first()
    varying = [c for c in cols if first[c].astype(str).nunique() > 1]
    return {str(k): ", ".join(f"{c.removeprefix('task.')}={row[c]}" for c in varying) for k, row in first.iterrows()}


def table(med: pd.DataFrame, task: str, settings: dict[str, str] | None = None) -> Table:
    settings = settings or {}
    rows = []
    t = med[med["task"] == task].copy()
    t["_o"] = t["precision"].map(_order)
    for _, r in t.sort_values(["method", "precision_setting", "backend", "_o"]).iterrows():
        base = t[(t["method"] == r["method"]) & (t["backend"] == r["backend"]) & (t["precision"] == "fp32")
                 & (t["precision_setting"] == r["precision_setting"])]
        b = base.iloc[0] if len(base) else None
        err = r.get("hypergrad_rel_error", math.nan)
        ratio = _ratio(err, b["hypergrad_rel_error"]) if b is not None and "hypergrad_rel_error" in r else math.nan
        tone = ("" if r["precision"] == "fp32" or math.isnan(ratio) else "good" if ratio <= WITHIN else "bad")
        rel = [_ratio(r.get(m, math.nan), b[m]) if b is not None and m in r else math.nan
               for m in ("peak_live_bytes", "time_step_s")]
        setting = settings.get(str(r["precision_setting"]))
        rows.append([cell(r["method"] + (f" · {setting}" if setting else "")), cell(r["backend"]), cell(r["precision"]),
                     Cell(_fmt(err, "err") + ("" if r["precision"] == "fp32" or not math.isfinite(ratio)
                                              else f" ({ratio:.3g}×)"), tone=tone),
                     cell(_fmt(r.get("hypergrad_cosine", math.nan), "cos")),
                     cell(_fmt(r.get("peak_live_bytes", math.nan), "bytes")
                          + (f" ({rel[0]:.2f}×)" if math.isfinite(rel[0]) and r["precision"] != "fp32" else "")),
                     cell(_fmt(r.get("time_step_s", math.nan), "time")
                          + (f" ({rel[1]:.2f}×)" if math.isfinite(rel[1]) and r["precision"] != "fp32" else ""))])
    return Table(["method", "backend", "precision", "hypergrad_rel_error (× fp32)", "cosine", "peak_live_bytes",
                  "time per step"], rows, align=["l", "l", "l", "r", "r", "r", "r"])


def figure(med: pd.DataFrame, task: str, path) -> Figure | None:
    """Hypergradient error and cosine against precision, a line per method × backend."""
    t = med[med["task"] == task]
    if "hypergrad_rel_error" not in t or t["hypergrad_rel_error"].notna().sum() == 0:
        return None
    plt, _ = figs.pyplot()
    order = sorted(set(t["precision"]), key=_order)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for (method, backend, _), g in t.groupby(["method", "backend", "precision_setting"]):
        g = g.groupby("precision")[[c for c in METRICS if c in g]].median().reindex(order)
        style = "-" if backend == "torch" else "--" if backend == "jax" else ":"
        err = g["hypergrad_rel_error"].replace(math.inf, math.nan)  # a non-finite hypergradient: a gap in the line
        axes[0].plot(order, err, style, marker="o", label=f"{method} ({backend})")
        if "hypergrad_cosine" in g:
            axes[1].plot(order, g["hypergrad_cosine"], style, marker="o")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("hypergrad_rel_error")
    axes[1].set_ylabel("hypergrad_cosine")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{task}: the hypergradient against precision")
    return Figure(figs.save(fig, path), f"{task}: hypergradient error and cosine per precision (median over seeds)")


def part(ctx: Context) -> Rendered:
    """The "Precision" section, where some experiment was run in fp32 and in a low precision; nothing otherwise."""
    med = medians(ctx.wide)
    if med.empty:
        return rendered()
    sec = Section("Precision", anchor_id="precision")
    sec.add(Para(__doc__.split("\n\n", 1)[0].replace("\n", " ").replace("``", "`")))
    for task in sorted(set(med["task"])):
        sec.add(Para(sentence(med, task)))
        if ctx.figures is not None:
            fig = figs.safe(figure, med, task, ctx.figures / f"precision_{task}.png")
            if fig is not None:
                sec.add(fig)
        sec.add(table(med, task, setting_labels(ctx.wide, task)))
    return rendered(sec)
