"""The naive backend: plain autograd, materialised best-response Jacobians multiplied along the chain — same numbers
as torch's reverse-mode chain and the quadratic oracle; every method but exact and unroll is ``unsupported``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_task, rel_error
from test_jax_backend import at_best_response, hypergrad

import mlo_bench.backends.naive as naive_mod
from mlo_bench.suite.cli import main
from mlo_bench.suite.contract.method import Response
from mlo_bench.suite.engine import optim
from mlo_bench.suite.engine.hypergradient import hypergradient, level_loss, level_step
from mlo_bench.suite.engine.implicit import mixed_vjp
from mlo_bench.suite.plugins import registry


def _setup(name: str):
    backend = registry.get("backend", name)()
    backend.setup("float64", "cpu", 0)
    return backend


@pytest.fixture
def naive():
    return _setup("naive")


@pytest.fixture
def torch64():
    return _setup("torch")


def _response(backend, task, params_np, k=1, unroll_steps=1):
    levels = task.levels()
    params = backend.tree_asarray(params_np)
    data = backend.tree_asarray(task.data())
    level, parent = levels[k], levels[k - 1].name
    state = optim.init(backend.ops, level.optimizer, params[level.name])
    return Response(level_loss(backend.ops, level, params, data, parent), params[level.name], params[parent],
                    level_step(backend.ops, level, params, data, parent, backend.grad), state, unroll_steps)


@pytest.mark.parametrize("levels", [2, 3])
def test_exact_matches_the_oracle(naive, levels):
    task = make_task(d=20, levels=levels)
    params, top = at_best_response(task)
    hg = hypergrad(naive, task, "exact", params)
    assert rel_error(hg, task.oracle().hypergradient(top)) < 1e-8


@pytest.mark.parametrize("levels", [2, 3])
@pytest.mark.parametrize("method,unroll_steps,inner", [
    ("exact", 1, optim.OptimizerConfig(name="sgd", lr=1.0)),
    ("unroll", 1, optim.OptimizerConfig(name="sgd", lr=1.0)),
    ("unroll", 3, optim.OptimizerConfig(name="sgd", lr=0.5, momentum=0.9)),
    ("unroll", 2, optim.OptimizerConfig(name="adam", lr=0.1)),
])
def test_agrees_with_torch_reverse_mode(naive, torch64, levels, method, unroll_steps, inner):
    task = make_task(d=12, levels=levels)
    task.cfg.inner = inner
    params = task.init_params(np.random.default_rng(1))
    a = hypergrad(naive, task, method, params, unroll_steps=unroll_steps)
    b = hypergrad(torch64, task, method, params, unroll_steps=unroll_steps)
    assert rel_error(a, b) < 1e-10


def test_jacobians_are_materialised_dense_matrices(naive):
    """exact: J = s·A⁻¹B (the oracle's); unroll, K plain SGD steps: J_K = (I − lr·A) J_{K−1} + lr·s·B."""
    task = make_task(d=8, levels=2, coupling=0.7)
    task.cfg.inner = optim.OptimizerConfig(name="sgd", lr=0.3)
    a, b, s = task.data()["A1"], task.data()["B1"], task.cfg.coupling
    params = task.init_params(np.random.default_rng(0))
    j = naive_mod.exact_jacobian(naive, _response(naive, task, params), None)
    assert tuple(j.shape) == (8, 8)
    np.testing.assert_allclose(j.numpy(), s * np.linalg.solve(a, b), rtol=1e-9, atol=1e-12)
    expected = np.zeros((8, 8))
    for _ in range(3):
        expected = (np.eye(8) - 0.3 * a) @ expected + 0.3 * s * b
    j = naive_mod.unroll_jacobian(naive, _response(naive, task, params, unroll_steps=3), None)
    np.testing.assert_allclose(j.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_chain_multiplies_one_jacobian_per_level(naive, monkeypatch):
    calls = []
    real = naive_mod.exact_jacobian

    def spy(backend, r, cfg):
        jac = real(backend, r, cfg)
        calls.append(tuple(jac.shape))
        return jac

    monkeypatch.setitem(naive_mod.JACOBIANS, "exact", spy)
    task = make_task(d=5, levels=4)
    hypergrad(naive, task, "exact", task.init_params(np.random.default_rng(0)))
    assert calls == [(5, 5)] * 3


def test_only_exact_and_unroll_are_supported(naive):
    for method in registry.names("method"):
        reason = naive.supports(method)
        if method in ("exact", "unroll"):
            assert reason is None and naive.override(method) is not None
        else:
            assert reason and "naive" in reason and naive.override(method) is None


def test_never_uses_torch_func(naive, monkeypatch):
    def banned(*args, **kwargs):
        raise AssertionError("torch.func used by the naive backend")

    for name in ("grad", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "vmap", "functional_call"):
        monkeypatch.setattr(torch.func, name, banned)
    task = make_task(d=6, levels=3)
    params = task.init_params(np.random.default_rng(0))
    for method in ("exact", "unroll"):
        hypergrad(naive, task, method, params, unroll_steps=2)
    x = naive.asarray(np.array([0.3, -1.0, 2.0]))
    f = lambda t: naive.ops.sum(naive.ops.tanh(t) * t * t)  # noqa: E731
    naive.grad(f)(x), naive.hvp(f, x, x), naive.hessian(f, x), naive.jvp(f, x, x), naive.vjp(f, x)[1](x.sum())


def test_primitives_agree_with_torch_func(naive, torch64):
    rng = np.random.default_rng(0)
    xn, vn, ln = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(3)
    m = rng.standard_normal((4, 3))

    def check(backend):
        ops = backend.ops
        x, v, lam, mat = (backend.asarray(a) for a in (xn, vn, ln, m))
        f = lambda t: ops.sum(ops.tanh(t) * t * t) + ops.sum(ops.exp(0.1 * t))  # noqa: E731
        def loss(th, la):
            th, la = th["w"], la["w"]
            return ops.sum(ops.tanh(th) * ops.matmul(mat, la)) + ops.sum(th * th * th)

        r = Response(loss, {"w": x}, {"w": lam}, None, None, 1)
        out = [backend.grad(f)(x), backend.hvp(f, x, v), backend.hessian(f, x), backend.jvp(f, x, v)[1],
               backend.vjp(lambda t: ops.tanh(t) * t, x)[1](v), mixed_vjp(backend, r, {"w": v})["w"]]
        return [backend.to_numpy(o) for o in out]

    for a, b in zip(check(naive), check(torch64), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_top_level_derivatives_keep_no_graph(naive):
    """Outside a hypergradient nothing is kept (the inner loop's steps must not chain graphs across steps)."""
    x = naive.asarray(np.array([1.0, 2.0]))
    f = lambda t: naive.ops.sum(t * t * t)  # noqa: E731
    assert not naive.grad(f)(x).requires_grad
    out, pull = naive.vjp(lambda t: t * t, x)
    assert not out.requires_grad and not pull(x).requires_grad
    assert not naive.hvp(f, x, x).requires_grad and not naive.hessian(f, x).requires_grad


def test_materialised_response_vjp_in_the_generic_chain(naive, torch64):
    """The override, used as an ordinary response VJP in the reverse-mode chain, gives the same hypergradient."""
    task = make_task(d=7, levels=3)
    params = task.init_params(np.random.default_rng(4))
    a = hypergrad(naive, task, "exact", params)
    levels = task.levels()
    p = naive.tree_asarray(params)
    states = {lv.name: optim.init(naive.ops, lv.optimizer, p[lv.name]) for lv in levels}
    data = naive.tree_asarray(task.data())
    b = hypergradient(naive, naive.override("exact"), None, levels, p, states, {lv.name: data for lv in levels}, 1)
    assert rel_error(a, naive.tree_to_numpy(b)) < 1e-12


def _record(tmp_path):
    (path,) = tmp_path.glob("runs/*/record.json")
    return json.loads(path.read_text())


def test_cli_three_levels_exact_agrees_with_the_oracle(tmp_path, capsys):
    code = main(["run", "task=quadratic", "task.levels=3", "task.d=20", "backend=naive", "method=exact",
                 "dtype=float64", "steps=3", "progress=false", f"results_dir={tmp_path}"])
    capsys.readouterr()
    record = _record(tmp_path)
    assert code == 0 and record["status"] == "ok"
    assert record["metrics"]["hypergrad_rel_error"] <= 1e-8


def test_cli_cg_is_unsupported_with_a_reason(tmp_path, capsys):
    code = main(["run", "task=quadratic", "task.d=10", "backend=naive", "method=cg", "steps=2", "progress=false",
                 f"results_dir={tmp_path}"])
    capsys.readouterr()
    record = _record(tmp_path)
    assert code == 1
    assert record["status"] == "unsupported" and "exact and unroll" in record["reason"]


@pytest.mark.parametrize("method,knobs", [("unroll", {}), ("exact", {}), ("cg", {"iterations": 30}),
                                          ("darts", {})])
def test_reverse_chain_is_plain_autograd_in_reverse_mode_and_agrees_with_torch(torch64, method, knobs):
    """backend.chain=reverse (the original MWN code's way): no materialised Jacobian, every method runs, and the
    numbers are torch's reverse-mode chain's."""
    reverse = registry.get("backend", "naive")(naive_mod.NaiveConfig(chain="reverse"))
    reverse.setup("float64", "cpu", 0)
    assert reverse.supports(method) is None and reverse.chain() is None and reverse.override(method) is None
    task = make_task(d=12, levels=3)
    params, _ = at_best_response(task)
    ours = hypergrad(reverse, task, method, params, **knobs)
    ref = hypergrad(torch64, task, method, params, **knobs)
    assert rel_error(ours, ref) < 1e-9
    with pytest.raises(ValueError, match="backend.chain must be one of materialised, reverse"):
        naive_mod.NaiveConfig(chain="forward").validate()
