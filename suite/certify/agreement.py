"""How far one pytree is from a reference pytree, for ``mlo-bench verify``, and when that question is empty.

A leaf whose reference is zero is measured against the whole reference's norm (not against ``tiny``: roundoff of
1e-17 next to an exact zero is not a 1e+290 disagreement). A reference that is zero everywhere while the other is not
is *degenerate* (nothing to be relative to); two trees zero everywhere are *vacuous* (the comparison tests nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlo_bench.suite.engine.trees import tree_leaves


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return "nan" if not math.isfinite(x) else f"{x:.2e}"


@dataclass
class Diff:
    """One column of a row: the max relative difference, or why there is none to speak of."""

    value: float = 0.0
    degenerate: bool = False  # the reference is zero everywhere, the other is not
    vacuous: bool = False  # both are zero everywhere: the comparison tests nothing
    absent: bool = False  # neither run has this value (method=none computes no hypergradient)

    def text(self) -> str:
        return "-" if self.absent else "degenerate" if self.degenerate else "zeros" if self.vacuous else fmt(self.value)

    def within(self, tol: float) -> bool:
        return not self.degenerate and math.isfinite(self.value) and self.value <= tol


def compare(a: Any, b: Any) -> Diff:
    """``a`` against the reference ``b``: max over leaves of ‖a − b‖ / ‖b‖, where a leaf whose reference is zero is
    measured against the whole reference's norm; NaN when the trees' shapes differ or a value is not finite;
    ``degenerate`` when ``b`` is zero everywhere and ``a`` is not, ``vacuous`` when both are."""
    la, lb = tree_leaves(a), tree_leaves(b)
    if len(la) != len(lb):
        return Diff(float("nan"))
    xs = [np.asarray(x, dtype=np.float64) for x in la]
    ys = [np.asarray(y, dtype=np.float64) for y in lb]
    if any(x.shape != y.shape for x, y in zip(xs, ys, strict=True)):
        return Diff(float("nan"))
    ref = math.sqrt(sum(float(np.sum(y * y)) for y in ys))
    other = math.sqrt(sum(float(np.sum(x * x)) for x in xs))
    if not (math.isfinite(ref) and math.isfinite(other)):
        return Diff(float("nan"))
    if ref == 0.0:
        return Diff(0.0, vacuous=True) if other == 0.0 else Diff(float("nan"), degenerate=True)
    worst = 0.0
    for x, y in zip(xs, ys, strict=True):
        scale = float(np.linalg.norm(y)) or ref
        worst = max(worst, float(np.linalg.norm(x - y)) / scale)
    return Diff(worst)


def worse(*diffs: Diff) -> Diff:
    """One column from several comparisons: degenerate if any is, vacuous only if all are, else the largest."""
    if any(d.degenerate for d in diffs):
        return Diff(float("nan"), degenerate=True)
    real = [d for d in diffs if not d.vacuous]
    if not real:
        return Diff(0.0, vacuous=True)
    values = [d.value for d in real]
    return Diff(float("nan") if any(not math.isfinite(v) for v in values) else max(values))
