"""``dds``: one soft-weighted SGD step looked through (Grangier et al. 2024's "DDS"/"soft" weight-model update).

θ' = θ − η ∇_θ f(θ, λ) with f the lower loss whose λ-dependence is the soft weights; the upper loss's gradient at θ'
w.r.t. λ is −η (∂²f/∂λ∂θ)ᵀ ∇_θ g — so the best-response VJP is approximated by ``mixed_vjp(η v)``: H⁻¹ ≈ η I,
one reverse-over-reverse product, no Hessian-vector product. ``method.lr`` is η (the paper's 0.1).

Where the paper evaluates ∇_θ g at θ' (the look-ahead parameters), the suite's chain hands every method v = ∇_θ g at
the lower level's state after this outer step's inner phase (θ_{t+1}, the model after its plain step on the
filtered batch): both are θ_t moved by one step along the (sampled or soft-weighted) generic gradient, and they differ
by O(η²). On a lower level with plain SGD at learning rate η and one inner step, ``unroll`` differentiates exactly the
step taken (its graph kept): that is the paper's DDS to the letter, at the cost of keeping the inner graph.

Data parallel (``parallel.world_size``; where each reduction goes, backends/_torch_dist.py): one averaged mixed VJP
(reverse over reverse).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.contract import Method
from mlo_bench.suite.engine.implicit import mixed_vjp
from mlo_bench.suite.engine.trees import tree_scale
from mlo_bench.suite.plugins.registry import register


@register("method")
class DDS(Method):
    name = "dds"

    @dataclass
    class Config:
        lr: float = 0.1

        def validate(self) -> None:
            if not self.lr > 0:
                raise ValueError(f"method.lr must be > 0 (got {self.lr})")

    def response_vjp(self, backend, r, v, cfg):
        return mixed_vjp(backend, r, tree_scale(cfg.lr, v))
