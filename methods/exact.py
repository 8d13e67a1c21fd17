"""``exact``: materialise the lower level's Hessian (d×d) and solve — the O(d³) reference.

Data parallel (``parallel.world_size``; where each reduction goes, backends/_torch_dist.py): each rank forms the
Hessian with the loss's sums reduced inside it (torch: ``jacrev``, the d products' collectives batched into one
each), one all-reduce averages it, and every rank solves.
"""

from __future__ import annotations

from mlo_bench.suite.contract import Method
from mlo_bench.suite.engine.implicit import mixed_vjp
from mlo_bench.suite.engine.trees import ravel
from mlo_bench.suite.plugins.registry import register


@register("method")
class Exact(Method):
    name = "exact"
    materialises = True  # forms the d×d Hessian: O(d³) per hypergradient (``budget.max_d_materialised`` applies)

    def response_vjp(self, backend, r, v, cfg):
        ops = backend.ops
        flat, unravel = ravel(ops, r.lower)
        v_flat, _ = ravel(ops, v)
        hessian = backend.hessian(lambda z: r.loss(unravel(z), r.upper), flat)
        x = unravel(backend.solve(hessian, v_flat))
        return mixed_vjp(backend, r, x)
