"""Oracle tests: every method on the torch backend against the quadratic task's closed forms (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import hypergrad_at_best_response, make_task, rel_error

from mlo_bench.tasks.quadratic import coupling


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_exact_matches_closed_form(torch64, levels):
    task = make_task(d=30, levels=levels)
    hg, top = hypergrad_at_best_response(torch64, task, "exact")
    assert rel_error(hg, task.oracle().hypergradient(top)) < 1e-8


@pytest.mark.parametrize("method,knob,schedule,final_tol", [
    ("cg", "iterations", [1, 3, 8, 40], 1e-6),
    ("neumann", "iterations", [1, 10, 40, 300], 1e-6),
])
@pytest.mark.parametrize("levels", [2, 3])
def test_iterative_methods_converge(torch64, method, knob, schedule, final_tol, levels):
    task = make_task(d=30, levels=levels, condition=5.0)
    oracle = task.oracle()
    errors = []
    for k in schedule:
        hg, top = hypergrad_at_best_response(torch64, task, method, **{knob: k})
        errors.append(rel_error(hg, oracle.hypergradient(top)))
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < final_tol, errors


def test_neumann_alpha_scales_the_series(torch64):
    """A smaller step alpha converges more slowly (K fixed): the knob is wired through."""
    task = make_task(d=20, condition=5.0)
    oracle = task.oracle()
    errs = {}
    for alpha in (1.0, 0.3):
        hg, top = hypergrad_at_best_response(torch64, task, "neumann", iterations=20, alpha=alpha)
        errs[alpha] = rel_error(hg, oracle.hypergradient(top))
    assert errs[1.0] < errs[0.3]


def _blocks(task):
    a = task.data()
    return a["A1"], a["B1"], coupling(task.cfg), task.cfg.ridge


def test_darts_matches_its_own_closed_form(torch64):
    """darts ≈ ∂g/∂λ − ∂²f/∂λ∂θ · v with v = ∂g/∂θ; for the quadratic −∂²f/∂λ∂θ = s·Bᵀ (H⁻¹ taken as I)."""
    task = make_task(d=25, ridge=0.3)
    hg, top = hypergrad_at_best_response(torch64, task, "darts", alpha=0.01)
    _, b_mat, s, ridge = _blocks(task)
    theta = task.oracle().best_response(top)["x1"]["w"]
    v = theta - task.data()["b"]
    expected = ridge * top["w"] + s * b_mat.T @ v
    np.testing.assert_allclose(hg["w"], expected, rtol=1e-7, atol=1e-10)
    # …and it is not the true hypergradient: H⁻¹ ≈ I is an approximation.
    assert rel_error(hg, task.oracle().hypergradient(top)) > 1e-2


@pytest.mark.parametrize("k", [1, 2, 5])
def test_unroll_matches_derivative_of_k_sgd_steps(torch64, k):
    """θ_K(λ) after K steps of θ ← θ − η(Aθ − sBλ − c): dθ_K/dλ = Σ_{j<K} (I − ηA)^j · η s B."""
    task = make_task(d=20, ridge=0.2)
    hg, top = hypergrad_at_best_response(torch64, task, "unroll", unroll_steps=k)
    a_mat, b_mat, s, ridge = _blocks(task)
    eta = task.step_sizes()[0]
    step = np.eye(len(a_mat)) - eta * a_mat
    jac = sum(np.linalg.matrix_power(step, j) for j in range(k)) @ (eta * s * b_mat)
    theta = task.oracle().best_response(top)["x1"]["w"]
    expected = ridge * top["w"] + jac.T @ (theta - task.data()["b"])
    np.testing.assert_allclose(hg["w"], expected, rtol=1e-9, atol=1e-12)


def test_unroll_approaches_exact_with_depth(torch64):
    task = make_task(d=20, condition=3.0)
    oracle = task.oracle()
    errs = []
    for k in (1, 10, 100):
        hg, top = hypergrad_at_best_response(torch64, task, "unroll", unroll_steps=k)
        errs.append(rel_error(hg, oracle.hypergradient(top)))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-6, errs


def test_first_order_is_the_direct_gradient(torch64):
    task = make_task(d=15, ridge=0.5)
    hg, top = hypergrad_at_best_response(torch64, task, "first_order")
    np.testing.assert_allclose(hg["w"], 0.5 * top["w"], rtol=1e-12)


def test_oracle_hypergradient_matches_finite_differences():
    """The oracle itself, checked against central differences of the closed-form objective F(x_0)."""
    task = make_task(d=8, levels=3, condition=4.0)
    oracle = task.oracle()
    x0 = np.random.default_rng(1).standard_normal(8)
    g = oracle.hypergradient({"w": x0})["w"]
    eps = 1e-6
    fd = np.array([
        (oracle.objective({"w": x0 + eps * e}) - oracle.objective({"w": x0 - eps * e})) / (2 * eps)
        for e in np.eye(8)
    ])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7)


def test_oracle_optimum_is_a_minimum():
    task = make_task(d=10)
    oracle = task.oracle()
    f_star = oracle.optimum()
    rng = np.random.default_rng(2)
    assert all(oracle.objective({"w": rng.standard_normal(10)}) > f_star for _ in range(20))
