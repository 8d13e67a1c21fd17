"""The jax backend: oracle agreement, agreement with torch, jit and compile time, run-scoped x64, and a clean
"unavailable" where jax is missing. Tests that need jax skip without it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_task, method_cfg, rel_error

from mlo_bench.suite.cli import main
from mlo_bench.suite.engine import optim
from mlo_bench.suite.engine.hypergradient import hypergradient_fn
from mlo_bench.suite.plugins import registry

ROOT = Path(__file__).resolve().parent.parent
METHODS = registry.names("method")


def _setup(name: str, dtype: str = "float64"):
    backend = registry.get("backend", name)()
    backend.setup(dtype, "cpu", 0)
    return backend


@pytest.fixture
def jax_backend():
    pytest.importorskip("jax")
    backend = _setup("jax")
    yield backend
    backend.teardown()


@pytest.fixture
def torch_backend():
    backend = _setup("torch")
    yield backend
    backend.teardown()


def hypergrad(backend, task, method, params_np, unroll_steps=1, compiled=False, **knobs):
    """One hypergradient the way the runner computes it (override, chain hook, optionally compiled) → numpy."""
    levels = task.levels()
    params = backend.tree_asarray(params_np)
    states = {lv.name: optim.init(backend.ops, lv.optimizer, params[lv.name]) for lv in levels}
    data = backend.tree_asarray(task.data())
    batches = {lv.name: data for lv in levels}
    fn = hypergradient_fn(backend, registry.get("method", method)(), method_cfg(method, **knobs), levels,
                          unroll_steps)

    if compiled:
        fn, _ = backend.compile(fn, (params, states, batches))
    return backend.tree_to_numpy(fn(params, states, batches))


def at_best_response(task):
    top = task.init_params(np.random.default_rng(task.seed))["x0"]
    return task.oracle().best_response(top), top


def test_module_imports_and_reports_unavailable_without_jax():
    code = (
        "import sys; sys.modules['jax'] = None\n"
        "import mlo_bench.backends.jax as m\n"
        "from mlo_bench.suite.contract import Unavailable\n"
        "try:\n    m.JaxBackend.check_available()\nexcept Unavailable as exc:\n    print('UNAVAILABLE', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "UNAVAILABLE" in out.stdout and "jax" in out.stdout


@pytest.mark.parametrize("levels", [2, 3])
@pytest.mark.parametrize("method,knobs,tol", [("exact", {}, 1e-8), ("cg", {"iterations": 60}, 1e-6)])
def test_oracle_hypergradient_under_jit(jax_backend, levels, method, knobs, tol):
    task = make_task(d=20, levels=levels)
    params, top = at_best_response(task)
    hg = hypergrad(jax_backend, task, method, params, compiled=True, **knobs)
    assert rel_error(hg, task.oracle().hypergradient(top)) < tol


@pytest.mark.parametrize("levels", [2, 3])
def test_every_method_agrees_with_torch(jax_backend, torch_backend, levels):
    """Away from the best response, with inner momentum and a 2-step unroll: every method, same numbers."""
    task = make_task(d=12, levels=levels)
    task.cfg.inner = optim.OptimizerConfig(name="sgd", lr=0.5, momentum=0.9)
    params = task.init_params(np.random.default_rng(1))
    for method in METHODS:
        a = hypergrad(jax_backend, task, method, params, unroll_steps=2, compiled=True)
        b = hypergrad(torch_backend, task, method, params, unroll_steps=2)
        assert rel_error(a, b) < 1e-10, method


@pytest.mark.parametrize("method,knobs", [("cg", {"iterations": 7}), ("neumann", {"iterations": 5, "alpha": 0.8})])
def test_solver_loops_traced_once_equal_the_python_loop(jax_backend, method, knobs, monkeypatch):
    """jax supplies ``ops.fori_loop`` (lax.fori_loop); the solvers' Python fallback must give the same numbers."""
    task = make_task(d=10, levels=3)
    params = task.init_params(np.random.default_rng(2))
    a = hypergrad(jax_backend, task, method, params, compiled=True, **knobs)
    monkeypatch.delattr(type(jax_backend.ops), "fori_loop")  # the generic, Python-unrolled loop
    b = hypergrad(jax_backend, task, method, params, compiled=True, **knobs)
    assert rel_error(a, b) < 1e-12


@pytest.fixture
def x64_off():
    """The process starts with x64 off (jax's default); whatever it was is restored afterwards."""
    jax = pytest.importorskip("jax")
    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", False)
    yield jax
    jax.config.update("jax_enable_x64", before)


def test_x64_is_scoped_to_the_run(x64_off):
    jax = x64_off
    backend = _setup("jax", "float64")
    try:
        assert jax.config.jax_enable_x64
        assert backend.to_numpy(backend.asarray(np.ones(3, dtype=np.float32))).dtype == np.float64
        assert np.issubdtype(backend.to_numpy(backend.asarray(np.arange(3))).dtype, np.integer)
    finally:
        backend.teardown()
    assert not jax.config.jax_enable_x64
    backend = _setup("jax", "float32")
    try:
        assert backend.asarray(np.ones(3)).dtype == np.float32
        assert np.issubdtype(backend.asarray(np.arange(3)).dtype, np.integer)
    finally:
        backend.teardown()


def test_failed_setup_restores_settings(x64_off):
    jax = x64_off
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is present: device=cuda is valid here")
    backend = registry.get("backend", "jax")()
    with pytest.raises(RuntimeError, match="no GPU"):
        backend.setup("float64", "cuda", 0)
    assert not jax.config.jax_enable_x64


def test_arrays_live_on_the_device_and_compile_is_timed(jax_backend):
    x = jax_backend.asarray(np.arange(4.0))
    assert x.devices() == {jax_backend._dev} and jax_backend.device == "cpu"
    f = lambda t: jax_backend.ops.sum(jax_backend.ops.tanh(t) * t)  # noqa: E731
    compiled, seconds = jax_backend.compile(jax_backend.grad(f), (x,))
    assert seconds > 0
    np.testing.assert_allclose(jax_backend.to_numpy(compiled(x)), jax_backend.to_numpy(jax_backend.grad(f)(x)))
    assert jax_backend.block({"x": x})["x"] is x
    assert set(jax_backend.versions()) >= {"jax", "jaxlib", "jax_platform"}


def test_cli_run_records_accuracy_and_compile_time(tmp_path, capsys):
    pytest.importorskip("jax")
    code = main(["run", "task=quadratic", "backend=jax", "method=cg", "dtype=float64", "method.iterations=60",
                 "steps=3", "progress=false", f"results_dir={tmp_path}"])
    capsys.readouterr()
    assert code == 0
    (path,) = tmp_path.glob("runs/*/record.json")
    record = json.loads(path.read_text())
    m = record["metrics"]
    assert record["status"] == "ok" and record["backend"] == "jax"
    assert m["hypergrad_rel_error"] <= 1e-6
    assert m["compile_s"] > 0
    assert m["memory_kind"] == "cpu_rss_delta"
    assert record["provenance"]["jax"] and record["provenance"]["jaxlib"]
