"""``mrbo``: MRBO — Momentum-based Recursive Bilevel Optimizer (Yang, Ji & Liang, "Provably Faster Algorithms for
Bilevel Optimization", NeurIPS 2021, Algorithm 1), as benchmark_bilevel runs it.

STORM-type momentum estimators of both levels' directions, each corrected by the same batch's oracle at the previous
iterate (f: the lower loss, g: the top loss; at outer step t, on this step's batches):

    d_y ← ∇_y f(y, x) + (1 − η_t)(d_y − ∇_y f(y', x'))                 y' , x': the previous iterate
    h(y, x) = ∇_x g − ∂²_xy f · z,  z = α Σ_{j<P} (I − αH)^j ∇_y g     (StocBiO's series; P = ``method.iterations``)
    d_x ← h(y, x) + (1 − η_t)(d_x − h(y', x'))
    y ← y − ρ_t d_y,   x along γ_t d_x

with benchmark_bilevel's schedules ρ_t = ρ/(t+1)^(1/3) (ρ the lower level's SGD ``lr``), η_t = η/(t+1)^(2/3) (η =
``method.eta`` 0.5) and γ_t = γ/(t+1)^(1/3): the method hands the top level's optimizer (γ = its plain SGD ``lr``)
the direction scaled by (t+1)^(−1/3), so the step taken is γ_t d_x. P = 10 and α = ``method.alpha`` 0.1 (its
``n_shia_steps`` and ``step_size``). The previous iterate starts at the initial one (benchmark_bilevel's memories start
at zero), so the first directions are η·∇_y f and η·h. Its series draws a fresh batch per term there; here the P
terms share the step's lower batch (as ``stocbio``'s); at α = 0.1 the 10 terms underestimate H⁻¹ tenfold where the
curvature is 0.1 — on the small quadratic the default stalls at 1.4× its initial gap, α = 1 reaches 0.27× of it in
600 steps (docs/solvers.md). MRBO moves the lower level itself (``steps_lower``); it needs
no fixed minibatches. Costs 2(P + 2) gradient-like passes per step (both points: ∇_y f, ∇g, P − 1 HVPs and
one mixed VJP each). ``response_vjp`` (cold: the previous iterate the current one, t = 0) is η·h − ∇_x g.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mlo_bench.suite.contract import Method
from mlo_bench.suite.engine.implicit import edge_top_loss, hessian_matvec, mixed_vjp
from mlo_bench.suite.engine.linear_solvers import neumann
from mlo_bench.suite.engine.trees import tree_add, tree_axpy, tree_leaves, tree_map, tree_scale, tree_sub
from mlo_bench.suite.plugins.registry import register


@register("method")
class MRBO(Method):
    name = "mrbo"
    steps_lower = True
    init_reads_upper = True

    @dataclass
    class Config:
        eta: float = 0.5
        iterations: int = 10
        alpha: float = 0.1

        def validate(self) -> None:
            if not 0 < self.eta <= 1:
                raise ValueError(f"method.eta must be in (0, 1] (got {self.eta})")
            if self.iterations < 1:
                raise ValueError(f"method.iterations must be >= 1 (got {self.iterations})")
            if not self.alpha > 0:
                raise ValueError(f"method.alpha must be > 0 (got {self.alpha})")

    def gradients(self, cfg, unroll_steps):
        """At the current and the previous iterate: ∇_y f, ∇g, P − 1 HVPs, one mixed VJP."""
        return 2 * (int(cfg.iterations) + 2)

    def init(self, backend, lower, cfg, upper=None):
        ops = backend.ops
        copy = lambda t: tree_map(lambda a: a * 1.0, t)  # noqa: E731
        zero = ops.sum(ops.zeros_like(tree_leaves(lower)[0])) * 0.0
        return {"lower": copy(lower), "prev": {"y": copy(lower), "x": copy(upper)},
                "d_y": tree_map(ops.zeros_like, lower), "d_x": tree_map(ops.zeros_like, upper), "t": zero}

    def _estimates(self, backend, r, g, cfg):
        """(∇_y f, h, ∇_x g) at the response's point: h = ∇_x g − ∂²_xy f · z with StocBiO's series z."""
        grads = backend.grad(lambda p: g(p["y"], p["x"]))({"y": r.lower, "x": r.upper})
        z = neumann(backend.ops, hessian_matvec(backend, r), grads["y"], cfg.iterations - 1, cfg.alpha)
        grad_y_f = backend.grad(lambda th: r.loss(th, r.upper))(r.lower)
        return grad_y_f, tree_add(grads["x"], mixed_vjp(backend, r, z)), grads["x"]

    def _step(self, backend, r, v, cfg, state):
        g, t = edge_top_loss(backend, r, v), state["t"]
        prev = dataclasses.replace(r, lower=state["prev"]["y"], upper=state["prev"]["x"])
        gy, h, grad_x_g = self._estimates(backend, r, g, cfg)
        gy_old, h_old, _ = self._estimates(backend, prev, g, cfg)
        keep = 1.0 - cfg.eta / (t + 1.0) ** (2 / 3)
        d_y = tree_add(gy, tree_scale(keep, tree_sub(state["d_y"], gy_old)))
        d_x = tree_add(h, tree_scale(keep, tree_sub(state["d_x"], h_old)))
        lr = r.optimizer.lr / (t + 1.0) ** (1 / 3)
        new = {"lower": tree_axpy(-lr, d_y, r.lower), "prev": {"y": r.lower, "x": r.upper},
               "d_y": d_y, "d_x": d_x, "t": t + 1.0}
        return tree_sub(tree_scale(1.0 / (t + 1.0) ** (1 / 3), d_x), grad_x_g), new

    def update(self, backend, r, v, cfg):
        return self._step(backend, r, v, cfg, r.method_state)

    def response_vjp(self, backend, r, v, cfg):
        return self._step(backend, r, v, cfg, self.init(backend, r.lower, cfg, upper=r.upper))[0]
