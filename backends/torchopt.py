"""``torchopt``: TorchOpt (0.7.3) — implicit differentiation with its ``custom_root`` and linear solvers, and unrolled
differentiation through its own functional optimizers.

- ``cg``: ``torchopt.diff.implicit.custom_root(optimality, argnums=1, solve=torchopt.linear_solve.solve_cg(
  maxiter=K, rtol=0, atol=0))`` — exactly K iterations, as the suite's ``cg``; ``neumann``: ``solve_inv(ns=True,
  maxiter=K, alpha=α)`` (TorchOpt's Neumann series is Betty's form: α Σ_{j=0..K} (I − αH)^j); ``exact``:
  ``solve_inv()`` (TorchOpt materialises the matrix with ``jacfwd`` and calls ``torch.linalg.solve``). The optimality
  condition is the gradient of the task's lower loss (``torch.func.grad``: TorchOpt differentiates it with functorch),
  the root the state the runner reached; the edge's VJP is ``torch.autograd.grad`` through the decorated solver.
- ``unroll``: every lower-level optimizer step (the inner phase the runner differentiates, and the single-edge
  unroll) is ``torchopt.sgd`` / ``torchopt.adam`` ``update`` + ``apply_updates(inplace=False)`` on the suite's
  optimizer state (momentum trace, Adam moments and count converted both ways each step), differentiated by the
  torch backend's ``torch.func`` transforms. The transformation is built afresh each step, so TorchOpt's momentum is
  in its first-call form (t + g, the flag being a closure variable rather than state): it is handed t = μ·buf. Every
  level's optimizer step goes through TorchOpt (the upper level's too), so an Adam upper level reaches every method.

Two TorchOpt 0.7.3 properties the adapter works around (each checked against the library in tests/test_peers.py):

- ``solve_inv()`` on a pytree of several tensors is **block-diagonal**: ``linear_solve.utils.materialize_matvec``
  keeps only the Jacobian's diagonal blocks (``jacobian[i][i]``) and ``torch.linalg.solve`` runs per leaf, so the
  Hessian's cross-leaf blocks (weights × bias) are dropped. With θ handed as its leaves, ``exact`` was off by 1.6e-1
  on domain_adaptation and 27.5 on weak_supervision ``program=correct`` (first hypergradient against the torch
  backend, float64; ``mlo-bench verify``), while ``cg`` / ``neumann`` (matvec only) agreed to 1e-14. The adapter hands
  ``exact`` θ raveled into one vector (as the jaxopt adapter does for ``solve_lu``), so the whole Hessian is solved.
- Its Adam computes the bias correction 1 − βᵗ as ``pow(β, count)`` with its int64 step count, which torch evaluates
  in the default dtype, float32, even in a float64 run (rel. error up to 3.2e-7 with β = 0.9 and 2.0e-5 with
  β = 0.999, at the first steps where 1 − βᵗ is small; measured at set-up by :func:`adam_bias_correction_error` and
  recorded as ``provenance.peer_notes``). The adapter hands TorchOpt the count in the run's dtype (a whole number, so
  exact), which keeps its own formula in float64. Left as it was, the upper level's Adam moved every torchopt method's
  parameters by ~8e-6 after 5 outer steps (verify's tolerance is 1e-6).

Mixed precision (docs/precision.md): the optimality condition is the suite's level loss, so under the torch
backend's autocast, and TorchOpt's optimizers take the gradients the suite has unscaled; ``neumann``, ``exact`` and
``unroll`` run in bf16 and fp16 as the torch backend does. ``cg`` in fp16 is refused (``_peers.CG_HIDES_OVERFLOW``):
``solve_cg`` (a port of jax.scipy's cg loop) runs while ``rs > atol²``, which is false for a NaN residual, and returns
the iterate it had — for an inf or NaN cotangent, or a NaN Hessian-vector product, the zero it started from (the
response VJP is then finite where the torch backend's is NaN; tests/test_peers_precision.py), so an fp16 overflow
would be a finite, wrong hypergradient that the loss scale never skips.

On torch 2.13 TorchOpt's compiled ops (``torchopt._C``) do not load and it falls back to pure Python; the path that
ran is recorded in provenance (``peer_path``). Everything else (arrays, timing, memory) is the torch backend's.
"""

from __future__ import annotations

import warnings
from typing import Any

from mlo_bench.backends._peers import CG_HIDES_OVERFLOW, Peer, rebuild
from mlo_bench.backends.torch import TorchBackend, TorchOps
from mlo_bench.suite.engine.optim import learning_rate
from mlo_bench.suite.engine.trees import ravel, tree_leaves
from mlo_bench.suite.plugins.registry import register

Tree = Any


class TorchoptOps(TorchOps):
    """The torch ops, with the lower levels' optimizer steps taken by TorchOpt's functional optimizers."""

    def optimizer_update(self, cfg: Any, grads: Tree, state: dict[str, Any], params: Tree) -> tuple[Tree, dict]:
        import torchopt
        from torchopt.transform.scale_by_adam import ScaleByAdamState
        from torchopt.transform.trace import TraceState

        lr = learning_rate(cfg, state["count"])
        p, g = tree_leaves(params), tree_leaves(grads)
        if cfg.name == "sgd":
            tx = torchopt.sgd(lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
            st = tx.init(p)
            if cfg.momentum:  # a fresh ``trace`` takes its first-call form t + g (the flag is a closure variable,
                # not state): t = μ·buf makes that the heavy-ball update μ·buf + g, and g itself at the first step
                trace = [cfg.momentum * b for b in tree_leaves(state["momentum"])]
                st = tuple(TraceState(trace=trace) if isinstance(s, TraceState) else s for s in st)
        else:
            tx = torchopt.adam(lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)
            # the count in the run's dtype (TorchOpt's own int64 count makes pow(β, count) float32; see above)
            count = self.t.round(state["count"]).to(p[0].dtype)
            adam = ScaleByAdamState(mu=tree_leaves(state["m"]), nu=tree_leaves(state["v"]), count=[count] * len(p))
            st = tuple(adam if isinstance(s, ScaleByAdamState) else s for s in tx.init(p))
        updates, st = tx.update(g, st, params=p, inplace=False)
        new = rebuild(params, list(torchopt.apply_updates(p, updates, inplace=False)))
        out = dict(state, count=state["count"] + 1.0)
        for s in st:
            if isinstance(s, TraceState):
                out["momentum"] = rebuild(params, list(s.trace))
            if isinstance(s, ScaleByAdamState):
                out["m"], out["v"] = rebuild(params, list(s.mu)), rebuild(params, list(s.nu))
        return new, out


def _solver(method: str, cfg: Any) -> Any:
    from torchopt import linear_solve

    if method == "cg":
        return linear_solve.solve_cg(maxiter=cfg.iterations, rtol=0.0, atol=0.0)
    if method == "neumann":
        return linear_solve.solve_inv(ns=True, maxiter=cfg.iterations, alpha=cfg.alpha)
    return linear_solve.solve_inv()


def torchopt_vjp(method: str):
    def response_vjp(backend: Any, r: Any, v: Tree, cfg: Any) -> Tree:
        from torchopt.diff.implicit import custom_root

        torch = backend.torch
        if method == "exact":  # one vector: TorchOpt's dense solve on several leaves is block-diagonal (see above)
            flat, unravel = ravel(backend.ops, r.lower)
            root, cotangent = (flat.detach(),), (ravel(backend.ops, v)[0],)

            def lower(theta: tuple) -> Tree:
                return unravel(theta[0])
        else:
            root, cotangent = tuple(t.detach() for t in tree_leaves(r.lower)), tuple(tree_leaves(v))

            def lower(theta: tuple) -> Tree:
                return rebuild(r.lower, list(theta))

        def loss(theta: tuple, lam: tuple) -> Any:
            return r.loss(lower(theta), rebuild(r.upper, list(lam)))

        def optimality(theta: tuple, lam: tuple) -> tuple:
            return tuple(torch.func.grad(loss)(theta, lam))

        @custom_root(optimality, argnums=1, solve=_solver(method, cfg))
        def solver(theta0: tuple, lam: tuple) -> tuple:
            return root

        lam = tuple(t.detach().requires_grad_(True) for t in tree_leaves(r.upper))
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*functorch", category=FutureWarning)  # TorchOpt's own calls
            out = solver(root, lam)
            grads = torch.autograd.grad(out, lam, grad_outputs=cotangent, allow_unused=True)
        pairs = zip(grads, lam, strict=True)
        return rebuild(r.upper, [torch.zeros_like(x) if gr is None else gr.detach() for gr, x in pairs])

    return response_vjp


def adam_bias_correction_error(torch: Any, dtype: Any, steps: int = 100, beta: float = 0.999) -> float:
    """Max over t = 1..steps of the relative error of TorchOpt's own Adam bias correction (``_bias_correction`` with
    its int64 count, as ``torchopt.adam`` calls it) on a ``dtype`` moment, against 1/(1 − βᵗ) in that dtype."""
    from torchopt.transform.scale_by_adam import _bias_correction

    one = torch.ones((), dtype=dtype)
    worst = 0.0
    for t in range(1, steps + 1):
        (got,) = _bias_correction([one], beta, [torch.tensor(t, dtype=torch.int64)])
        want = one / (1 - torch.tensor(beta, dtype=dtype) ** t)
        worst = max(worst, float(abs(got - want) / want))
    return worst


@register("backend")
class TorchoptBackend(Peer, TorchBackend):
    """TorchOpt 0.7.3: custom_root with its cg / Neumann / dense solvers, unrolling through its optimizers."""

    name = "torchopt"
    library, dist = "torchopt", "torchopt"
    methods = {"cg": "torchopt.diff.implicit.custom_root + linear_solve.solve_cg",
               "neumann": "torchopt.diff.implicit.custom_root + linear_solve.solve_inv(ns=True)",
               "exact": "torchopt.diff.implicit.custom_root + linear_solve.solve_inv (dense)",
               "unroll": "torchopt.sgd / torchopt.adam functional updates, differentiated with torch.func"}
    precision_refusals = {("fp16", "cg"): f"torchopt.linear_solve.solve_cg: {CG_HIDES_OVERFLOW}"}

    def setup(self, dtype: str, device: str, seed: int) -> None:
        super().setup(dtype, device, seed)
        self.ops = TorchoptOps(self.torch)

    def library_vjp(self, method: str):
        return None if method == "unroll" else torchopt_vjp(method)

    def notes(self) -> list[str]:
        if self.dtype != "float64":
            return []
        errs = {beta: adam_bias_correction_error(self.torch, self._dtype, beta=beta) for beta in (0.9, 0.999)}
        if max(errs.values()) <= 10 * float(self.torch.finfo(self._dtype).eps):
            return []
        return ["TorchOpt's Adam bias correction from its int64 count is computed in float32 in a float64 run: rel. "
                f"error up to {', '.join(f'{e:.1e} (β={b})' for b, e in errs.items())} over 100 steps; the adapter "
                "hands it the count in the run's dtype"]

    def path(self) -> str:
        import torchopt

        return ("torchopt._C accelerated ops" if torchopt.accelerated_op_available()
                else "pure Python (torchopt._C did not load)")
