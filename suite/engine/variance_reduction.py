"""The pieces shared by the variance-reduced bilevel solvers (``saba``, ``srba``; Dagréou et al. 2022, 2023): the
five stochastic oracles of one step and SAGA's per-minibatch memory, written once against the ops protocol.

At a point (y, x, z) — the lower level y, the upper x, the linear-system variable z ≈ H⁻¹∇_y g — on one batch of
each level (f: the lower loss, g: the top loss):

    ∇_y f,   H z = ∇²_yy f · z,   ∂²_xy f · z,   ∇_y g,   ∇_x g

and the solver's three directions are

    d_y = ∇_y f,   d_z = H z − ∇_y g,   d_x = ∇_x g − ∂²_xy f · z       (y ← y − ρ d_y, z ← z − ρ d_z, x along d_x)

each oracle replaced by its variance-reduced estimate (SAGA: :func:`saga`; SARAH: ``srba``'s recursion). H z and the
cross term come from one reverse-over-reverse pass (∇_(y, x) ⟨∇_y f(y, x), z⟩), so a step costs four gradient-like
passes: ∇_y f, that pass (counted as two, an HVP and a mixed VJP, as the suite counts them), ∇g.
"""

from __future__ import annotations

from typing import Any

from mlo_bench.suite.contract.method import Method
from mlo_bench.suite.engine.implicit import edge_top_loss
from mlo_bench.suite.engine.trees import tree_axpy, tree_map, tree_sub, tree_vdot, tree_zeros_like

Tree = Any
#: the oracles of one step, by name; the first three read the lower level's batch, the last two the top level's
F_ORACLES, G_ORACLES = ("grad_y_f", "hvp", "cross"), ("grad_y_g", "grad_x_g")


def oracles(backend: Any, f: Any, g: Any, y: Tree, x: Tree, z: Tree) -> dict[str, Tree]:
    """The five oracles at (y, x, z): ``f(y, x)`` and ``g(y, x)`` the two losses on their batches."""
    grad_y = backend.grad(lambda th, lam: f(th, lam))
    second = backend.grad(lambda p: tree_vdot(backend.ops, grad_y(p["y"], p["x"]), z))({"y": y, "x": x})
    first = backend.grad(lambda p: g(p["y"], p["x"]))({"y": y, "x": x})
    return {"grad_y_f": grad_y(y, x), "hvp": second["y"], "cross": second["x"],
            "grad_y_g": first["y"], "grad_x_g": first["x"]}


def directions(o: dict[str, Tree]) -> dict[str, Tree]:
    """``{"y": d_y, "z": d_z, "x": d_x}`` from (estimates of) the five oracles."""
    return {"y": o["grad_y_f"], "z": tree_sub(o["hvp"], o["grad_y_g"]), "x": tree_sub(o["grad_x_g"], o["cross"])}


def slots(backend: Any, n: int) -> Any:
    """``[0, 1, …, n−1]`` as a backend float array: compared with a batch's number it makes the batch's one-hot."""
    import numpy as np

    return backend.asarray(np.arange(n, dtype=np.float64))


def one_hot(ops: Any, slots_: Any, batch_id: Any) -> Any:
    return ops.where(slots_ == batch_id, ops.ones_like(slots_), ops.zeros_like(slots_))


def memory(ops: Any, tree: Tree, slots_: Any) -> dict[str, Tree]:
    """SAGA's memory of an oracle shaped like ``tree``: one zero row per minibatch (``table``) and their ``mean``
    (benchmark_bilevel's default ``init_memory="zero"``)."""
    n = slots_.shape[0]
    return {"table": tree_map(lambda a: ops.reshape(ops.zeros_like(a), (1, -1)) * ops.reshape(slots_ * 0, (n, 1)),
                              tree),
            "mean": tree_map(ops.zeros_like, tree)}


def saga(ops: Any, g: Tree, mem: dict[str, Tree], hot: Any) -> tuple[Tree, dict[str, Tree]]:
    """SAGA's estimate of the mean over minibatches from this batch's oracle ``g`` (``hot``: its one-hot):
    ``g − m_b + m̄``; then m̄ ← m̄ + (g − m_b)/n and m_b ← g. Rows are flat (``memory``), so every leaf shape works."""
    n = hot.shape[0]
    col = ops.reshape(hot, (n, 1))

    def row(table: Any, leaf: Any) -> Any:
        return ops.reshape(ops.matmul(hot, table), tuple(leaf.shape))

    old = tree_map(row, mem["table"], g)
    diff = tree_sub(g, old)
    estimate = tree_map(lambda d, m: d + m, diff, mem["mean"])
    table = tree_map(lambda t, d: t + col * ops.reshape(d, (1, -1)), mem["table"], diff)
    return estimate, {"table": table, "mean": tree_axpy(1.0 / n, diff, mem["mean"])}


class VarianceReduced(Method):
    """The shape ``saba`` and ``srba`` share: they move the lower level themselves, read the upper level's shape and
    the levels' fixed minibatches at ``init``, and their cold ``response_vjp`` is the first Jacobi step's from z = 0
    with empty memories — ∇_x g − ∂²_xy f · 0 − ∇_x g = 0 (the chain adds the top loss's own ∇_x g back)."""

    steps_lower = True
    init_reads_upper = True
    init_reads_batches = True

    def response_vjp(self, backend: Any, r: Any, v: Tree, cfg: Any) -> Tree:
        zero = tree_zeros_like(backend.ops, r.lower)
        o = oracles(backend, r.loss, edge_top_loss(backend, r, v), r.lower, r.upper, zero)
        return tree_sub(directions(o)["x"], o["grad_x_g"])
