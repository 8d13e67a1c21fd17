"""``darts``: the finite-difference form of DARTS's second-order approximation, H⁻¹ ≈ ξ·I.

eps = alpha / ‖v‖;  θ± = θ ± eps·v;  result = ξ · (∇_λ f(θ−, λ) − ∇_λ f(θ+, λ)) / (2·eps)  ≈ −ξ ∂²f/∂λ∂θ · v.
Costs two gradients, no Hessian-vector product.

``xi`` is Liu et al.'s inner-learning-rate factor (DARTS, ICLR 2019, eq. 7–8: the virtual step w' = w − ξ∇_w f
differentiated once, ∇_α L_val(w', α) − ξ ∇²_{α,w} f(w, α) ∇_{w'} L_val(w', α)). Betty's ``darts`` drops it
(``xi = 1``, the default): the same finite difference with the factor absent. One method with one knob rather than two
methods, because the two differ in that scalar only; original DARTS sets ``method.xi`` to the lower level's learning
rate. Under the default ``ordering=inner_first`` the lower level's real step is the look-ahead w' (the hypergradient
is taken at the state it reached); Liu et al. take the mixed derivative at w (before the virtual step) and the virtual
step with the optimizer's momentum and weight decay — differences of order ξ.

Data parallel (``parallel.world_size``; where each reduction goes, backends/_torch_dist.py): each of the two
perturbed gradients ∇_λ f(θ±, λ) is averaged over the ranks (two all-reduces of the upper level's size, plus the
loss sums inside them); the radius eps uses the replicated ‖v‖.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.contract import Method
from mlo_bench.suite.engine.trees import tree_axpy, tree_norm, tree_scale, tree_sub
from mlo_bench.suite.plugins.registry import register


@register("method")
class Darts(Method):
    name = "darts"

    @dataclass
    class Config:
        alpha: float = 0.01
        xi: float = 1.0

        def validate(self) -> None:
            if not self.alpha > 0:
                raise ValueError(f"method.alpha must be > 0 (got {self.alpha})")
            if not self.xi > 0:
                raise ValueError(f"method.xi must be > 0 (got {self.xi})")

    def gradients(self, cfg, unroll_steps):
        return 2  # ∇_λ f at θ + εv and at θ − εv

    def response_vjp(self, backend, r, v, cfg):
        eps = cfg.alpha / tree_norm(backend.ops, v)
        grad_upper = backend.grad(lambda lam, th: r.loss(th, lam))
        plus = grad_upper(r.upper, tree_axpy(eps, v, r.lower))
        minus = grad_upper(r.upper, tree_axpy(-eps, v, r.lower))
        return tree_scale(cfg.xi / (2.0 * eps), tree_sub(minus, plus))
