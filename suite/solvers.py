"""Matrix-free linear solvers on pytrees: every solver is ``solve(matvec, b)`` (the jaxopt reduction).

``matvec`` applies a symmetric positive-definite operator (here: a Hessian, through Hessian-vector products).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from suite.trees import tree_axpy, tree_scale, tree_vdot, tree_zeros_like

Tree = Any


def _safe_div(ops: Any, a: Any, b: Any) -> Any:
    nonzero = b != 0
    return ops.where(nonzero, a / ops.where(nonzero, b, b * 0 + 1), a * 0)


def cg(ops: Any, matvec: Callable[[Tree], Tree], b: Tree, iterations: int) -> Tree:
    """``iterations`` steps of conjugate gradient on ``A x = b`` from ``x = 0``.

    The search direction is built from the *new* residual (the bug in betty-ml 0.2.1 used the old one). A direction
    whose curvature is exactly zero (converged) contributes nothing instead of producing NaN.
    """
    x = tree_zeros_like(ops, b)
    r = b
    p = b
    rs = tree_vdot(ops, r, r)
    for _ in range(iterations):
        ap = matvec(p)
        step = _safe_div(ops, rs, tree_vdot(ops, p, ap))
        x = tree_axpy(step, p, x)
        r = tree_axpy(-step, ap, r)
        rs_new = tree_vdot(ops, r, r)
        p = tree_axpy(_safe_div(ops, rs_new, rs), p, r)
        rs = rs_new
    return x


def neumann(ops: Any, matvec: Callable[[Tree], Tree], b: Tree, iterations: int, alpha: float) -> Tree:
    """Truncated Neumann series ``alpha · Σ_{j=0..K} (I − alpha·A)^j b`` (Betty's form, K = ``iterations``).

    Converges to ``A⁻¹ b`` when ``0 < alpha < 2 / λ_max(A)``; the error shrinks like ``(1 − alpha·λ_min)^(K+1)``.
    """
    term = b
    total = b
    for _ in range(iterations):
        term = tree_axpy(-alpha, matvec(term), term)
        total = tree_axpy(1.0, term, total)
    return tree_scale(alpha, total)
