"""The naive backend: plain torch autograd, the way the original Meta-Weight-Net and ``higher`` code is written.

Every derivative is ``torch.autograd.grad`` (``create_graph=True`` whenever the result may be differentiated again),
with the whole graph kept until the outer backward; torch.func is never used. Multilevel chains are not
differentiated in reverse mode: for every lower level the best-response Jacobian dθ*/dλ is MATERIALISED as a dense
(d_lower × d_upper) matrix, row by row with autograd — for ``exact`` J = −H⁻¹ ∂²f/∂θ∂λ (Hessian and mixed matrix
built row by row, then a dense solve), for ``unroll`` the Jacobian of the K-step unrolled inner update — the
Jacobians are multiplied along the chain (dx_k/dx_0 = J_k ⋯ J_1, the O(d³) path the Betty paper contrasts with
reverse mode), and only at the end is the top loss's gradient applied. Only ``unroll`` and ``exact`` have such a
Jacobian; every other method is ``unsupported`` here. Arrays, ops, devices, timing and memory are the torch backend's.

``backend.chain=reverse`` keeps the plain autograd (graph kept, ``create_graph=True``) but differentiates the chain in
reverse mode, one vector per level, with each method's own ``response_vjp`` — what the original Meta-Weight-Net code
does (one backward through the unrolled step; Betty Table 1's "original" row). Every method runs then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlo_bench.backends.torch import TorchBackend
from mlo_bench.suite.contract.method import Response
from mlo_bench.suite.engine.hypergradient import response
from mlo_bench.suite.engine.levels import chain as chain_order
from mlo_bench.suite.engine.trees import ravel, tree_map, tree_unflatten
from mlo_bench.suite.plugins.registry import register

Tree = Any
METHODS = ("exact", "unroll")
CHAINS = ("materialised", "reverse")


@dataclass
class NaiveConfig:
    #: materialised: Jacobians multiplied along the chain (O(d³)); reverse: one VJP per level (the original MWN code)
    chain: str = "materialised"

    def validate(self) -> None:
        if self.chain not in CHAINS:
            raise ValueError(f"backend.chain must be one of {', '.join(CHAINS)} (got {self.chain!r})")


class _Materialised:
    """A response VJP computed from the materialised best-response Jacobian: (dθ*/dλ)ᵀ v = Jᵀ v.

    ``jacobian(backend, response, cfg)`` returns J as a dense (d_lower × d_upper) matrix; the naive chain multiplies
    these matrices, and calling the object gives the method's ``response_vjp`` (so the generic reverse-mode chain
    can run on it too, which the agreement tests use).
    """

    def __init__(self, method: str, jacobian: Callable[[Any, Response, Any], Any]) -> None:
        self.method = method
        self.jacobian = jacobian

    def __call__(self, backend: Any, r: Response, v: Tree, cfg: Any) -> Tree:
        ops = backend.ops
        _, unravel_upper = ravel(ops, r.upper)
        v_flat, _ = ravel(ops, v)
        return unravel_upper(ops.matmul(ops.transpose(self.jacobian(backend, r, cfg)), v_flat))


def _rows(torch: Any, out: Any, inputs: list[Any]) -> list[Any]:
    """Row by row: for each entry out[i], one ``autograd.grad`` w.r.t. every tensor of ``inputs`` (zeros if unused)."""
    rows: list[list[Any]] = [[] for _ in inputs]
    for i in range(out.shape[0]):
        if out.requires_grad:
            grads = torch.autograd.grad(out[i], inputs, retain_graph=True, allow_unused=True)
        else:
            grads = (None,) * len(inputs)
        for j, (g, x) in enumerate(zip(grads, inputs, strict=True)):
            rows[j].append(torch.zeros_like(x) if g is None else g)
    return [torch.stack(r) for r in rows]


def exact_jacobian(backend: Any, r: Response, cfg: Any) -> Any:
    """J = −H⁻¹ ∂²f/∂θ∂λ, with H and the mixed matrix built row by row with autograd and a dense solve."""
    torch, ops = backend.torch, backend.ops
    theta_flat, unravel_lower = ravel(ops, r.lower)
    lam_flat, unravel_upper = ravel(ops, r.upper)
    with torch.enable_grad():
        theta = theta_flat.detach().requires_grad_(True)
        lam = lam_flat.detach().requires_grad_(True)
        loss = r.loss(unravel_lower(theta), unravel_upper(lam))
        (g,) = torch.autograd.grad(loss, theta, create_graph=True)
        hessian, mixed = _rows(torch, g, [theta, lam])  # (d_l × d_l), (d_l × d_u): ∂(∂f/∂θ_i)/∂θ, ∂(∂f/∂θ_i)/∂λ
    return -backend.solve(hessian, mixed)


def unroll_jacobian(backend: Any, r: Response, cfg: Any) -> Any:
    """The Jacobian of λ ↦ θ_K(λ), K steps of the lower level's own optimizer, built row by row with autograd."""
    torch, ops = backend.torch, backend.ops
    lam_flat, unravel_upper = ravel(ops, r.upper)
    with torch.enable_grad():
        lam = lam_flat.detach().requires_grad_(True)
        upper = unravel_upper(lam)
        lower, state = r.lower, r.state
        for _ in range(r.unroll_steps):
            lower, state = r.step(lower, state, upper)  # create_graph=True: λ requires grad
        out, _ = ravel(ops, lower)
        (jac,) = _rows(torch, out, [lam])
    return jac


JACOBIANS = {"exact": exact_jacobian, "unroll": unroll_jacobian}


def materialised_chain(
    backend: Any,
    response_vjp: Any,
    method_cfg: Any,
    levels: list[Any],
    params: dict[str, Tree],
    opt_states: dict[str, Tree],
    batches: dict[str, Any],
    unroll_steps: Any,
    method_states: Any = None,
) -> Tree:
    """The top level's hypergradient by multiplying materialised Jacobians (same signature and numbers as
    :func:`mlo_bench.suite.engine.hypergradient.hypergradient`):  dg/dx_0 = ∂g/∂x_0 + Σ_k (J_k ⋯ J_1)ᵀ ∂g/∂x_k."""
    jacobian = getattr(response_vjp, "jacobian", None)
    if jacobian is None:
        raise TypeError("the naive chain needs a materialised response (NaiveBackend.override of exact or unroll)")
    ops = backend.ops
    levels = chain_order(levels)
    top = levels[0]
    direct = backend.grad(lambda p: top.loss(ops, p, batches.get(top.name)))(params)
    total = None  # dx_k/dx_0 as a dense (d_k × d_0) matrix
    products = []
    for level in levels[1:]:
        r = response(backend, level, params, opt_states, batches.get(level.name), unroll_steps)
        jac = jacobian(backend, r, method_cfg)  # (d_k × d_{k-1})
        total = jac if total is None else ops.matmul(jac, total)
        products.append((level.name, total))
    # Only now the top loss's gradient: ∂g/∂x_0 + Σ_k totalᵀ ∂g/∂x_k.
    out, unravel_top = ravel(ops, direct[top.name])
    for name, total in products:
        g_k, _ = ravel(ops, direct[name])
        out = out + ops.matmul(ops.transpose(total), g_k)
    return unravel_top(out)


@register("backend")
class NaiveBackend(TorchBackend):
    """Plain torch autograd with the graph kept (like `higher` / the original MWN); materialises Jacobians."""

    name = "naive"
    Config = NaiveConfig
    retain_graphs = True  # the whole graph kept, as the original code (torch's autograd derivatives, never freed early)

    def hvp_operator(self, f, x):
        """``None``: every Hessian-vector product from scratch (a gradient and a backward), the plain way."""
        return None

    @property
    def reverse(self) -> bool:
        return getattr(self.config, "chain", "materialised") == "reverse"

    @property
    def materialises(self) -> bool:  # d×d best-response Jacobians multiplied along the chain, unless chain=reverse
        return not self.reverse

    def supports(self, method: str) -> str | None:
        if method in METHODS or self.reverse:
            return None
        return (
            f"backend naive runs only {' and '.join(METHODS)}: it materialises best-response Jacobians, "
            "which the other methods never form (backend.chain=reverse runs every method)"
        )

    def parallel_refusal(self, world_size: int) -> str | None:
        if world_size == 1 or self.reverse:
            return None
        return ("backend naive materialises best-response Jacobians row by row with autograd, outside the reduced "
                f"derivatives of a data-parallel rank (parallel.world_size={world_size}); backend.chain=reverse runs "
                "data parallel")

    def override(self, method: str) -> Callable[..., Tree] | None:
        if self.reverse:
            return None
        return _Materialised(method, JACOBIANS[method]) if method in JACOBIANS else None

    def chain(self) -> Callable[..., Tree] | None:
        return None if self.reverse else materialised_chain

    def trajectory_vjp(self, f, x):
        """The inner steps actually taken, differentiated with plain autograd (graph kept). With the materialised
        chain (the default) the pullback first MATERIALISES the Jacobian of the whole inner phase, d(lower levels
        after it)/d(top), row by row (one ``autograd.grad`` per output entry: O(d) VJPs, O(d³) on dense problems),
        then applies its transpose; with ``chain=reverse`` it is one backward, as in the original MWN code."""
        box: dict[str, Tree] = {}

        def out_only(z):
            out, box["aux"] = f(z)
            return out

        detach = lambda tree: tree_map(lambda t: t.detach() if hasattr(t, "detach") else t, tree)  # noqa: E731
        if self.reverse:
            out, pullback = self.vjp(out_only, x)
            return out, detach(box["aux"]), pullback
        ops = self.ops
        xs, leaves = self._variables(x)
        with self._nested():
            out = out_only(xs)
        flat_out, _ = ravel(ops, out)

        def pullback(ct):
            ct_flat, _ = ravel(ops, ct)
            jac = _rows(self.torch, flat_out, leaves)  # per input leaf: (n_out, *leaf.shape)
            return tree_unflatten(x, [self.torch.tensordot(ct_flat, j, dims=1) for j in jac])

        return detach(out), detach(box["aux"]), pullback

    def hessian(self, f, x):
        """The d×d Hessian of ``f`` over the flat vector ``x``, row by row with autograd."""
        create = self._keep_graph(x)
        (var,) = self._variables(x)[1]
        with self._nested():
            (g,) = self._grad([f(var)], [var], None, True)
        if not create:
            return _rows(self.torch, g, [var])[0]
        rows = [self._grad([g[i]], [var], None, True)[0] for i in range(g.shape[0])]
        return self.torch.stack(rows)

    def versions(self) -> dict[str, str]:
        return {**super().versions(), "autodiff": "torch.autograd (graph kept, Jacobians materialised)"}
