"""``darts``: Betty's finite-difference form, with H⁻¹ ≈ I and no inner-learning-rate factor.

eps = alpha / ‖v‖;  θ± = θ ± eps·v;  result = (∇_λ f(θ−, λ) − ∇_λ f(θ+, λ)) / (2·eps)  ≈ −∂²f/∂λ∂θ · v.
Costs two gradients, no Hessian-vector product.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.registry import register
from mlo_bench.suite.trees import tree_axpy, tree_norm, tree_scale, tree_sub


@register("method")
class Darts:
    name = "darts"

    @dataclass
    class Config:
        alpha: float = 0.01

        def validate(self) -> None:
            if not self.alpha > 0:
                raise ValueError(f"method.alpha must be > 0 (got {self.alpha})")

    def gradients(self, cfg, unroll_steps):
        return 2  # ∇_λ f at θ + εv and at θ − εv

    def response_vjp(self, backend, r, v, cfg):
        eps = cfg.alpha / tree_norm(backend.ops, v)
        grad_upper = backend.grad(lambda lam, th: r.loss(th, lam))
        plus = grad_upper(r.upper, tree_axpy(eps, v, r.lower))
        minus = grad_upper(r.upper, tree_axpy(-eps, v, r.lower))
        return tree_scale(1.0 / (2.0 * eps), tree_sub(minus, plus))
