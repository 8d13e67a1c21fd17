"""The complexity experiment's fit: how the cost of one hypergradient grows with the dimension d (Betty's claim that
reverse mode brings it from O(d³) down to O(d²); ``suite/conf/experiment/complexity.yaml``).

Input: the ok runs of a size sweep of a task that declares a size knob (``Task.paper.size``, called d here) and,
optionally, knobs fitted apart (``paper.groups``, the first called L here) — runs whose config differs only in
those (and backend, method, seed); with several such sweeps in the records, the one with the most runs. Per
backend × method × L and measure, the fit is a least-squares line of log(measure) on log(d):

- **measures and ranges**: counted FLOPs per hypergradient (``flops_hypergrad``) over d ≥ 256; wall time per
  hypergradient (``time_hypergrad_s``) and peak bytes alive in one outer step (``peak_live_bytes``) over d ≥ 1024.
  Below these sizes fixed costs dominate (per-op Python dispatch and kernel launches for time, O(d) vectors and
  buffers for memory, O(d) elementwise work for XLA's FLOP count) and flatten the curves. Where fewer than
  :data:`MIN_SIZES` sizes reach the threshold, the :data:`MIN_SIZES` largest sizes are used (``d_min`` says which).
- **fit**: every ok run in range is a point (several seeds: all enter the fit); the exponent is the slope; its 95%
  interval is slope ± t(0.975, n − 2) · SE(slope) (Student t; no interval with fewer than 3 distinct sizes).
- **verdict** (:func:`verdict`): *supported* when every materialised path's FLOP-exponent interval lies within
  3 ± 0.15, every matrix-free path's within 2 ± 0.15, and, at each L, the wall-time exponent of the materialised
  chain (:func:`is_chain`: ``naive`` × ``exact``, Jacobians materialised and multiplied — the O(d³) path of the
  claim) exceeds every matrix-free path's; *not supported* when a FLOP interval lies wholly outside its band or, at
  some L, every matrix-free wall-time exponent exceeds the chain's; *inconclusive* otherwise. The other
  materialised paths' wall-time exponents are listed, not judged: a dense BLAS-3 path (``torch`` × ``exact``) gains
  efficiency with size, while a matrix-free path's matrix–vector products leave the cache for memory as d grows.
- **crossover** (:func:`crossovers`): per L and materialised path, the first d at which its median time per
  hypergradient (over seeds) exceeds that of every matrix-free path at the same d.

A path is *materialised* when its method or backend plugin says it ``materialises`` (``exact``: the d×d Hessian;
``naive``: best-response Jacobians); every other path is matrix-free.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlo_bench.suite.report import specs, stats
from mlo_bench.suite.report.tidy import flatten, setting_key
from mlo_bench.suite.report.verdicts import INCONCLUSIVE, NOT_MEASURED, NOT_SUPPORTED, SUPPORTED

#: measure → the smallest d of its fit (the rule above)
RANGES = {"flops_hypergrad": 256, "time_hypergrad_s": 1024, "peak_live_bytes": 1024}
MEASURES = tuple(RANGES)
#: at least this many sizes per fit (the largest ones where fewer reach the range)
MIN_SIZES = 3
#: the claim's exponents and the half-width of the band the FLOP-exponent interval must lie in
EXPECTED = {True: 3.0, False: 2.0}  # materialised → 3, matrix-free → 2
TOLERANCE = 0.15
COLUMNS = ["backend", "method", "levels", "measure", "exponent", "ci_low", "ci_high", "d_min", "d_max", "n_points"]
SIZE, LEVELS = "d", "levels"  # the columns holding the task's declared size knob and its first group knob
FILE = "complexity_fit.csv"


def backend_label(name: str, knobs: dict[str, Any]) -> str:
    """``name``, or ``name {knobs}`` with the knobs that differ from the backend's defaults (e.g. ``naive
    {"chain": "reverse"}``), so differently configured backends are never pooled into one path."""
    from mlo_bench.suite.plugins import registry

    try:
        defaults = dataclasses.asdict(registry.make_config("backend", name, {}))
    except Exception:  # noqa: BLE001 - a backend not registered here: every knob counts
        defaults = {}
    changed = {k: v for k, v in sorted(knobs.items()) if defaults.get(k, object()) != v}
    return f"{name} {json.dumps(changed, sort_keys=True, default=str)}" if changed else name


def _backend_materialises(label: str) -> bool:
    """``materialises`` of the backend a :func:`backend_label` names, as configured (``naive`` when unknown here)."""
    from mlo_bench.suite.plugins import registry

    name, _, knobs = label.partition(" ")
    try:
        return bool(registry.backend(name, json.loads(knobs) if knobs else None).materialises)
    except Exception:  # noqa: BLE001 - not registered here (or knobs it no longer has)
        return name == "naive"


def _method_materialises(method: str) -> bool:
    from mlo_bench.suite.plugins import registry

    try:
        return bool(getattr(registry.get("method", method), "materialises", False))
    except KeyError:
        return method == "exact"


def is_materialised(backend: str, method: str) -> bool:
    """Whether the configured backend (a :func:`backend_label`) or the method plugin ``materialises`` (names
    ``naive`` / ``exact`` when the plugin is not registered here)."""
    from mlo_bench.suite.plugins import registry

    registry.discover()
    return _backend_materialises(backend) or _method_materialises(method)


# --------------------------------------------------------------------------------------------------------------
# records → points


def _pop(config: dict[str, Any], key: str) -> Any:
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
    return node.pop(leaf, None) if isinstance(node, dict) else None


def points(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per ok run of a task with a declared integer size knob: backend, method (with its knobs when a sweep
    has several variants of it), levels (the first group knob's value; 0 without one), d (the size), seed, the
    sweep it belongs to (``group``) and the measures."""
    rows = []
    for rec in records:
        config = rec.get("config") if isinstance(rec.get("config"), dict) else {}
        paper = specs.paper(str(rec.get("task")))
        if rec.get("status") != "ok" or not paper.size:
            continue
        flat = flatten(config, "")
        d, levels = flat.get(paper.size), flat.get(paper.groups[0], 0) if paper.groups else 0
        if not isinstance(d, int) or isinstance(d, bool) or not isinstance(levels, int):
            continue
        rest = json.loads(json.dumps(config, default=str))
        for key in (paper.size, *paper.groups):
            _pop(rest, key)
        knobs = {k: v for k, v in (config.get("method") or {}).items() if k != "name"}
        backend_knobs = {k: v for k, v in (config.get("backend") or {}).items() if k != "name"}
        metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
        row = {"task": rec.get("task"), "backend": backend_label(str(rec.get("backend")), backend_knobs),
               "method": str(rec.get("method")),
               "variant": json.dumps(knobs, sort_keys=True, default=str), "levels": int(levels),
               SIZE: d, "seed": rec.get("seed"), "group": setting_key(rest)}
        for m in MEASURES:
            v = metrics.get(m)
            row[m] = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["task", "backend", "method", "variant", "levels", SIZE, "seed", "group",
                                        *MEASURES])
    if frame.empty:
        return frame
    frame["path"] = frame["method"]
    several = frame.groupby(["group", "backend", "method"])["variant"].transform("nunique") > 1
    frame.loc[several, "path"] = frame.loc[several, "method"] + " " + frame.loc[several, "variant"]
    return frame


def sweep(pts: pd.DataFrame) -> pd.DataFrame:
    """The size sweep with the most runs (a group with at least two sizes), or an empty frame."""
    if pts.empty:
        return pts
    sizes = pts.groupby("group")[SIZE].nunique()
    groups = sizes[sizes >= 2].index
    if not len(groups):
        return pts.iloc[0:0]
    counts = pts[pts["group"].isin(groups)].groupby("group").size()
    return pts[pts["group"] == counts.idxmax()].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------------
# the fit


@dataclass
class Fit:
    exponent: float
    ci_low: float
    ci_high: float
    d_min: float
    d_max: float
    n_points: int


def fit_xy(d: Sequence[float], y: Sequence[float], measure: str) -> Fit:
    """The exponent of ``y`` in ``d`` under the range rule of ``measure`` (d ≥ :data:`RANGES` [measure], or the
    :data:`MIN_SIZES` largest sizes), with its 95% interval (NaN bounds with fewer than 3 distinct sizes)."""
    ds, ys = np.asarray(d, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(ds) & np.isfinite(ys) & (ds > 0) & (ys > 0)
    ds, ys = ds[keep], ys[keep]
    if ds.size == 0:
        return Fit(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    use = ds >= _lowest(ds, measure)
    slope, lo, hi, n = stats.loglog_slope(ds[use].tolist(), ys[use].tolist())
    return Fit(slope, lo, hi, float(ds[use].min()), float(ds[use].max()), n)


def _lowest(ds: np.ndarray, measure: str) -> float:
    """The smallest size of the fit: the range's start, or the :data:`MIN_SIZES` th largest size."""
    sizes = np.unique(ds)
    in_range = sizes[sizes >= RANGES.get(measure, 0)]
    return float(in_range.min() if in_range.size >= MIN_SIZES else sizes[-MIN_SIZES:].min())


def fit(pts: pd.DataFrame) -> pd.DataFrame:
    """The fit table (:data:`COLUMNS`): one row per backend × method × levels × measure with at least two sizes."""
    rows = []
    if not pts.empty:
        for (backend, path, levels), g in pts.groupby(["backend", "path", "levels"], sort=True):
            for m in MEASURES:
                f = fit_xy(g[SIZE].tolist(), g[m].tolist(), m)
                if math.isfinite(f.exponent):
                    rows.append({"backend": backend, "method": path, "levels": int(levels), "measure": m,
                                 "exponent": f.exponent, "ci_low": f.ci_low, "ci_high": f.ci_high,
                                 "d_min": int(f.d_min), "d_max": int(f.d_max), "n_points": f.n_points})
    return pd.DataFrame(rows, columns=COLUMNS)


# --------------------------------------------------------------------------------------------------------------
# the verdict and the crossover


def is_materialised_row(row: Any) -> bool:
    """Whether a fit table row's path (``backend``, ``method``: its first word) is materialised."""
    return is_materialised(str(row["backend"]), str(row["method"]).split(" ", 1)[0])


def band_check(expected: float, lo: float, hi: float) -> str:
    """``in`` when [lo, hi] lies within expected ± TOLERANCE, ``out`` when it lies wholly outside, else ``unclear``
    (also without an interval)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "unclear"
    if lo >= expected - TOLERANCE and hi <= expected + TOLERANCE:
        return "in"
    if hi < expected - TOLERANCE or lo > expected + TOLERANCE:
        return "out"
    return "unclear"


@dataclass
class Verdict:
    verdict: str
    reasons: list[str] = field(default_factory=list)


def _path(row: Any) -> str:
    return f"{row['backend']} × {row['method']} (L={int(row['levels'])})"


def is_chain(backend: str, method: str) -> bool:
    """The fully materialised path — backend and method both materialise (``naive`` × ``exact``: Jacobians from
    materialised Hessians, multiplied along the chain), the O(d³) path of Betty's claim."""
    from mlo_bench.suite.plugins import registry

    registry.discover()
    return _backend_materialises(backend) and _method_materialises(method)


def verdict(table: pd.DataFrame) -> Verdict:
    """The claim's verdict from the fit table, by the rule of this module's docstring."""
    flops = table[table["measure"] == "flops_hypergrad"]
    if flops.empty:
        return Verdict(NOT_MEASURED, ["no counted FLOPs in the sweep"])
    kinds = [is_materialised_row(r) for _, r in flops.iterrows()]
    if all(kinds) or not any(kinds):
        return Verdict(NOT_MEASURED, ["the sweep needs both a materialised and a matrix-free path"])
    reasons, bad, unclear, n_in = [], False, False, 0
    for (_, r), mat in zip(flops.iterrows(), kinds, strict=True):
        check = band_check(EXPECTED[mat], r["ci_low"], r["ci_high"])
        n_in += check == "in"
        bad |= check == "out"
        unclear |= check == "unclear"
        if check != "in":
            where = "outside" if check == "out" else "not within"
            band = f"{EXPECTED[mat]:g} ± {TOLERANCE:g}"
            reasons.append(f"FLOP exponent of {_path(r)}: {exponent_text(r)}, {where} {band}")
    reasons.insert(0, f"{n_in} of {len(flops)} FLOP exponents lie within their band (materialised 3 ± {TOLERANCE:g}, "
                      f"matrix-free 2 ± {TOLERANCE:g})")
    times = table[table["measure"] == "time_hypergrad_s"]
    if times.empty:
        return Verdict(NOT_SUPPORTED if bad else INCONCLUSIVE, [*reasons, "no wall-time exponent"])
    for levels, g in times.groupby("levels", sort=True):
        mat = g[[is_materialised_row(r) for _, r in g.iterrows()]]
        free = g[[not is_materialised_row(r) for _, r in g.iterrows()]]
        chain = mat[[is_chain(r["backend"], str(r["method"]).split(" ", 1)[0]) for _, r in mat.iterrows()]]
        chain = chain if not chain.empty else mat
        if chain.empty or free.empty:
            unclear = True
            reasons.append(f"L={levels}: no wall-time exponent for one kind of path")
            continue
        top = free.loc[free["exponent"].idxmax()]
        low = chain.loc[chain["exponent"].idxmin()]
        text = (f"L={levels}: wall-time exponent of {low['backend']} × {low['method']} {exponent_text(low)}, of the "
                f"matrix-free paths up to {top['exponent']:.2f} ({top['backend']} × {top['method']})")
        if low["exponent"] > top["exponent"]:
            reasons.append(text + ": the materialised one is the larger")
        elif chain["exponent"].max() < free["exponent"].min():
            bad = True
            reasons.append(text + ": every matrix-free one is larger")
        else:
            unclear = True
            reasons.append(text + ": the materialised one is not the larger")
        others = mat.drop(index=chain.index)
        if not others.empty:
            reasons.append(f"L={levels}, the other materialised paths (not in the rule): " + ", ".join(
                f"{r['backend']} × {r['method']} {r['exponent']:.2f}" for _, r in others.iterrows()))
    return Verdict(NOT_SUPPORTED if bad else INCONCLUSIVE if unclear else SUPPORTED, reasons)


@dataclass
class Crossover:
    levels: int
    backend: str
    method: str
    d: int | None  # the first d at which it is slower than every matrix-free path; None: never, within the sizes
    sizes: list[int]  # the sizes at which both it and every matrix-free path have a time
    ratio: float = math.nan  # at the largest of those sizes: its median time over the slowest matrix-free path's


def crossovers(pts: pd.DataFrame, measure: str = "time_hypergrad_s") -> list[Crossover]:
    """Per L and materialised path: the first d where its median ``measure`` over seeds exceeds the median of every
    matrix-free path at that d (only sizes where every matrix-free path of that L ran)."""
    out: list[Crossover] = []
    if pts.empty:
        return out
    ok = pts[pts[measure].notna()]
    for levels, g in ok.groupby("levels", sort=True):
        med = g.groupby(["backend", "path", SIZE])[measure].median().unstack(SIZE)
        kinds = {idx: is_materialised(idx[0], idx[1].split(" ", 1)[0]) for idx in med.index}
        free = med.loc[[k for k, m in kinds.items() if not m]]
        if free.empty:
            continue
        slowest = free.max(axis=0, skipna=False)
        for idx in [k for k, m in kinds.items() if m]:
            row = med.loc[idx]
            sizes = [int(d) for d in med.columns if math.isfinite(row[d]) and math.isfinite(slowest[d])]
            first = next((d for d in sizes if row[d] > slowest[d]), None)
            ratio = float(row[sizes[-1]] / slowest[sizes[-1]]) if sizes else math.nan
            out.append(Crossover(int(levels), idx[0], idx[1], first, sizes, ratio))
    return out


def exponent_text(r: Any) -> str:
    """A fit table row's exponent with its 95% interval: ``2.01 [1.98, 2.04]`` (or ``(no interval)``)."""
    interval = f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]" if math.isfinite(r["ci_low"]) else " (no interval)"
    return f"{r['exponent']:.2f}{interval}"
