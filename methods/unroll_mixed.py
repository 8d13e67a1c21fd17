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

Measured (MWN's demo, an MLP on batches of 100; peak bytes alive per outer step as counted by each backend;
``mlo-bench run -m task=mwn +preset=demo method=unroll,unroll_mixed inner_steps=1,4,16 backend=torch,jax steps=3
isolate=false hypergrad_check=false``, load average 12–17 on 2 cores):

=========  ================  ========================  ======================  ========================
depth K    torch unroll      torch unroll_mixed        jax unroll              jax unroll_mixed
=========  ================  ========================  ======================  ========================
1          174 KiB           417 KiB                   133 KiB                 127 KiB
4          447 KiB           456 KiB                   417 KiB                 334 KiB
16         1458 KiB          570 KiB                   1595 KiB                1307 KiB
=========  ================  ========================  ======================  ========================

On torch the growth per extra step falls from ~86 KiB to ~10 KiB (2.6× less at K = 16, more the deeper), but the
hypergradient phase is far slower on CPU (81 ms vs 2.8 s at K = 16: forward-over-reverse through ``torch.func`` is the
slow path noted in backends/torch.py); on jax, where XLA compiles the whole step as one program and schedules its
buffers itself, the saving is 18% at K = 16 at the same speed. MixFlow-MG's "over 10×" is for GPU-sized models.

Data parallel (``parallel.world_size``; where each reduction goes, backends/_torch_dist.py): as unroll: each step's
gradient and each forward-over-reverse product in the backward walk are averaged over the ranks.
"""

from __future__ import annotations

from typing import Any

from mlo_bench.suite.contract import Method
from mlo_bench.suite.engine import precision
from mlo_bench.suite.engine.trees import tree_add, tree_map
from mlo_bench.suite.plugins.registry import register

Tree = Any


@register("method")
class UnrollMixed(Method):
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
            p, s = precision.update(ops, opt, x["g"], x["s"], x["p"])  # fp16: the step as it ran (skip, scale)
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
