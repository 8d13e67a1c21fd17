"""Linear solvers on random SPD problems (hypothesis), in numpy through a minimal ops shim."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlo_bench.suite.engine.linear_solvers import cg, neumann


class NumpyOps:
    zeros_like = staticmethod(np.zeros_like)
    sum = staticmethod(np.sum)
    sqrt = staticmethod(np.sqrt)
    where = staticmethod(np.where)


def spd(seed: int, d: int, condition: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * np.geomspace(1.0 / condition, 1.0, d)) @ q.T


problems = st.tuples(st.integers(0, 10_000), st.integers(2, 25), st.floats(1.0, 50.0))


@settings(max_examples=40, deadline=None)
@given(problems)
def test_cg_solves_spd_systems_in_d_iterations(problem):
    seed, d, condition = problem
    a = spd(seed, d, condition)
    b = {"w": np.random.default_rng(seed + 1).standard_normal(d)}
    x = cg(NumpyOps, lambda u: {"w": a @ u["w"]}, b, iterations=2 * d)
    np.testing.assert_allclose(a @ x["w"], b["w"], rtol=1e-6, atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(problems)
def test_cg_error_in_energy_norm_never_grows(problem):
    seed, d, condition = problem
    a = spd(seed, d, condition)
    b = np.random.default_rng(seed + 1).standard_normal(d)
    exact = np.linalg.solve(a, b)
    errs = []
    for k in range(1, d + 1):
        e = cg(NumpyOps, lambda u: {"w": a @ u["w"]}, {"w": b}, iterations=k)["w"] - exact
        errs.append(float(e @ a @ e))
    assert all(later <= earlier * (1 + 1e-9) + 1e-20 for earlier, later in zip(errs, errs[1:], strict=False))


@settings(max_examples=40, deadline=None)
@given(problems)
def test_neumann_matches_its_series_and_converges(problem):
    seed, d, condition = problem
    a = spd(seed, d, condition)
    b = np.random.default_rng(seed + 1).standard_normal(d)
    alpha, k = 1.0, 5
    series = alpha * sum(np.linalg.matrix_power(np.eye(d) - alpha * a, j) @ b for j in range(k + 1))
    out = neumann(NumpyOps, lambda u: {"w": a @ u["w"]}, {"w": b}, iterations=k, alpha=alpha)
    np.testing.assert_allclose(out["w"], series, rtol=1e-10, atol=1e-12)
    long = neumann(NumpyOps, lambda u: {"w": a @ u["w"]}, {"w": b}, iterations=int(40 * condition), alpha=alpha)
    assert np.linalg.norm(long["w"] - np.linalg.solve(a, b)) < 1e-4 * np.linalg.norm(np.linalg.solve(a, b))


def test_cg_at_convergence_stays_finite():
    """Once the residual is exactly zero the step sizes are 0/0: they must not turn into NaN."""
    a = np.diag([1.0, 2.0])
    out = cg(NumpyOps, lambda u: {"w": a @ u["w"]}, {"w": np.array([1.0, 0.0])}, iterations=10)
    assert np.all(np.isfinite(out["w"]))
    np.testing.assert_allclose(out["w"], [1.0, 0.0])


@settings(max_examples=20, deadline=None)
@given(problems)
def test_cg_stop_at_negative_curvature_changes_nothing_on_spd_systems(problem):
    seed, d, condition = problem
    a = spd(seed, d, condition)
    b = {"w": np.random.default_rng(seed + 1).standard_normal(d)}
    for k in (1, d // 2 + 1, d):
        plain = cg(NumpyOps, lambda u: {"w": a @ u["w"]}, b, iterations=k)
        guarded = cg(NumpyOps, lambda u: {"w": a @ u["w"]}, b, iterations=k, stop_on_negative_curvature=True)
        np.testing.assert_array_equal(plain["w"], guarded["w"])


def test_cg_stops_at_the_first_non_positive_curvature_and_keeps_its_iterate():
    """An indefinite A whose second CG direction has p^T A p < 0: classic CG keeps going (and here lands on the exact
    solution of the indefinite system, two iterations on a 2x2); the guarded one keeps the first iterate for good."""
    a = np.diag([1.0, -0.5])
    b = {"w": np.array([1.0, 1.0])}
    mv = lambda u: {"w": a @ u["w"]}  # noqa: E731
    first = cg(NumpyOps, mv, b, iterations=1)["w"]
    r = b["w"]
    np.testing.assert_allclose(first, (r @ r) / (r @ a @ r) * r)  # r^T A r = 0.5 > 0: the first step is taken
    plain = cg(NumpyOps, mv, b, iterations=2)["w"]
    np.testing.assert_allclose(plain, np.linalg.solve(a, b["w"]))
    for k in (2, 3, 10):
        guarded = cg(NumpyOps, mv, b, iterations=k, stop_on_negative_curvature=True)["w"]
        np.testing.assert_array_equal(guarded, first)
    negative = {"w": np.array([0.0, 1.0])}  # the very first direction has negative curvature: x stays at 0
    np.testing.assert_array_equal(cg(NumpyOps, mv, negative, iterations=3, stop_on_negative_curvature=True)["w"],
                                  [0.0, 0.0])
