"""The implicit-function rule shared by every implicit hypergradient method.

For θ*(λ) = argmin_θ f(θ, λ):  (dθ*/dλ)ᵀ v = −∂²f/∂λ∂θ · H⁻¹ v, with H = ∇²_θθ f.
Methods differ only in how they produce ``x ≈ H⁻¹ v`` (``exact``: materialised Hessian and a dense solve;
``cg``/``neumann``: matrix-free ``solve(matvec, v)``); the mixed term is always one reverse-mode product.
"""

from __future__ import annotations

from typing import Any

from mlo_bench.suite.contract.method import Method, Response
from mlo_bench.suite.engine.trees import tree_map, tree_sub, tree_vdot

Tree = Any


def hessian_matvec(backend: Any, r: Response):
    """``u ↦ H u`` for the lower level's loss at the current state (Hessian-vector products, never H itself).

    A backend's ``hvp_operator(f, x)`` (``Backend.hvp_operator``; ``None`` by default) is the same map with the
    gradient's graph (torch) or linearisation (jax) built once and reused by every product, so K products of a solver
    cost one gradient plus K backward passes rather than K gradients and K backward passes (issue #18's floor: cg with
    K iterations ≈ K + 2 gradients)."""
    f = lambda th: r.loss(th, r.upper)  # noqa: E731
    operator = backend.hvp_operator(f, r.lower)
    if operator is not None:
        return operator
    return lambda u: backend.hvp(f, r.lower, u)


def mixed_vjp(backend: Any, r: Response, x: Tree) -> Tree:
    """``−∂²f/∂λ∂θ · x`` = −∇_λ ⟨∇_θ f(θ, λ), x⟩, one reverse-over-reverse product."""
    grad_theta = backend.grad(lambda th, lam: r.loss(th, lam))

    def inner(lam: Tree) -> Any:
        return tree_vdot(backend.ops, grad_theta(r.lower, lam), x)

    g = backend.grad(inner)(r.upper)
    return tree_map(lambda a: -a, g)


class MatrixFreeSolve(Method):
    """The shape shared by ``cg`` and ``neumann``: x ≈ H⁻¹v by a matrix-free ``solve`` (the subclass's), then one
    mixed VJP. With ``cfg.warm_start`` the last x of each edge is the method's state and the next solve starts from
    it (:class:`mlo_bench.suite.contract.Method`'s ``init`` / ``update``); without it the state is empty."""

    def solve(self, backend: Any, matvec: Any, v: Tree, cfg: Any, x0: Tree | None) -> Tree:
        raise NotImplementedError

    def gradients(self, cfg: Any, unroll_steps: int) -> int:
        """K Hessian-vector products and one mixed VJP per edge."""
        return int(cfg.iterations) + 1

    def init(self, backend: Any, lower: Tree, cfg: Any) -> Tree:
        return tree_map(backend.ops.zeros_like, lower) if cfg.warm_start else {}

    def update(self, backend: Any, r: Response, v: Tree, cfg: Any) -> tuple[Tree, Tree]:
        x = self.solve(backend, hessian_matvec(backend, r), v, cfg, r.method_state if cfg.warm_start else None)
        return mixed_vjp(backend, r, x), (x if cfg.warm_start else {})

    def response_vjp(self, backend: Any, r: Response, v: Tree, cfg: Any) -> Tree:
        return mixed_vjp(backend, r, self.solve(backend, hessian_matvec(backend, r), v, cfg, None))


def edge_top_loss(backend: Any, r: Response, v: Tree):
    """The top loss g(θ, λ) of this edge for the first-order solvers (``f2sa``, ``bome``), which evaluate it away
    from the current lower level: ``r.outer_loss`` on the edge below the top level; on an edge deeper in the chain the
    top loss is not a function of the edge's two levels, and g is replaced by its linearisation ⟨v, θ' − θ⟩ at the
    lower level's current θ (v: the vector pushed down the chain)."""
    if r.outer_loss is not None:
        return r.outer_loss
    ops, theta = backend.ops, r.lower
    return lambda y, lam: tree_vdot(ops, v, tree_sub(y, theta))
