"""``first_order``: drop the best-response term (DARTS' first-order approximation, dθ*/dλ ≈ 0).

The hypergradient reduces to the top loss's direct gradient ∂g/∂λ: the cheapest baseline, exact only when the
lower level does not depend on λ.

Data parallel (``parallel.world_size``; where each reduction goes, backends/_torch_dist.py): the top loss's gradient
only, averaged once.
"""

from __future__ import annotations

from mlo_bench.suite.contract import Method
from mlo_bench.suite.engine.trees import tree_zeros_like
from mlo_bench.suite.plugins.registry import register


@register("method")
class FirstOrder(Method):
    name = "first_order"

    def gradients(self, cfg, unroll_steps):
        return 0  # the top loss's direct gradient only

    def response_vjp(self, backend, r, v, cfg):
        return tree_zeros_like(backend.ops, r.upper)
