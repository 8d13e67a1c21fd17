"""``ma_soba``: MA-SOBA — SOBA with a moving average of the hypergradient (Chen, Xu & Zhang, "Optimal Algorithms for
Stochastic Bilevel Optimization under Relaxed Smoothness Conditions", 2023, arXiv:2306.12067, Algorithm 1).

Per outer step, after the lower level's own SGD step on y (f: the lower loss, g: the top loss):

    z ← z − ρ (H z − ∇_y g)                 SOBA's linear-system variable, one HVP (``soba``'s step, reused)
    h = ∇_x g − (∂²f/∂x∂y) z                the hypergradient estimate at (x, y, z)
    w ← (1 − β) w + β h                     the moving average (β = ``method.beta``)

and the top level's optimizer steps along w (x ← x − γ w with plain SGD). The average is what lets the paper prove
the optimal O(ε⁻²) sample complexity without second-order smoothness of the upper level. ``z`` and ``w`` are the
method state (``init_reads_upper``: w is shaped like the upper level); w is used after its update, z after its step
(``soba``'s Gauss–Seidel order). On an edge below the top one (a chain of three or more levels) the top loss of that
edge is not a function of its two levels, so the average is taken of the response term alone there. Costs one HVP,
one mixed VJP and the gradient ∇_x g per edge. Defaults: ρ = 0.1 (benchopt's SOBA ``step_size``); β = 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.methods.soba import SOBA
from mlo_bench.suite.engine.implicit import mixed_vjp
from mlo_bench.suite.engine.trees import tree_add, tree_axpy, tree_sub, tree_zeros_like
from mlo_bench.suite.plugins.registry import register


@register("method")
class MASOBA(SOBA):
    name = "ma_soba"
    init_reads_upper = True

    @dataclass
    class Config:
        rho: float = 0.1
        beta: float = 0.1

        def validate(self) -> None:
            if not self.rho > 0:
                raise ValueError(f"method.rho must be > 0 (got {self.rho})")
            if not 0 < self.beta <= 1:
                raise ValueError(f"method.beta must be in (0, 1] (got {self.beta})")

    def gradients(self, cfg, unroll_steps):
        """One Hessian-vector product, one mixed VJP and the top loss's gradient in x."""
        return 3

    def init(self, backend, lower, cfg, upper=None):
        if upper is None:
            raise TypeError("ma_soba's state needs the upper level's parameters (init(..., upper=...))")
        return {"z": tree_zeros_like(backend.ops, lower), "w": tree_zeros_like(backend.ops, upper)}

    def _average(self, backend, r, v, cfg, state):
        z = self._step(backend, r, v, cfg, state["z"])
        h = mixed_vjp(backend, r, z)
        direct = None
        if r.outer_loss is not None:
            direct = backend.grad(lambda lam: r.outer_loss(r.lower, lam))(r.upper)
            h = tree_add(direct, h)
        w = tree_axpy(cfg.beta, tree_sub(h, state["w"]), state["w"])  # (1 − β) w + β h
        out = w if direct is None else tree_sub(w, direct)  # the chain adds ∇_x g back
        return out, {"z": z, "w": w}

    def update(self, backend, r, v, cfg):
        return self._average(backend, r, v, cfg, r.method_state)

    def response_vjp(self, backend, r, v, cfg):
        return self._average(backend, r, v, cfg, self.init(backend, r.lower, cfg, upper=r.upper))[0]


