"""``none``: no hypergradient; the upper level is not trained.

For a paper's baselines (ERM, mixing, fine-tuning, a classifier filter, majority vote), which are task knobs run with
this method: the lower levels train as usual, the hypergradient and outer phases are skipped (``time_hypergrad_s`` and
``time_outer_s`` are absent), and nothing pretends to be a hypergradient.

Data parallel (``parallel.world_size``; where each reduction goes, backends/_torch_dist.py): the lower levels'
gradients only, averaged once per inner step.
"""

from __future__ import annotations

from mlo_bench.suite.contract import Method
from mlo_bench.suite.engine.trees import tree_zeros_like
from mlo_bench.suite.plugins.registry import register


@register("method")
class NoHypergradient(Method):
    name = "none"
    computes_hypergradient = False

    def response_vjp(self, backend, r, v, cfg):  # never called by a run; zero where a caller insists
        return tree_zeros_like(backend.ops, r.upper)
