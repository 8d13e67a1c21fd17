"""``jaxopt``: JAXopt (0.8.5; no longer developed, still runs on current JAX) — implicit differentiation with
``jaxopt.implicit_diff.custom_root`` and its linear solvers, jitted like the jax backend.

Per edge: the optimality condition is ∇_θ f(θ, λ) (``jax.grad`` of the task's lower loss), the root the state the
runner reached (the decorated solver returns it), and the edge's VJP is ``jax.vjp`` through the decorated solver:
JAXopt solves the transposed system with ``solve`` and applies −∂²f/∂λ∂θ.

- ``cg``: ``solve=jaxopt.linear_solve.solve_cg`` with ``maxiter=K, tol=0, atol=0`` (``jax.scipy.sparse.linalg.cg``:
  exactly K iterations, as the suite's ``cg``);
- ``exact``: ``solve=jaxopt.linear_solve.solve_lu`` on the flattened pytree (JAXopt materialises the matrix from
  matvecs, then LU).

Mixed precision (docs/precision.md): the optimality condition is the suite's level loss under the jax backend's jmp
policy; ``exact`` runs in bf16 and fp16 as the jax backend does (LU carries a NaN through). ``cg`` in fp16 is refused:
``solve_cg`` is ``jax.scipy.sparse.linalg.cg``, whose loop runs while ``rs > atol²`` — false for a NaN residual — and
returns the iterate it had, zero for an inf or NaN cotangent (tests/test_peers_precision.py); a forced overflow
(``task=quadratic precision=fp16 precision.init_scale=1e6 steps=20``) diverges at step 18 where the jax backend's cg
skips 7 inner and 11 hypergradient steps and ends at its fp16 error (1.25e-3 against the oracle).

JAXopt has no Neumann solver and no unrolled optimizers of its own (its iterative solvers unroll, the suite's optimizer
steps are not them): every other method is ``unsupported`` here.
"""

from __future__ import annotations

import functools
from typing import Any

from mlo_bench.backends._peers import CG_HIDES_OVERFLOW, Peer
from mlo_bench.backends.jax import JaxBackend
from mlo_bench.suite.plugins.registry import register

Tree = Any


def _solve(method: str, cfg: Any) -> Any:
    from jaxopt import linear_solve

    if method == "cg":
        return functools.partial(linear_solve.solve_cg, maxiter=cfg.iterations, tol=0.0, atol=0.0)
    return _dense_lu


def _dense_lu(matvec: Any, b: Tree, **kwargs: Any) -> Tree:
    """``jaxopt.linear_solve.solve_lu`` on the flattened pytree (it takes one array)."""
    from jax.flatten_util import ravel_pytree
    from jaxopt import linear_solve

    flat, unravel = ravel_pytree(b)
    return unravel(linear_solve.solve_lu(lambda x: ravel_pytree(matvec(unravel(x)))[0], flat, **kwargs))


def _jaxopt_vjp(method: str):
    def response_vjp(backend: Any, r: Any, v: Tree, cfg: Any) -> Tree:
        from jaxopt.implicit_diff import custom_root

        jax = backend.jax

        @custom_root(jax.grad(r.loss), solve=_solve(method, cfg))
        def solver(theta0: Tree, lam: Tree) -> Tree:
            return jax.lax.stop_gradient(theta0)

        _, pullback = jax.vjp(lambda lam: solver(r.lower, lam), r.upper)
        return pullback(v)[0]

    return response_vjp


@register("backend")
class JaxoptBackend(Peer, JaxBackend):
    """JAXopt 0.8.5: custom_root with its cg and dense (LU) linear solvers, under jit."""

    name = "jaxopt"
    library, dist = "jaxopt", "jaxopt"
    methods = {"cg": "jaxopt.implicit_diff.custom_root + linear_solve.solve_cg",
               "exact": "jaxopt.implicit_diff.custom_root + linear_solve.solve_lu (dense)"}
    precision_refusals = {("fp16", "cg"): f"jaxopt.linear_solve.solve_cg (jax.scipy.sparse.linalg.cg): "
                                          f"{CG_HIDES_OVERFLOW}"}

    def library_vjp(self, method: str):
        return _jaxopt_vjp(method)

    def path(self) -> str:
        return "jaxopt.implicit_diff.custom_root under jax.jit"
