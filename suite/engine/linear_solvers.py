"""Matrix-free linear solvers on pytrees: every solver is ``solve(matvec, b)`` (the jaxopt reduction).

``matvec`` applies a symmetric operator (here: a Hessian, through Hessian-vector products), positive definite where
the lower level is strongly convex; :func:`cg` can stop at negative curvature where it is not.
Iterations go through :func:`fori_loop`, so a tracing backend (JAX) compiles the loop body once instead of unrolling
it: compile time does not grow with the number of iterations, and there is still one implementation per solver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlo_bench.suite.engine.trees import tree_axpy, tree_scale, tree_vdot, tree_zeros_like

Tree = Any


def _safe_div(ops: Any, a: Any, b: Any) -> Any:
    nonzero = b != 0
    return ops.where(nonzero, a / ops.where(nonzero, b, b * 0 + 1), a * 0)


def fori_loop(ops: Any, iterations: int, body: Callable[[int, Any], Any], init: Any) -> Any:
    """``body`` applied ``iterations`` times to the carry: the backend's ``ops.fori_loop`` where it has one (e.g.
    ``jax.lax.fori_loop``), a Python loop otherwise."""
    loop = getattr(ops, "fori_loop", None)
    if loop is not None:
        return loop(0, iterations, body, init)
    carry = init
    for i in range(iterations):
        carry = body(i, carry)
    return carry


def cond(ops: Any, pred: Any, true_fn: Callable[[Any], Any], false_fn: Callable[[Any], Any], operand: Any) -> Any:
    """``true_fn(operand)`` where the 0-d boolean ``pred`` holds, else ``false_fn(operand)``, only the branch taken
    computed: the backend's ``ops.cond`` where it has one (``jax.lax.cond``: both branches traced, one run), Python's
    ``if`` on the value otherwise (an eager backend)."""
    branch = getattr(ops, "cond", None)
    if branch is not None:
        return branch(pred, true_fn, false_fn, operand)
    return true_fn(operand) if bool(pred) else false_fn(operand)


def cg(ops: Any, matvec: Callable[[Tree], Tree], b: Tree, iterations: int, x0: Tree | None = None,
       stop_on_negative_curvature: bool = False) -> Tree:
    """``iterations`` steps of conjugate gradient on ``A x = b`` from ``x0`` (default ``x = 0``; a warm start passes
    the previous solution).

    The search direction is built from the *new* residual (the bug in betty-ml 0.2.1 used the old one). A direction
    whose curvature is exactly zero (converged) contributes nothing instead of producing NaN.

    CG assumes ``A`` positive definite. On an indefinite ``A`` (a non-convex lower level away from its minimum) a
    direction with ``pᵀAp ≈ 0`` can make a step of any size: the iterates blow up and round-off decides the result.
    ``stop_on_negative_curvature`` (Steihaug's rule, as in Newton-CG) keeps ``x`` from the first direction whose
    curvature is not positive on: it never triggers on a positive-definite ``A``, where the two modes agree exactly.
    """

    def body(_: int, carry: tuple) -> tuple:
        x, r, p, rs, live = carry  # live: 1, or 0 for good from the first non-positive curvature when stopping there
        ap = matvec(p)
        pap = tree_vdot(ops, p, ap)
        if stop_on_negative_curvature:
            live = ops.where(pap > 0, live, live * 0)
        step = live * _safe_div(ops, rs, pap)  # × 1 is exact: classic CG's numbers are unchanged
        x = tree_axpy(step, p, x)
        r = tree_axpy(-step, ap, r)
        rs_new = tree_vdot(ops, r, r)
        p = tree_axpy(_safe_div(ops, rs_new, rs), p, r)
        return x, r, p, rs_new, live

    if x0 is None:
        x, r = tree_zeros_like(ops, b), b
    else:
        x, r = x0, tree_axpy(-1.0, matvec(x0), b)
    rs = tree_vdot(ops, r, r)
    return fori_loop(ops, iterations, body, (x, r, r, rs, rs * 0 + 1))[0]


def neumann(ops: Any, matvec: Callable[[Tree], Tree], b: Tree, iterations: int, alpha: float,
            x0: Tree | None = None) -> Tree:
    """Truncated Neumann series ``alpha · Σ_{j=0..K} (I − alpha·A)^j b`` (Betty's form, K = ``iterations``).

    Converges to ``A⁻¹ b`` when ``0 < alpha < 2 / λ_max(A)``; the error shrinks like ``(1 − alpha·λ_min)^(K+1)``.
    The series is K+1 Richardson steps ``x ← x + alpha·(b − A x)`` from ``x = 0``; ``x0`` starts them from a previous
    solution instead (a warm start: the error then shrinks from that of ``x0``). Without ``x0`` the series form is
    evaluated (one matvec per term, as Betty).
    """
    if x0 is not None:
        def richardson(_: int, x: Tree) -> Tree:
            return tree_axpy(alpha, tree_axpy(-1.0, matvec(x), b), x)

        return fori_loop(ops, iterations + 1, richardson, x0)

    def body(_: int, carry: tuple) -> tuple:
        term, total = carry
        term = tree_axpy(-alpha, matvec(term), term)
        return term, tree_axpy(1.0, term, total)

    return tree_scale(alpha, fori_loop(ops, iterations, body, (b, b))[1])
