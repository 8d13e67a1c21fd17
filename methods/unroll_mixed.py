"""``unroll_mixed``: the unrolled hypergradient with mixed-mode (forward-over-reverse) second-order products in the
backward pass (MixFlow-MG, Kemaev et al., ICML 2025: "over 10× less memory than standard unrolled meta-gradients").

Plain ``unroll`` differentiates K inner steps θ_{t+1} = U(∇_θ f(θ_t, λ), s_t, θ_t) by reverse mode through the whole
trajectory: every step's gradient computation is kept as a graph (its activations, K times) until the backward pass.
Here the forward pass keeps only the iterates (θ_t, s_t), and the backward pass walks the steps in reverse; at step t,
with cotangents (θ̄, s̄) of its output:

1. (ḡ, s̄, θ̄_direct) = VJP of the optimizer update U at (g_t, s_t, θ_t) — elementwise, cheap (g_t recomputed);
2. one forward-over-reverse product, the JVP of the full gradient (∇_θ f, ∇_λ f) at (θ_t, λ) along (ḡ, 0), gives
   both H ḡ and ∂²f/∂λ∂θ ḡ (the mixed term) without a reverse-over-reverse graph;
3. θ̄ ← θ̄_direct + H ḡ,  λ̄ ← λ̄ + ∂²f/∂λ∂θ ḡ.

The result is the same number as ``unroll``'s on one edge (tests/test_unroll_mixed.py: 1e-10 in float64, torch and
jax, SGD with momentum and Adam); memory grows with K by the iterates only. Per edge: in a run its hypergradient
takes K = ``unroll_steps`` steps from the state the inner phase reached, on the last batch (what ``unroll``'s
single-edge ``response_vjp`` does, not the runner's differentiated inner phase, whose steps it does not keep); on a
chain of several lower levels each edge is unrolled on its own.
"""

from __future__ import annotations

from typing import Any

from mlo_bench.suite import optim
from mlo_bench.suite.registry import register
from mlo_bench.suite.trees import tree_add, tree_map

Tree = Any


@register("method")
class UnrollMixed:
    name = "unroll_mixed"

    def response_vjp(self, backend, r, v, cfg):
        if r.optimizer is None:
            raise ValueError("unroll_mixed needs the lower level's optimizer config (Response.optimizer)")
        ops, opt = backend.ops, r.optimizer
        lam = r.upper
        iterates = []
        theta, state = r.lower, r.state
        for _ in range(r.unroll_steps):  # forward: values only, no graph kept
            iterates.append((theta, state))
            theta, state = r.step(theta, state, lam)

        def update(x: dict) -> dict:
            p, s = optim.update(ops, opt, x["g"], x["s"], x["p"])
            return {"p": p, "s": s}

        def full_grad(th: Tree) -> dict:
            g = backend.grad(lambda both: r.loss(both["th"], both["lam"]))({"th": th, "lam": lam})
            return {"th": g["th"], "lam": g["lam"]}

        theta_bar, state_bar = v, tree_map(ops.zeros_like, r.state)
        lam_bar = tree_map(ops.zeros_like, lam)
        for theta, state in reversed(iterates):
            g = backend.grad(lambda th: r.loss(th, lam))(theta)
            _, pullback = backend.vjp(update, {"g": g, "s": state, "p": theta})
            bars = pullback({"p": theta_bar, "s": state_bar})
            _, second = backend.jvp(full_grad, theta, bars["g"])  # forward over reverse: H ḡ and ∂²f/∂λ∂θ ḡ
            theta_bar = tree_add(bars["p"], second["th"])
            state_bar = bars["s"]
            lam_bar = tree_add(lam_bar, second["lam"])
        return lam_bar
