"""``srba``: SRBA — Stochastic Recursive Bilevel Algorithm (Dagréou, Moreau, Vaiter & Ablin, "A Lower Bound and a
Near-Optimal Algorithm for Bilevel Empirical Risk Minimization", AISTATS 2024, arXiv:2302.08766, Algorithm 1).

SOBA's single-loop update with SARAH's recursive estimates of its three directions (the oracles and directions:
:mod:`mlo_bench.suite.engine.variance_reduction`; f: the lower loss, g: the top loss). Every ``period`` outer steps the
directions are computed afresh on the whole data; in between, on this step's batches, from the same batch at the
current point and at the previous one:

    d ← D(y, x, z; whole data)                                   at a restart (outer step 0, period, 2·period, …)
    d ← d + D(y, x, z; batch) − D(y_prev, x_prev, z_prev; batch)  otherwise

    y ← y − ρ d_y,   z ← z − ρ d_z,   x along d_x      (D = (∇_y f, Hz − ∇_y g, ∇_x g − ∂²_xy f·z))

with ρ the lower level's own SGD step (its optimizer's ``lr``) for y and ``method.rho`` for z; x takes the top level's
optimizer step. ``method.period`` 0 (the default) is benchmark_bilevel's (n_inner + n_outer)·128/batch_size, written
128 × (the levels' minibatches, ``Level.batches``): 4,096 outer steps on the quadratic, 2,560 on data cleaning — so a
1,000-step run restarts once, at step 0. The branch is taken on the value (``linear_solvers.cond``: ``lax.cond`` on
jax), so a recursive step costs eight gradient-like passes (``gradients``) and a restart four on the whole data.
SRBA moves the lower level itself (``steps_lower``). State: y, z, the previous point, the directions, the steps since
the restart. ``response_vjp`` (cold: z = 0) is 0, as the first step's ∇_x g − ∂²_xy f·0 − ∇_x g is.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.engine import variance_reduction as vr
from mlo_bench.suite.engine.implicit import edge_top_loss
from mlo_bench.suite.engine.linear_solvers import cond
from mlo_bench.suite.engine.trees import tree_add, tree_axpy, tree_leaves, tree_map, tree_sub, tree_zeros_like
from mlo_bench.suite.plugins.registry import register

#: benchmark_bilevel's ``period_frac``: the restart period in epochs' worth of minibatches of both levels
PERIOD_FRAC = 128


@register("method")
class SRBA(vr.VarianceReduced):
    name = "srba"

    @dataclass
    class Config:
        rho: float = 0.1
        #: outer steps between full-batch restarts; 0: benchmark_bilevel's (module docstring)
        period: int = 0

        def validate(self) -> None:
            if not self.rho > 0:
                raise ValueError(f"method.rho must be > 0 (got {self.rho})")
            if self.period < 0:
                raise ValueError(f"method.period must be >= 1, or 0 for benchmark_bilevel's (got {self.period})")

    def gradients(self, cfg, unroll_steps):
        """The four passes of the oracles at the current point and four at the previous one (a recursive step)."""
        return 8

    def init(self, backend, lower, cfg, upper=None, batches=None):
        ops = backend.ops
        zero = ops.sum(ops.zeros_like(tree_leaves(lower)[0])) * 0.0
        period = cfg.period or PERIOD_FRAC * (batches["lower"] + batches["upper"])
        copy = lambda t: tree_map(lambda a: a * 1.0, t)  # noqa: E731
        z = tree_zeros_like(ops, lower)
        return {"lower": copy(lower), "z": z, "prev": {"y": copy(lower), "x": copy(upper), "z": z},
                "d": {"y": z, "z": z, "x": tree_zeros_like(ops, upper)}, "k": zero, "period": zero + float(period)}

    def update(self, backend, r, v, cfg):
        ops, state = backend.ops, r.method_state
        g = edge_top_loss(backend, r, v)
        here = (r.lower, r.upper, state["z"])

        def restart(_):  # the directions on the whole data; ∇_x g on this step's batch for the chain's direct term
            f_all = r.whole_loss if r.whole_loss is not None else r.loss
            g_all = r.whole_outer_loss if r.whole_outer_loss is not None else g
            grad_x_g = backend.grad(lambda lam: g(r.lower, lam))(r.upper)
            return vr.directions(vr.oracles(backend, f_all, g_all, *here)), grad_x_g

        def recursive(_):
            prev = state["prev"]
            o = vr.oracles(backend, r.loss, g, *here)
            before = vr.directions(vr.oracles(backend, r.loss, g, prev["y"], prev["x"], prev["z"]))
            return tree_add(state["d"], tree_sub(vr.directions(o), before)), o["grad_x_g"]

        d, grad_x_g = cond(ops, state["k"] == 0, restart, recursive, None)
        k = state["k"] + 1.0
        new = {**state, "lower": tree_axpy(-r.optimizer.lr, d["y"], r.lower),
               "z": tree_axpy(-cfg.rho, d["z"], state["z"]),
               "prev": {"y": r.lower, "x": r.upper, "z": state["z"]}, "d": d,
               "k": ops.where(k >= state["period"], k * 0.0, k)}
        return tree_sub(d["x"], grad_x_g), new
