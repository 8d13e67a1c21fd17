"""``saba``: SABA — Stochastic Average Bilevel Algorithm (Dagréou, Ablin, Vaiter & Moreau, "A framework for bilevel
optimization that enables stochastic and global variance reduction algorithms", NeurIPS 2022, Algorithm 2).

SOBA's single-loop update with every stochastic oracle replaced by its SAGA estimate. Each level's data is split into
fixed minibatches (``Level.batches``: ``task.sampler=epoch``, benchmark_bilevel's sampler); per outer step, on this
step's batch i of the lower level and j of the top one, at the current (y, x, z) (f: the lower loss, g: the top loss;
the oracles and directions: :mod:`mlo_bench.suite.engine.variance_reduction`):

    o ← o_b − m_b + m̄;  m̄ ← m̄ + (o_b − m_b)/n;  m_b ← o_b     for each oracle o (b = i for ∇_y f, Hz, ∂²_xy f z;
                                                                b = j for ∇_y g, ∇_x g; n: that level's batches)
    y ← y − ρ ∇_y f,   z ← z − ρ (H z − ∇_y g),   x along ∇_x g − ∂²_xy f · z     (all from the same point: Jacobi)

with ρ the lower level's own SGD step (its optimizer's ``lr``; benchmark_bilevel's ``step_size`` 0.1) for y and
``method.rho`` (the same 0.1 there) for z; x takes the top level's optimizer step (``outer_ratio`` 1: the same 0.1).
The memories start at zero (benchmark_bilevel's ``init_memory="zero"``). SABA moves the lower level itself
(``steps_lower``: no separate inner step), so its y step uses the same variance-reduced ∇_y f — the reason it
converges at the rate of full-batch gradient descent on finite sums. State: y, z, the five memories (one row per
batch: (n_inner + 1) × |y| + … floats). Costs four gradient-like passes per step (``gradients``) besides the top
loss's own gradient. ``response_vjp`` (cold: z = 0, empty memories) is −∂²_xy f · 0 = 0, as Jacobi's first step is.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.engine import variance_reduction as vr
from mlo_bench.suite.engine.implicit import edge_top_loss
from mlo_bench.suite.engine.trees import tree_axpy, tree_map, tree_sub, tree_zeros_like
from mlo_bench.suite.plugins.registry import register


@register("method")
class SABA(vr.VarianceReduced):
    name = "saba"

    @dataclass
    class Config:
        rho: float = 0.1

        def validate(self) -> None:
            if not self.rho > 0:
                raise ValueError(f"method.rho must be > 0 (got {self.rho})")

    def gradients(self, cfg, unroll_steps):
        """∇_y f, the HVP and the mixed VJP (one reverse-over-reverse pass), ∇g."""
        return 4

    def init(self, backend, lower, cfg, upper=None, batches=None):
        ops = backend.ops
        slots_f, slots_g = vr.slots(backend, batches["lower"]), vr.slots(backend, batches["upper"])
        shaped = {"grad_y_f": (lower, slots_f), "hvp": (lower, slots_f), "cross": (upper, slots_f),
                  "grad_y_g": (lower, slots_g), "grad_x_g": (upper, slots_g)}
        return {"lower": tree_map(lambda a: a * 1.0, lower), "z": tree_zeros_like(ops, lower),
                "slots_f": slots_f, "slots_g": slots_g,
                "memory": {k: vr.memory(ops, tree, s) for k, (tree, s) in shaped.items()}}

    def update(self, backend, r, v, cfg):
        ops, state = backend.ops, r.method_state
        if r.batch_id is None or r.outer_batch_id is None:
            raise ValueError("saba needs each batch's number in its level's partition (task.sampler=epoch)")
        o = vr.oracles(backend, r.loss, edge_top_loss(backend, r, v), r.lower, r.upper, state["z"])
        hot = {"f": vr.one_hot(ops, state["slots_f"], r.batch_id), "g": vr.one_hot(ops, state["slots_g"],
                                                                                   r.outer_batch_id)}
        estimate, memory = {}, {}
        for key in (*vr.F_ORACLES, *vr.G_ORACLES):
            side = "f" if key in vr.F_ORACLES else "g"
            estimate[key], memory[key] = vr.saga(ops, o[key], state["memory"][key], hot[side])
        d = vr.directions(estimate)
        new = {**state, "lower": tree_axpy(-r.optimizer.lr, d["y"], r.lower),
               "z": tree_axpy(-cfg.rho, d["z"], state["z"]), "memory": memory}
        return tree_sub(d["x"], o["grad_x_g"]), new
