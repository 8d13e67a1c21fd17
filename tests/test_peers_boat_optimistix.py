"""The two newer peer engines beyond what tests/test_peers.py checks of every peer: BOAT's operations at the suite's
knobs (its step and radius are where the suite's α and ξ go), the library properties their docstrings state, and
Optimistix's dense and CG solves on a lower level whose Hessian couples two leaves (the closed form). Skips a peer
whose library is not installed."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import make_backend, method_cfg
from test_peers import _hypergrad, _rel, _state, _task

from mlo_bench.suite.plugins import registry


@pytest.mark.parametrize("method,knobs", [
    ("neumann", {"iterations": 3, "alpha": 0.3}),
    ("darts", {"alpha": 0.05, "xi": 0.5}),
    ("cg", {"iterations": 3}),
])
def test_boat_runs_the_suites_method_at_its_knobs(method, knobs):
    """BOAT's NS step η and FD scale are its lower optimizer's learning rate, its FD radius ``FD.r``: handed the
    method's knobs, away from their defaults, BOAT equals the suite's method (so the knob reaches the library)."""
    task = _task()
    ref = _hypergrad("torch", method, task, **knobs)
    assert _rel(_hypergrad("boat", method, task, **knobs), ref) < 1e-10
    default = _hypergrad("torch", method, task)
    assert _rel(default, ref) > 1e-3  # the knobs change the answer: the agreement above is not the defaults'


def test_boat_cg_step_returns_the_iterate_before_the_tolerance_was_met():
    """The property the adapter's ``CG.tolerance = 0`` avoids: BOAT's ``cg_step`` breaks on ‖r‖ < ε and returns the
    previous iterate (zeros when the first step meets it), where 2 steps on a 2×2 SPD system solve it."""
    make_backend("boat")
    import torch
    from boat_torch.utils.op_utils import cg_step

    a = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    b = [torch.tensor([1.0, -1.0], dtype=torch.float64)]
    solved = cg_step(lambda p: [a @ p[0]], b, max_iter=2, epsilon=0.0)[0]
    assert torch.allclose(solved, torch.linalg.solve(a, b[0]), rtol=1e-12)
    early = cg_step(lambda p: [a @ p[0]], b, max_iter=2, epsilon=1e9)[0]
    assert torch.count_nonzero(early) == 0


def test_boat_refuses_its_other_operations_with_the_reason():
    backend = registry.get("backend", "boat")()
    assert "own lower loop" in backend.supports("vso") and "BOME" in backend.supports("vso")
    assert "initialisation" in backend.supports("iad") and "dense" in backend.supports("exact")
    assert "lower steps" in backend.supports("gda")


def _coupled_jax(jnp):
    """f(θ, λ) = ½ θᵀAθ − θᵀBλ with θ = (w, b) coupled in A (SPD): the response VJP of v is BᵀA⁻¹v."""
    rng = np.random.default_rng(0)
    m = rng.standard_normal((5, 5))
    a, b = m @ m.T + 5 * np.eye(5), rng.standard_normal((5, 3))
    lam = rng.standard_normal(3)
    theta = np.linalg.solve(a, b @ lam)
    v = rng.standard_normal(5)

    def loss(lower, upper):
        t = jnp.concatenate([lower["w"], lower["b"]])
        return 0.5 * t @ jnp.asarray(a) @ t - t @ jnp.asarray(b) @ upper["lam"]

    r = SimpleNamespace(lower={"w": jnp.asarray(theta[:3]), "b": jnp.asarray(theta[3:])},
                        upper={"lam": jnp.asarray(lam)}, loss=loss)
    return r, {"w": jnp.asarray(v[:3]), "b": jnp.asarray(v[3:])}, b.T @ np.linalg.solve(a, v), (a, v, b)


def _cg(a: np.ndarray, v: np.ndarray, k: int) -> np.ndarray:
    x, r = np.zeros_like(v), v.copy()
    p, rs = r.copy(), r @ r
    for _ in range(k):
        ap = a @ p
        step = rs / (p @ ap)
        x, r = x + step * p, r - step * ap
        p, rs = r + (r @ r) / rs * p, r @ r
    return x


@pytest.mark.parametrize("method,k", [("exact", None), ("cg", 2), ("cg", 5)])
def test_optimistix_solves_the_whole_hessian_of_a_multi_leaf_lower_level(method, k):
    """lineax's LU materialises the operator over the pytree (cross-leaf blocks kept): the closed form; its CG runs
    exactly K iterations (2: short of the solution, as classic CG's 2 iterates; 5 = the dimension: the solution)."""
    backend = make_backend("optimistix")
    from mlo_bench.backends.optimistix import _optimistix_vjp

    r, v, want, (a, vec, b) = _coupled_jax(backend.jax.numpy)
    cfg = method_cfg(method, **({"iterations": k} if k else {}))
    got = _optimistix_vjp(method)(backend, r, v, cfg)["lam"]
    expected = want if method == "exact" or k == 5 else b.T @ _cg(a, vec, k)
    assert _rel(backend.to_numpy(got), expected) < 1e-10
    if method == "cg" and k == 2:
        assert _rel(backend.to_numpy(got), want) > 1e-4  # two iterations are not the solution: K is honoured


@pytest.mark.parametrize("method", ["cg", "unroll"])
def test_boat_zeroes_a_nan_gradient_and_the_adapter_keeps_it_nan(method):
    """BOAT's ``grad_unused_zero`` turns a NaN gradient into zeros (measured on the library, recorded in provenance);
    with a non-finite cotangent the adapter's VJP is NaN, so the runner records ``diverged`` as on every engine."""
    backend = make_backend("boat")
    from mlo_bench.backends.boat import _boat_vjp, nan_becomes_zero
    from mlo_bench.suite.engine.hypergradient import response

    assert nan_becomes_zero(backend.torch) and "NaN" in backend.versions()["peer_notes"]
    task = _task()
    params, states, batches = _state(backend, task)
    levels = task.levels()
    r = response(backend, levels[1], params, states, batches[levels[1].name], 2)
    v = {"w": backend.asarray(np.full(8, np.nan))}
    got = _boat_vjp(method)(backend, r, v, method_cfg(method))
    assert np.isnan(np.concatenate([np.ravel(backend.to_numpy(x)) for x in got.values()])).all()


def test_lineax_cg_calls_small_curvature_a_breakdown_in_float32():
    """The property the optimistix docstring states: lineax's CG returns NaN (and reports a non-finite solve) when
    |pᵀAp| ≤ 200·ε·n·‖r‖² — here at its second step on diag(1, 1e-6) in float32 — where the suite's cg goes on."""
    backend = make_backend("optimistix", "float32")
    import lineax as lx

    from mlo_bench.suite.engine.linear_solvers import cg

    jnp = backend.jax.numpy
    a, b = jnp.diag(jnp.array([1.0, 1e-6], dtype=jnp.float32)), jnp.ones(2, jnp.float32)
    op = lx.MatrixLinearOperator(a, lx.positive_semidefinite_tag)
    one = lx.linear_solve(op, b, lx.CG(rtol=0.0, atol=0.0, max_steps=1), throw=False)
    two = lx.linear_solve(op, b, lx.CG(rtol=0.0, atol=0.0, max_steps=2), throw=False)
    assert np.isfinite(backend.to_numpy(one.value)).all() and np.isnan(backend.to_numpy(two.value)).all()
    ours = backend.to_numpy(cg(backend.ops, lambda x: a @ x, b, 2))
    assert np.isfinite(ours).all() and ours[1] > 1e5  # it reached the small eigenvalue's direction
