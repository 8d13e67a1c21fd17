"""A column of ``mlo-bench verify``: how far one pytree is from a reference pytree, and when that question is empty.

The rule is the engine's one (:func:`mlo_bench.suite.engine.compare.distance`: max over leaves of ‖a − b‖ / ‖b‖, a
leaf whose reference is zero measured against the whole reference's norm); a :class:`Diff` adds what a column needs
besides: that neither run has the value (``absent``), its text, and whether it is within the tolerance. A reference
that is zero everywhere while the other is not is *degenerate* (nothing to be relative to); two trees zero everywhere
are *vacuous* (the comparison tests nothing).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from mlo_bench.suite.engine.compare import Distance, distance


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return "nan" if not math.isfinite(x) else f"{x:.2e}"


@dataclass
class Diff(Distance):
    """One column of a row: the max relative difference, or why there is none to speak of."""

    absent: bool = False  # neither run has this value (method=none computes no hypergradient)

    def text(self) -> str:
        return "-" if self.absent else "degenerate" if self.degenerate else "zeros" if self.vacuous else fmt(self.value)

    def within(self, tol: float) -> bool:
        return not self.degenerate and math.isfinite(self.value) and self.value <= tol


def compare(a: Any, b: Any) -> Diff:
    """``a`` against the reference ``b`` (:func:`mlo_bench.suite.engine.compare.distance`): NaN when the trees'
    shapes differ or a value is not finite; ``degenerate`` when ``b`` is zero everywhere and ``a`` is not,
    ``vacuous`` when both are."""
    return Diff(**asdict(distance(a, b)))


def worse(*diffs: Diff) -> Diff:
    """One column from several comparisons: degenerate if any is, vacuous only if all are, else the largest."""
    if any(d.degenerate for d in diffs):
        return Diff(float("nan"), degenerate=True)
    real = [d for d in diffs if not d.vacuous]
    if not real:
        return Diff(0.0, vacuous=True)
    values = [d.value for d in real]
    return Diff(float("nan") if any(not math.isfinite(v) for v in values) else max(values))
