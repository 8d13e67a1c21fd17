"""``unroll``: reverse mode through K differentiable steps of the lower level's own optimizer (K = inner_steps).

From the current lower state θ (and optimizer state), θ_K(λ) = step^K(θ, λ); the result is the VJP of λ ↦ θ_K(λ).
Like the original Meta-Weight-Net's "virtual step", the K steps are recomputed with the graph kept, so memory
grows with K.
"""

from __future__ import annotations

from mlo_bench.suite.registry import register


@register("method")
class Unroll:
    name = "unroll"

    def response_vjp(self, backend, r, v, cfg):
        def unrolled(upper):
            lower, state = r.lower, r.state
            for _ in range(r.unroll_steps):
                lower, state = r.step(lower, state, upper)
            return lower

        _, pullback = backend.vjp(unrolled, r.upper)
        return pullback(v)
