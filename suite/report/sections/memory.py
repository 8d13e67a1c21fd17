"""Memory model: counted bytes against model size, a fitted model per method and precision, and the largest model of
the task's family each method fits on common GPUs.

Generic: for a task that declares a :class:`~mlo_bench.suite.contract.MemoryFamily` (``Task.paper.memory``) it reads
the records' ``peak_live_bytes`` and ``resident_bytes`` (counted: bytes alive at the peak of one outer step beyond its
inputs, plus the inputs — every level's parameters and optimizer state), the family's parameter and activation
metrics, ``peak_memory_bytes`` (RSS on CPU; ``max_memory_allocated`` on CUDA) and ``memory_kind``. A run is named
by the task variant it stands for, else by the variant it was run as (a memory sweep's ``variant=cg precision=bf16``:
the precision is a column of its own), else by its method. Runs that ended
``diverged`` keep their counts (the bytes are counted on a step of their own before training), so they are used too,
with the size metrics they did not reach taken from a run of the same task config.

The fit, per task × backend × variant × precision: ``bytes ≈ a · P + b · A + c`` by non-negative least squares
(``scipy.optimize.nnls``), P parameters, A activation elements; ``a`` is the method's bytes per parameter (gradients,
optimizer updates, the method's vectors), ``b`` its bytes per activation element (what its passes keep alive). The
largest model per GPU solves ``a · P + b · A(P) + c = G`` along the family (bisection; the CUDA context, allocator
fragmentation and the data are not in the counted bytes: a real run needs some headroom). A measured CUDA figure,
where a record has one, is put beside the prediction for its own size.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mlo_bench.suite.report import specs
from mlo_bench.suite.report.render import figures as figs
from mlo_bench.suite.report.render.doc import Cell, Figure, Para, Section, Table, cell
from mlo_bench.suite.report.sections import Context, Rendered, rendered

#: the GPUs the prediction is stated for (GiB): RTX 4090 / A100 40 GB / A100-H100 80 GB / H200
GPUS_GIB = (24, 40, 80, 141)
GIB = 2.0**30
MIB = 2.0**20
KEYS = ["task", "backend", "variant", "precision"]


def _order(p: str) -> int:
    return {"fp32": 0, "bf16": 1, "fp16": 2}.get(str(p), 9)


def points(w: pd.DataFrame) -> pd.DataFrame:
    """One row per run with counted bytes, of the tasks with a memory family: KEYS, ``P``, ``A``, ``bytes``
    (live + resident), ``rss`` and, for CUDA runs, ``cuda``."""
    rows = []
    if w.empty or "peak_live_bytes" not in w or "resident_bytes" not in w:
        return pd.DataFrame()
    for task in sorted(set(w["task"])):
        fam = specs.paper(task).memory
        if fam is None or fam.params_metric not in w or fam.activations_metric not in w:
            continue
        t = _sizes_filled(w[w["task"] == task], fam.params_metric, fam.activations_metric)
        t = t[t["peak_live_bytes"].notna() & t["resident_bytes"].notna()
              & t[fam.params_metric].notna() & t[fam.activations_metric].notna()]
        for _, r in t.iterrows():
            cuda = r.get("memory_kind") == "cuda_allocated"
            # the task variant it stands for; else the one it was run as (``variant=darts precision=bf16`` stands
            # for none, since the precision column says what it overrode); else its method
            named = [v for v in (r.get("task_variant"), r.get("run_variant")) if isinstance(v, str) and v]
            rows.append({"task": task, "backend": r["backend"], "variant": named[0] if named else r["method"],
                         "precision": r.get("precision") or "fp32", "status": r["status"],
                         "P": float(r[fam.params_metric]), "A": float(r[fam.activations_metric]),
                         "bytes": float(r["peak_live_bytes"]) + float(r["resident_bytes"]),
                         "rss": float(r["peak_memory_bytes"]) if not cuda and pd.notna(r.get("peak_memory_bytes"))
                         else math.nan,
                         "cuda": float(r["peak_memory_bytes"]) if cuda else math.nan})
    return pd.DataFrame(rows)


def _sizes_filled(t: pd.DataFrame, *size_metrics: str) -> pd.DataFrame:
    """``t`` with the family's size metrics filled in where a run did not measure them (one that ended ``diverged``
    stops before the task's metrics) from a run of the same task config (every ``task.*`` key alike): they are
    functions of the task's config, not of the method, precision or seed."""
    keys = sorted(c for c in t.columns if c.startswith("task."))
    if not keys:
        return t
    t = t.copy()
    config = pd.Series([repr(row) for row in t[keys].itertuples(index=False)], index=t.index)
    for metric in size_metrics:
        known = t[metric].groupby(config).first()
        t[metric] = t[metric].fillna(config.map(known))
    return t


def fit(g: pd.DataFrame) -> dict[str, float] | None:
    """``{"a", "b", "c", "max_rel", "moving"}`` for one group's points (at least three distinct sizes), else ``None``.

    ``moving``: how many points move the bytes at a fixed parameter count (the most, over the counts, of the distinct
    byte figures there, less one). Only such points tell the activation term from the parameter term. With fewer than
    two of them, ``b`` rests on one point or on none, and the table says so."""
    from scipy.optimize import nnls

    g = g.drop_duplicates(["P", "A"])
    if g["P"].nunique() < 3:
        return None
    scale = np.array([g["P"].max(), g["A"].max(), 1.0])
    x = np.column_stack([g["P"], g["A"], np.ones(len(g))]) / scale
    coef, _ = nnls(x, g["bytes"].to_numpy())
    a, b, c = coef / scale
    pred = a * g["P"] + b * g["A"] + c
    return {"a": float(a), "b": float(b), "c": float(c), "n": len(g),
            "max_rel": float((abs(pred - g["bytes"]) / g["bytes"]).max()),
            "moving": int(g.groupby("P")["bytes"].nunique().max() - 1)}


def largest(m: dict[str, float], activations, budget: float) -> float:
    """The largest P along the family whose predicted bytes fit in ``budget`` (NaN if even 10⁵ does not)."""
    def need(p: float) -> float:
        return m["a"] * p + m["b"] * activations(p) + m["c"]

    lo, hi = 1e5, 1e13
    if need(lo) > budget:
        return math.nan
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if need(mid) <= budget else (lo, mid)
    return lo


def models(pts: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key, g in pts.groupby(KEYS):
        m = fit(g)
        if m is not None:
            rows.append({**dict(zip(KEYS, key, strict=True)), **m})
    return pd.DataFrame(rows)


def _params(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    if p < 1e5:
        return f"{p / 1e3:.1f}k"
    return f"{p / 1e9:.2f}B" if p >= 1e9 else f"{p / 1e6:.0f}M" if p >= 1e7 else f"{p / 1e6:.1f}M"


def _mib(x: float) -> str:
    m = x / MIB
    return f"{m:,.0f}" if m >= 100 else f"{m:.3g}"


def fit_table(mod: pd.DataFrame, task: str) -> Table:
    fam = specs.paper(task).memory
    rows = []
    t = mod[mod["task"] == task].copy()
    t["_o"] = t["precision"].map(_order)
    for _, r in t.sort_values(["backend", "_o", "a"]).iterrows():
        fits = [largest(r, fam.activations, g * GIB) for g in GPUS_GIB]
        rows.append([cell(r["backend"]), cell(r["variant"]), cell(r["precision"]), cell(f"{r['a']:.2f}"),
                     Cell(f"{r['b']:.2f}" + ("" if r["moving"] >= 2 else f" ({r['moving']} pt)"),
                          tone="" if r["moving"] >= 2 else "bad"),
                     cell(f"{r['c'] / MIB:.1f}"),
                     Cell(f"{100 * r['max_rel']:.1f}%", tone="bad" if r["max_rel"] > 0.1 else ""),
                     *[cell(_params(p)) for p in fits]])
    return Table(["backend", "method (variant)", "precision", "a: B / parameter", "b: B / activation", "c: MiB",
                  "worst residual", *[f"largest at {g} GiB" for g in GPUS_GIB]], rows,
                 align=["l", "l", "l"] + ["r"] * (4 + len(GPUS_GIB)),
                 caption=f"bytes ≈ a·P + b·A + c per method and precision; the largest model along the family "
                         f"({fam.label}); red b (n pt): only n points move the bytes at a fixed parameter count, "
                         f"so the activation term rests on them")


def measured_table(pts: pd.DataFrame, mod: pd.DataFrame, task: str) -> Table:
    """Counted MiB (RSS MiB) per variant × precision against the sizes measured, and CUDA beside the prediction."""
    t = pts[pts["task"] == task]
    sizes = sorted(set(t["P"]))
    rows = []
    for (backend, variant, prec), g in sorted(t.groupby(["backend", "variant", "precision"]),
                                              key=lambda kv: (kv[0][0], kv[0][1], _order(kv[0][2]))):
        row = [cell(backend), cell(variant), cell(prec)]
        for p in sizes:
            h = g[g["P"] == p].sort_values("A")
            if h.empty:
                row.append(cell("–"))
                continue
            r = h.iloc[0]
            text = _mib(r["bytes"]) + (f" ({_mib(r['rss'])})" if math.isfinite(r["rss"]) else "")
            if math.isfinite(r["cuda"]):
                m = mod[(mod["task"] == task) & (mod["backend"] == backend) & (mod["variant"] == variant)
                        & (mod["precision"] == prec)]
                if len(m):
                    pred = m.iloc[0]["a"] * r["P"] + m.iloc[0]["b"] * r["A"] + m.iloc[0]["c"]
                    text += f"; CUDA {r['cuda'] / MIB:,.0f} vs {pred / MIB:,.0f} predicted"
            row.append(Cell(text, tone="bad" if r["status"] != "ok" else ""))
        rows.append(row)
    return Table(["backend", "method (variant)", "precision", *[_params(p) for p in sizes]], rows,
                 align=["l", "l", "l"] + ["r"] * len(sizes),
                 caption="counted MiB per outer step (live + resident; RSS in brackets), smallest batch measured "
                         "per size; red: the run did not end ok (its bytes were counted before training)")


def figure(pts: pd.DataFrame, task: str, path) -> Figure | None:
    """Counted bytes against parameters, log–log, one panel per precision, a line per variant (smallest batch)."""
    t = pts[pts["task"] == task]
    if t.empty:
        return None
    plt, _ = figs.pyplot()
    precs = sorted(set(t["precision"]), key=_order)
    fig, axes = plt.subplots(1, len(precs), figsize=(4.6 * len(precs), 4.0), sharey=True, squeeze=False)
    cmap = plt.get_cmap("tab20")
    colour = {v: cmap(i % 20) for i, v in enumerate(sorted(set(t["variant"])))}  # one colour per method, every panel
    for ax, prec in zip(axes[0], precs, strict=True):
        for (backend, variant), g in t[t["precision"] == prec].groupby(["backend", "variant"]):
            g = g.sort_values("A").drop_duplicates("P").sort_values("P")
            style = "-" if backend == "torch" else "--"
            ax.plot(g["P"], g["bytes"] / MIB, style, marker="o", markersize=3, color=colour[variant],
                    label=f"{variant} ({backend})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters")
        ax.set_title(prec)
    axes[0][0].set_ylabel("counted MiB per outer step")
    for ax in axes[0]:
        ax.legend(fontsize=5.5, ncol=2, loc="upper left")
    fig.suptitle(f"{task}: memory against model size")
    return Figure(figs.save(fig, path), f"{task}: counted bytes (live + resident) against parameters, per precision")


def sentence(mod: pd.DataFrame, task: str) -> str:
    """Which method fits the largest and the smallest model at the largest GPU, per precision, computed."""
    fam = specs.paper(task).memory
    t = mod[mod["task"] == task]
    parts = []
    for prec in sorted(set(t["precision"]), key=_order):
        g = t[t["precision"] == prec]
        sizes = {f"{r['variant']} ({r['backend']})": largest(r, fam.activations, GPUS_GIB[-1] * GIB)
                 for _, r in g.iterrows()}
        sizes = {k: v for k, v in sizes.items() if math.isfinite(v)}
        if len(sizes) < 2:
            continue
        hi, lo = max(sizes, key=sizes.get), min(sizes, key=sizes.get)
        parts.append(f"{prec}: `{hi}` fits up to {_params(sizes[hi])}, `{lo}` {_params(sizes[lo])}")
    return (f"**{task}** at {GPUS_GIB[-1]} GiB, along the family: " + "; ".join(parts) + ".") if parts else ""


def part(ctx: Context) -> Rendered:
    """The "Memory model" section, for tasks with a memory family and counted runs at three sizes or more."""
    pts = points(ctx.wide)
    if pts.empty:
        return rendered()
    mod = models(pts)
    if mod.empty:
        return rendered()
    sec = Section("Memory model", anchor_id="memory-model")
    sec.add(Para(__doc__.split("\n\n", 1)[0].replace("\n", " ").replace("``", "`")))
    for task in sorted(set(mod["task"])):
        text = sentence(mod, task)
        if text:
            sec.add(Para(text))
        if ctx.figures is not None:
            fig = figs.safe(figure, pts, task, ctx.figures / f"memory_{task}.png")
            if fig is not None:
                sec.add(fig)
        sec.add(fit_table(mod, task))
        sec.add(measured_table(pts, mod, task))
    return rendered(sec)
