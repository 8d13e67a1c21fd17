"""``unroll``: reverse mode through the lower levels' own optimizer steps (K = the level's steps per outer step).

In a run, the runner differentiates the inner steps it actually takes (``unrolls = True``): same start, same batches,
the graph kept while they run (``Backend.trajectory_vjp``) and pulled back once the top loss's gradient is known — one
trajectory per outer step, not a second one recomputed. On a chain of several lower levels that is the exact
derivative of the whole inner phase w.r.t. the top level. With ``ordering=lookahead`` (the original Meta-Weight-Net
algorithm) the differentiated steps are a virtual look-ahead from θ_t, and the real steps follow with the new upper
parameters.

``response_vjp`` (one edge, from a given state: K steps on the edge's batch) is what the oracle check and the
single-edge agreement tests use.

Data parallel (``parallel.world_size``; where each reduction goes, backends/_torch_dist.py): each inner step's
gradient is averaged over the ranks on the way forward, and on the way back through the trajectory every collective
is pulled back by its adjoint (the same all-reduce), so the pullback is the one-rank derivative of the steps taken;
the result is averaged once more.
"""

from __future__ import annotations

from mlo_bench.suite.contract import Method
from mlo_bench.suite.plugins.registry import register


@register("method")
class Unroll(Method):
    name = "unroll"
    unrolls = True

    def gradients(self, cfg, unroll_steps):
        return unroll_steps  # one pullback through each optimizer step taken

    def response_vjp(self, backend, r, v, cfg):
        def unrolled(upper):
            lower, state = r.lower, r.state
            for _ in range(r.unroll_steps):
                lower, state = r.step(lower, state, upper)
            return lower

        _, pullback = backend.vjp(unrolled, r.upper)
        return pullback(v)
