"""Why wall-time exponents differ from FLOP exponents: the achieved FLOP rate of each path across the timed range.

time = FLOPs / rate, so (time exponent) = (FLOP exponent) − (rate exponent). A path whose rate rises with d (dense
BLAS-3 kernels get more efficient as matrices grow, fixed per-call overheads are amortised) shows a time exponent
below its FLOP exponent; a path whose rate falls (operands leave the caches for main memory, per-row dispatch costs
that grow with d) shows one above. The table reports, per path, both exponents, their difference, and the rate
measured at the ends of the timed range — the explanation is read off these numbers, not written by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mlo_bench.suite.report.render.doc import Bullets, Para, Table, cell

#: a gap smaller than this (in exponent units) is read as "time follows FLOPs"
FOLLOWS = 0.15


def _median_rate(pts: pd.DataFrame, d: int) -> float:
    at = pts[pts["d"] == d]
    rate = at["flops_hypergrad"] / at["time_hypergrad_s"]
    rate = rate[np.isfinite(rate) & (rate > 0)]
    return float(rate.median()) if len(rate) else math.nan


def rows(pts: pd.DataFrame, table: pd.DataFrame) -> list[dict]:
    """Per backend × path × L: FLOP and time exponents, their gap, and GFLOP/s at the timed range's ends."""
    out = []
    for (backend, path, levels), g in table.groupby(["backend", "method", "levels"], sort=True):
        fl = g[g["measure"] == "flops_hypergrad"]
        tm = g[g["measure"] == "time_hypergrad_s"]
        if fl.empty or tm.empty:
            continue
        fl, tm = fl.iloc[0], tm.iloc[0]
        mine = pts[(pts["backend"] == backend) & (pts["path"] == path) & (pts["levels"] == levels)]
        lo, hi = int(tm["d_min"]), int(tm["d_max"])
        out.append({"backend": backend, "method": path, "levels": int(levels), "flops_exp": float(fl["exponent"]),
                    "time_exp": float(tm["exponent"]), "gap": float(tm["exponent"] - fl["exponent"]),
                    "d_lo": lo, "d_hi": hi, "rate_lo": _median_rate(mine, lo), "rate_hi": _median_rate(mine, hi)})
    return out


def _reading(r: dict) -> str:
    if abs(r["gap"]) < FOLLOWS:
        return "time follows FLOPs"
    return "time grows faster than FLOPs: the rate falls" if r["gap"] > 0 else \
        "time grows slower than FLOPs: the rate rises"


def blocks(pts: pd.DataFrame, table: pd.DataFrame) -> list:
    """A paragraph, the table and a summary of the gaps (empty when no path has both exponents)."""
    rs = rows(pts, table)
    if not rs:
        return []

    def g(x: float) -> str:
        return "–" if not math.isfinite(x) else f"{x / 1e9:.3g}"

    body = [[cell(r["backend"]), cell(r["method"]), cell(r["levels"]), cell(f"{r['flops_exp']:.2f}"),
             cell(f"{r['time_exp']:.2f}"), cell(f"{r['gap']:+.2f}"),
             cell(f"{g(r['rate_lo'])} → {g(r['rate_hi'])} (d = {r['d_lo']} → {r['d_hi']})"), cell(_reading(r))]
            for r in rs]
    faster = [r for r in rs if r["gap"] >= FOLLOWS]
    slower = [r for r in rs if r["gap"] <= -FOLLOWS]
    summary = [f"{len(rs) - len(faster) - len(slower)} of {len(rs)} paths: time exponent within ±{FOLLOWS:g} of the "
               "FLOP exponent"]
    if faster:
        summary.append("time grows faster than FLOPs (achieved rate falls with d): "
                       + ", ".join(f"{r['backend']} × {r['method']} L={r['levels']} ({r['gap']:+.2f})" for r in faster))
    if slower:
        summary.append("time grows slower than FLOPs (achieved rate rises with d): "
                       + ", ".join(f"{r['backend']} × {r['method']} L={r['levels']} ({r['gap']:+.2f})" for r in slower))
    return [
        Para("Why wall time departs from the FLOP count: time = FLOPs ÷ achieved rate, so the time exponent is the "
             "FLOP exponent minus the rate's. Dense matrix–matrix kernels get faster per FLOP as d grows; "
             "matrix–vector work is bound by memory bandwidth once its operands leave the caches, and per-row "
             "dispatch grows with d — the measured rates below say which happened on this machine."),
        Table(["backend", "method", "L", "FLOP exp.", "time exp.", "gap", "GFLOP/s (timed range)", "reading"], body,
              align=["l", "l", "r", "r", "r", "r", "r", "l"]),
        Bullets(summary),
    ]
