"""How far one pytree is from another: the suite's one module of tree comparisons.

Every leaf is compared in float64, the leaves in the deterministic order of
:func:`mlo_bench.suite.engine.trees.tree_leaves`.

- :func:`distance` — ``a`` against a reference ``b``, leaf by leaf: the largest ‖a − b‖ / ‖b‖ over leaves, where a leaf
  whose reference is zero is measured against the whole reference's norm (not against ``tiny``: roundoff of 1e-17 next
  to an exact zero is not a 1e+290 disagreement). A reference zero everywhere while the other is not is *degenerate*
  (nothing to be relative to: the value is NaN); two trees zero everywhere are *vacuous* (0, and the comparison tests
  nothing); trees of different shapes, or a value that is not finite, give NaN. ``mlo-bench verify``'s columns
  (:mod:`mlo_bench.suite.certify.agreement`) and the tests' :func:`max_rel_diff` are this rule.
- :func:`hypergrad_errors` — a hypergradient against a reference over the whole tree at once: a run's
  ``hypergrad_rel_error`` (‖h − r‖ / ‖r‖) and ``hypergrad_cosine``, NaN where the reference (or h) is zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlo_bench.suite.engine.trees import tree_leaves


@dataclass
class Distance:
    """:func:`distance`'s answer: the value, and whether the reference left nothing to compare."""

    value: float = 0.0
    degenerate: bool = False  #: the reference is zero everywhere, the other is not (value NaN)
    vacuous: bool = False  #: both are zero everywhere: the comparison tests nothing (value 0)


def distance(a: Any, b: Any) -> Distance:
    """``a`` against the reference ``b``: max over leaves of ‖a − b‖ / ‖b‖ (the module's rule)."""
    la, lb = tree_leaves(a), tree_leaves(b)
    if len(la) != len(lb):
        return Distance(float("nan"))
    xs = [np.asarray(x, dtype=np.float64) for x in la]
    ys = [np.asarray(y, dtype=np.float64) for y in lb]
    if any(x.shape != y.shape for x, y in zip(xs, ys, strict=True)):
        return Distance(float("nan"))
    ref = math.sqrt(sum(float(np.sum(y * y)) for y in ys))
    other = math.sqrt(sum(float(np.sum(x * x)) for x in xs))
    if not (math.isfinite(ref) and math.isfinite(other)):
        return Distance(float("nan"))
    if ref == 0.0:
        return Distance(0.0, vacuous=True) if other == 0.0 else Distance(float("nan"), degenerate=True)
    worst = 0.0
    for x, y in zip(xs, ys, strict=True):
        scale = float(np.linalg.norm(y)) or ref
        worst = max(worst, float(np.linalg.norm(x - y)) / scale)
    return Distance(worst)


def max_rel_diff(a: Any, b: Any) -> float:
    """:func:`distance`'s value alone: NaN when the trees' shapes differ, a value is not finite or the reference is
    zero where ``a`` is not."""
    return distance(a, b).value


def hypergrad_errors(h: Any, ref: Any) -> dict[str, float]:
    """``hypergrad_rel_error`` (‖h − ref‖ / ‖ref‖ over the whole tree) and ``hypergrad_cosine``; NaN where a norm is
    zero. Where ``h`` has non-finite entries (an fp16 hypergradient that overflows even at loss scale 1) both are NaN
    (a record holds them as null) and ``hypergrad_nonfinite`` counts the entries, so that a reader never mistakes
    the missing error for a missing check."""
    a = np.concatenate([np.ravel(x).astype(np.float64) for x in tree_leaves(h)])
    b = np.concatenate([np.ravel(x).astype(np.float64) for x in tree_leaves(ref)])
    bad = int(np.size(a) - np.isfinite(a).sum())
    if bad:
        nan = float("nan")
        return {"hypergrad_rel_error": nan, "hypergrad_cosine": nan, "hypergrad_nonfinite": float(bad)}
    ref_norm, a_norm = np.linalg.norm(b), np.linalg.norm(a)
    return {
        "hypergrad_rel_error": float(np.linalg.norm(a - b) / ref_norm) if ref_norm > 0 else float("nan"),
        "hypergrad_cosine": float(a @ b / (a_norm * ref_norm)) if a_norm > 0 and ref_norm > 0 else float("nan"),
    }
