"""``f2sa``: F2SA — Fully First-order Stochastic Approximation (Kwon, Kwon, Wright & Nowak, "A Fully First-Order
Method for Stochastic Bilevel Optimization", ICML 2023, Algorithm 1). No Hessian-vector product anywhere.

With f the lower loss and g the top loss, F2SA replaces the bilevel problem by the penalty
L_λ(x, y, z) = g(x, y) + λ (f(x, y) − f(x, z)) with a multiplier λ that grows. Per outer step:

    z ← z − η ∇_z f(x, z)                         the lower level's own SGD (the run's ``inner_steps``), z ≈ y*(x)
    y ← y − α_t (∇_y g(x, y) + λ ∇_y f(x, y))      K times (K = ``method.penalty_steps``)
    d = ∇_x g(x, y) + λ (∇_x f(x, y) − ∇_x f(x, z))   the top level's direction
    λ ← λ + δ_t                                   (from λ₀ = ``method.lmbda0``)

with α_t = α/(t+1)^(5/7) and δ_t = δ/(t+1)^(1/7) at outer step t (α = ``method.penalty_lr``, δ =
``method.delta_lmbda``; the exponents are ``method.penalty_power`` / ``method.lmbda_power``): benchmark_bilevel's
schedule, under which α_t λ_t grows only like t^(1/7) (constant steps with λ growing linearly diverge: measured on
``bilevel_quadratic`` at its defaults, torch float64, non-finite before outer step 200). y, λ and t are the method
state (y starts at the lower level's initial parameters). ``response_vjp`` returns d − ∇_x g(x, z) (the chain adds
the top loss's own gradient at the current lower level back). Defaults are benchmark_bilevel's F2SA:
``step_size`` 0.01 (α here), ``lmbda0`` 1, ``delta_lmbda`` 0.1, ``n_inner_steps`` 10 (K). Its z and x steps decay
too (by t^(−4/7)); here they are the levels' own optimizers' (constant) steps, and the K penalty steps share the lower
level's last batch. On an edge below the top
one the top loss is not a function of the edge's two levels; there g(x, y) is replaced by its linearisation
⟨v, y − θ⟩ at the lower level's current θ (v: the vector pushed down the chain). Costs K + 1 gradients per edge.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.contract import Method
from mlo_bench.suite.engine.implicit import edge_top_loss
from mlo_bench.suite.engine.linear_solvers import fori_loop
from mlo_bench.suite.engine.trees import tree_leaves, tree_map
from mlo_bench.suite.plugins.registry import register


@register("method")
class F2SA(Method):
    name = "f2sa"

    @dataclass
    class Config:
        penalty_lr: float = 0.01
        penalty_steps: int = 10
        lmbda0: float = 1.0
        delta_lmbda: float = 0.1
        penalty_power: float = 5 / 7
        lmbda_power: float = 1 / 7

        def validate(self) -> None:
            if not self.penalty_lr > 0:
                raise ValueError(f"method.penalty_lr must be > 0 (got {self.penalty_lr})")
            if self.penalty_steps < 1:
                raise ValueError(f"method.penalty_steps must be >= 1 (got {self.penalty_steps})")
            if not self.lmbda0 > 0:
                raise ValueError(f"method.lmbda0 must be > 0 (got {self.lmbda0})")
            if self.delta_lmbda < 0:
                raise ValueError(f"method.delta_lmbda must be >= 0 (got {self.delta_lmbda})")
            for key in ("penalty_power", "lmbda_power"):
                if not 0 <= getattr(self, key) <= 1:
                    raise ValueError(f"method.{key} must be in [0, 1] (got {getattr(self, key)})")

    def gradients(self, cfg, unroll_steps):
        """K penalty gradients in y and one in x."""
        return int(cfg.penalty_steps) + 1

    def init(self, backend, lower, cfg):
        ops = backend.ops
        zero = ops.sum(ops.zeros_like(tree_leaves(lower)[0])) * 0.0
        return {"y": tree_map(lambda a: a * 1.0, lower), "lmbda": zero + cfg.lmbda0, "t": zero}

    def _step(self, backend, r, v, cfg, state):
        g, f, lmbda, t = edge_top_loss(backend, r, v), r.loss, state["lmbda"], state["t"]
        lr = cfg.penalty_lr / (t + 1.0) ** cfg.penalty_power
        grad_y = backend.grad(lambda y, lam: g(y, lam) + lmbda * f(y, lam))

        def body(_, y):
            return tree_map(lambda a, b: a - lr * b, y, grad_y(y, r.upper))

        y = fori_loop(backend.ops, cfg.penalty_steps, body, state["y"])
        z = r.lower

        def gap(lam):
            return g(y, lam) - g(z, lam) + lmbda * (f(y, lam) - f(z, lam))

        step = cfg.delta_lmbda / (t + 1.0) ** cfg.lmbda_power
        return backend.grad(gap)(r.upper), {"y": y, "lmbda": lmbda + step, "t": t + 1.0}

    def update(self, backend, r, v, cfg):
        return self._step(backend, r, v, cfg, r.method_state)

    def response_vjp(self, backend, r, v, cfg):
        return self._step(backend, r, v, cfg, self.init(backend, r.lower, cfg))[0]
