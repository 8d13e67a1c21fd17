"""``anograd``: aligned, normalised gradients (Grangier et al. 2024): the upper level descends
−⟨g(λ), ∇_θ g_up⟩ / ‖g(λ)‖ with g(λ) = ∇_θ f(θ, λ), the lower level's gradient (whose λ-dependence is the weights).

Its λ-gradient is −(∂g/∂λ)ᵀ P v / ‖g‖ with P = I − ĝĝᵀ (ĝ = g / ‖g‖, v = ∇_θ g_up): the mixed VJP
(:func:`mlo_bench.suite.engine.implicit.mixed_vjp`, which is −(∂g/∂λ)ᵀ x) applied to x = (v − ⟨ĝ, v⟩ĝ) / ‖g‖. One
gradient and one reverse-over-reverse product; no Hessian-vector product. It maximises the cosine between the two
gradients, so its scale is free of the lower level's learning rate (no knob).

Data parallel (``parallel.world_size``; where each reduction goes, backends/_torch_dist.py): the lower gradient g(λ)
and the mixed VJP, each averaged once; ‖g‖ is taken of the replicated average.
"""

from __future__ import annotations

from mlo_bench.suite.contract import Method
from mlo_bench.suite.engine.implicit import mixed_vjp
from mlo_bench.suite.engine.trees import tree_axpy, tree_scale, tree_vdot
from mlo_bench.suite.plugins.registry import register


@register("method")
class AnoGrad(Method):
    name = "anograd"

    def response_vjp(self, backend, r, v, cfg):
        ops = backend.ops
        g = backend.grad(r.loss)(r.lower, r.upper)
        sq = tree_vdot(ops, g, g)
        inv = 1.0 / ops.sqrt(sq + 1e-30)
        x = tree_axpy(-tree_vdot(ops, g, v) / sq, g, v)  # v − ⟨g, v⟩ g / ‖g‖²
        return mixed_vjp(backend, r, tree_scale(inv, x))
