"""``optimistix``: Optimistix (0.1.0, with lineax 0.1.1) — the maintained JAX library for implicit differentiation
(JAXopt, the ``jaxopt`` peer, is no longer developed), jitted like the jax backend.

Per edge: the lower level's loss f(θ, λ) is handed to ``optimistix.minimise`` with θ₀ = the state the runner reached,
``max_steps=0`` and ``throw=False`` — Optimistix takes no step of its own (the suite's loop trained θ, as it does for
every engine) and returns θ₀ as the minimum — and ``adjoint=optimistix.ImplicitAdjoint(linear_solver=…)``: the edge's
VJP is ``jax.vjp`` through that call, so Optimistix's own implicit-function-theorem rule solves the transposed system
∇²_θθ f · x = v with the lineax solver and applies −∂²f/∂λ∂θ (its optimality condition is ∇_θ f, the minimiser's).

- ``cg``: ``lineax.CG(rtol=0, atol=0, max_steps=K)`` — exactly K iterations, as the suite's ``cg`` (lineax recomputes
  the residual as b − Ax every 10 steps, ``stabilise_every=10``: the same iterates to roundoff). lineax's CG accepts
  only an operator tagged positive (semi)definite; the minimisation is tagged ``symmetric`` and
  ``positive_semidefinite`` (the Hessian at a minimum: the assumption the suite's ``cg`` makes too).
- ``exact``: ``lineax.LU()`` — the operator materialised from its matvecs over the whole pytree (every cross-leaf
  block kept, unlike TorchOpt's per-leaf dense solve) and LU-factorised.

Certified: ``mlo-bench verify task=quadratic dtype=float64 backend=optimistix`` (5 outer steps against torch): cg
7.2e-16, exact 9.3e-16 (first hypergradient; parameters after 5 steps ≤ 4.4e-16; against the oracle exact 6.0e-16,
cg 8.9e-4 as torch's at K = 10); on the MWN demo's settings (``task=mwn task.upper.lr=3e-3 dtype=float64``) cg
1.6e-14, exact 2.8e-14 — within 1e-6 (2-core CPU at load 9–11).

One lineax property shows in float32 (checked on the library in tests/test_peers_boat_optimistix.py): its CG treats
a step of small curvature, |pᵀHp| ≤ 200·ε·n·‖r‖² (n the number of parameters), as a breakdown and returns NaN, and
``ImplicitAdjoint``'s solve raises on a non-finite solution (an equinox runtime error inside the jitted step, which
Optimistix gives no way to turn off). Where the suite's ``cg`` goes on (it divides by any non-zero curvature), the run
ends ``error`` with lineax's message: the MWN demo (``+peers_case=mwn_demo``, float32, n ≈ 1,200) after 8 of its 100
outer steps, where the jax backend's cg runs all 100; in float64 (ε 5e8× smaller) optimistix × cg runs all 100 too
(``mlo-bench run -m +peers_case=mwn_demo backend=optimistix,jax method=cg dtype=float32,float64``, 2-core CPU at
load 10–12: 0.56 s for the 100 steps, compile 32.7 s apart; jax × cg 0.58 s, compile 17.1 s).

Mixed precision (docs/precision.md): the minimised function is the suite's level loss under the jax backend's jmp
policy, so bf16 runs as on the jax backend. fp16 is refused for both methods: lineax's ``linear_solve`` (called with
``throw=True`` by ``ImplicitAdjoint``) raises on any non-finite solution, so an fp16 overflow — a skipped step and a
lowered scale under the suite's loss scaling — ends the run ``error`` (``task=quadratic precision=fp16
precision.init_scale=1e6``: optimistix cg and exact end ``error`` in their first step, jax and jaxopt × exact skip 7
inner and 11 hypergradient steps and finish).

Optimistix has no Neumann series, no finite-difference step and no unrolled optimizers of the suite's kind (its
solvers' iterates are differentiated implicitly, not unrolled): every other method is ``unsupported`` here.
"""

from __future__ import annotations

from typing import Any

from mlo_bench.backends._peers import Peer
from mlo_bench.backends.jax import JaxBackend
from mlo_bench.suite.plugins.registry import register

Tree = Any


def linear_solver(method: str, cfg: Any) -> Any:
    """The lineax solver behind ``method``: K iterations of CG, or a dense LU."""
    import lineax as lx

    if method == "cg":
        return lx.CG(rtol=0.0, atol=0.0, max_steps=cfg.iterations)
    return lx.LU()


def _optimistix_vjp(method: str):
    def response_vjp(backend: Any, r: Any, v: Tree, cfg: Any) -> Tree:
        import lineax as lx
        import optimistix as optx

        jax = backend.jax
        adjoint = optx.ImplicitAdjoint(linear_solver=linear_solver(method, cfg))
        tags = frozenset({lx.symmetric_tag, lx.positive_semidefinite_tag})
        # the minimiser is never stepped (max_steps=0): its tolerances are not used
        solver = optx.GradientDescent(learning_rate=1.0, rtol=0.0, atol=0.0)
        theta0 = jax.lax.stop_gradient(r.lower)

        def minimum(lam: Tree) -> Tree:
            return optx.minimise(r.loss, solver, theta0, args=lam, max_steps=0, throw=False, adjoint=adjoint,
                                 tags=tags).value

        _, pullback = jax.vjp(minimum, r.upper)
        return pullback(v)[0]

    return response_vjp


@register("backend")
class OptimistixBackend(Peer, JaxBackend):
    """Optimistix 0.1.0: ImplicitAdjoint with lineax's CG and dense LU, under jit."""

    name = "optimistix"
    library, dist = "optimistix", "optimistix"
    methods = {"cg": "optimistix.minimise + ImplicitAdjoint(lineax.CG)",
               "exact": "optimistix.minimise + ImplicitAdjoint(lineax.LU) (dense)"}
    precision_refusals = {("fp16", None): "ImplicitAdjoint's lineax.linear_solve raises on a non-finite solution (an "
                                          "equinox runtime error in the jitted step), so an fp16 overflow ends the run "
                                          "instead of being skipped by the suite's loss scale"}

    def library_vjp(self, method: str):
        return _optimistix_vjp(method)

    def path(self) -> str:
        return "optimistix.ImplicitAdjoint (lineax solvers) under jax.jit"

    def versions(self) -> dict[str, str]:
        from importlib import metadata

        try:
            lineax = metadata.version("lineax")
        except metadata.PackageNotFoundError:
            lineax = "?"
        return {**super().versions(), "lineax": lineax}
