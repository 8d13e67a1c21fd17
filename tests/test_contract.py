"""Contract tests over every registered plugin: whatever is added to tasks/, backends/ or methods/ is covered.

The cross product task × backend × method (8 × 9 × 16 = 1,152 runs of two outer steps) is ``slow`` (``pytest -m
slow``, ``tox -e slow``); the default run takes the subset :func:`covering` computes from the registries — every
method on the oracle task on every backend, every other task once on every backend but a peer engine, with the
hypergradient methods dealt in turn — so every task × backend and method × backend pair is run at least once and a new
plugin is covered without an edit here. Measured 2026-12-03 on the shared 2-core machine: ``pytest -q
tests/test_contract.py`` 185 passed, 6 skipped in 201 s at load 2.0 (165 combinations, 56 of them on an installed
backend); before, the default 379 combinations (every combination but a peer engine off the oracle task and the
stochastic solvers crossed with other problems) took ≈ 16 minutes of the whole run at load 2.5. The slowest of the
subset are naive × unroll on the neural tasks (10–18 s: naive materialises the best-response Jacobian) and jax on
darts (23 s of compile).
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from conftest import make_backend

from mlo_bench.suite.contract import Backend, Level, Method, Ops, Task
from mlo_bench.suite.engine.levels import chain
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare

TASKS, BACKENDS, METHODS = (registry.names(r) for r in ("task", "backend", "method"))


def test_registries_are_populated():
    assert "quadratic" in TASKS and "torch" in BACKENDS
    assert {"exact", "cg", "neumann", "darts", "unroll", "first_order"} <= set(METHODS)


@pytest.mark.parametrize("role", list(registry.ROLES))
def test_every_plugin_has_a_name_docs_and_a_validating_config(role):
    for name in registry.names(role):
        cls = registry.get(role, name)
        assert cls.name == name
        assert (cls.__doc__ or inspect.getmodule(cls).__doc__), f"{role} {name} has no docstring"
        cfg_cls = getattr(cls, "Config", registry.NoConfig)
        assert dataclasses.is_dataclass(cfg_cls)
        cfg_cls().validate()  # defaults are valid


@pytest.mark.parametrize("role,contract", [("backend", Backend), ("method", Method)])
def test_every_backend_and_method_has_each_declared_capability_of_its_type(role, contract):
    """The capabilities the suite reads as plain attributes (``Backend.CAPABILITIES``, ``Method.CAPABILITIES``: each
    declared on the contract with its default) are there on every registered class, of the declared type."""
    for name in registry.names(role):
        cls = registry.get(role, name)
        assert issubclass(cls, contract), f"{role} {name} does not subclass {contract.__name__}"
        obj = registry.backend(name) if role == "backend" else cls()
        for capability, kind in contract.CAPABILITIES.items():
            value = getattr(obj, capability)
            assert isinstance(value, kind), f"{role} {name}: {capability} is {value!r}, not {kind}"
    assert set(contract.CAPABILITIES) <= set(dir(contract)), "each capability has its default on the contract"


def test_a_method_class_not_subclassing_the_contract_gets_its_capability_defaults():
    class Legacy:  # a plugin written before the capabilities were declared on the contract
        name = "legacy"
        unrolls = True

        def response_vjp(self, backend, r, v, cfg):
            return v

    registry.declare_capabilities("method", Legacy)
    assert Legacy.unrolls is True, "what the class sets is kept"
    assert (Legacy.computes_hypergradient, Legacy.materialises, Legacy.init, Legacy.update) == (True, False, None, None)
    assert Legacy().gradients(None, 3) is None


def test_cuda_is_asked_of_the_backend_not_recognised_by_module_path():
    from mlo_bench.suite.run.plan import cuda_problem

    for name in BACKENDS:
        cls = registry.get("backend", name)
        on_torch = issubclass(cls, registry.get("backend", "torch"))
        assert (cls.cuda_visible() is not None) == on_torch, name
        if cls.cuda_visible() is False:
            assert cuda_problem(cls) == f"device=cuda: backend {name} sees no CUDA device here; use device=cpu or " \
                                        "device=auto"


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_contract(name):
    cls = registry.get("backend", name)
    assert issubclass(cls, Backend)
    backend = make_backend(name, "float64")
    assert isinstance(backend.ops, Ops)
    x = backend.asarray(np.array([1.0, -2.0, 3.0]))
    f = lambda t: backend.ops.sum(t * t * t)  # noqa: E731
    np.testing.assert_allclose(backend.to_numpy(backend.grad(f)(x)), 3 * np.array([1.0, 4.0, 9.0]))
    v = backend.asarray(np.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(backend.to_numpy(backend.hvp(f, x, v)), [6.0, 0.0, 18.0])
    np.testing.assert_allclose(backend.to_numpy(backend.hessian(f, x)), np.diag([6.0, -12.0, 18.0]))
    _, pull = backend.vjp(lambda t: t * 2.0, x)
    np.testing.assert_allclose(backend.to_numpy(pull(v)), [2.0, 0.0, 2.0])
    out, aux, pull = backend.trajectory_vjp(lambda t: (t * 3.0, {"aux": t + 1.0}), x)
    np.testing.assert_allclose(backend.to_numpy(out), [3.0, -6.0, 9.0])
    np.testing.assert_allclose(backend.to_numpy(aux["aux"]), [2.0, -1.0, 4.0])
    np.testing.assert_allclose(backend.to_numpy(pull(v)), [3.0, 0.0, 3.0])
    _, tangent = backend.jvp(lambda t: t * t, x, v)
    np.testing.assert_allclose(backend.to_numpy(tangent), [2.0, 0.0, 6.0])
    idx = backend.asarray(np.array([0, 2]))
    assert np.issubdtype(backend.to_numpy(idx).dtype, np.integer), "integer arrays must stay integer"
    assert backend.memory_kind in ("cpu_rss_delta", "cuda_allocated", "jax_device")
    backend.teardown()


@pytest.mark.parametrize("name", TASKS)
def test_task_contract(name):
    cls = registry.get("task", name)
    assert issubclass(cls, Task)
    task = cls(cls.Config(), 0)
    levels = task.levels()
    assert len(levels) >= 2 and all(isinstance(lv, Level) for lv in levels)
    assert levels[0].parent is None
    assert [lv.name for lv in chain(levels)] == [lv.name for lv in levels], "levels form a chain, listed top first"
    a, b = task.init_params(np.random.default_rng(3)), task.init_params(np.random.default_rng(3))
    assert set(a) == {lv.name for lv in levels}
    for lv in a:
        for k in a[lv]:
            np.testing.assert_array_equal(a[lv][k], b[lv][k])


#: the task with a closed-form oracle: every method runs on it on every backend in the default run (at task.d=6 each
#: run takes seconds)
ORACLE_TASK = "quadratic"


def _accepts(backend: str, method: str) -> bool:
    """Whether ``backend`` (configured with its defaults, not set up: nothing is imported) runs ``method`` at all: it
    does not refuse it (``Backend.supports``), or the method computes no hypergradient (``none``: any backend trains
    the lower levels alone, :func:`mlo_bench.suite.run.execute.refusal`)."""
    refused = registry.backend(backend).supports(method)
    return refused is None or not registry.get("method", method).computes_hypergradient


def covering(tasks, backends, methods, accepts=_accepts) -> set[tuple[str, str, str]]:
    """The combinations ``(task, backend, method)`` of the default run: a subset of the cross product that exercises
    every task × backend pair and every method × backend pair at least once, computed from the registries so that a new
    plugin is covered without a test edit.

    - the oracle task (:data:`ORACLE_TASK`) × every backend × every method: each method's run (or its refusal, with
      the reason) on each backend;
    - every other task once on every backend that is not a peer engine (a library, ``backends/_peers.py``: each run is
      a worker process; ``tests/test_peers.py`` and the peers experiment cover them), with the method dealt in turn from
      the methods the backend accepts (:func:`_accepts`) that compute a hypergradient (``none``, the baseline, runs on
      the oracle task) and do not materialise the Hessian (``exact`` is refused above a task's ``exact_max_params``,
      so it would cover nothing there; it runs on the oracle task): each time the
      one dealt least so far (ties: registry order), counting across backends, so that the backends put different
      methods on the tasks and every such method meets a task other than the oracle one where two backends run it.
    """
    chosen = {(ORACLE_TASK, b, m) for b in backends for m in methods}
    dealt = dict.fromkeys(methods, 0)  # how often each method was dealt to a task other than the oracle one
    for backend in backends:
        if hasattr(registry.get("backend", backend), "dist"):
            continue
        hand = [m for m in methods if accepts(backend, m) and registry.get("method", m).computes_hypergradient
                and not registry.get("method", m).materialises]
        for task in (t for t in tasks if t != ORACLE_TASK):
            if hand:
                method = min(hand, key=lambda m: dealt[m])  # the least dealt so far; ties: registry order
                dealt[method] += 1
                chosen.add((task, backend, method))
    return chosen


def _combinations():
    """task × backend × method: the :func:`covering` subset in the default run, the rest ``slow`` (``tox -e slow``)."""
    default = covering(TASKS, BACKENDS, METHODS)
    for method in METHODS:
        for backend in BACKENDS:
            for task in TASKS:
                marks = [] if (task, backend, method) in default else [pytest.mark.slow]
                yield pytest.param(task, backend, method, marks=marks, id=f"{method}-{backend}-{task}")


def test_the_default_run_covers_every_task_and_method_on_every_backend():
    """The covering subset meets its rule for the registered plugins: every backend runs every method on the oracle
    task, every backend but a peer engine runs every task, and every method runs on at least two backends."""
    default = covering(TASKS, BACKENDS, METHODS)
    for backend in BACKENDS:
        assert {m for t, b, m in default if b == backend and t == ORACLE_TASK} == set(METHODS), backend
        if not hasattr(registry.get("backend", backend), "dist"):
            assert {t for t, b, _ in default if b == backend} == set(TASKS), backend
    runners = {m: {b for _, b, mm in default if mm == m and _accepts(b, m)} for m in METHODS}
    assert all(len(bs) >= 2 for bs in runners.values()), runners
    assert len(default) < len(TASKS) * len(BACKENDS) * len(METHODS) / 3, "the default run stays a small subset"


@pytest.mark.parametrize("task,backend,method", list(_combinations()))
def test_every_combination_runs_or_says_why_not(tmp_path, task, backend, method):
    """Two outer steps of every task × backend × method: ``ok``, or ``unsupported`` with a reason — never an error."""
    from omegaconf import OmegaConf

    from mlo_bench.suite.run.compose import compose

    cfg = compose([f"task={task}", f"backend={backend}", f"method={method}", "steps=2", "progress=false",
                    f"results_dir={tmp_path}", "dtype=float64"])
    if task == "quadratic":
        OmegaConf.update(cfg, "task.d", 6)
    if task == "darts":  # jax compiles the supernet per function, in time growing with edges × primitives: the smallest
        # space (its convolutions are tested in test_darts.py / test_ops_nas.py)
        for key, value in {"task.primitives": ["none", "skip_connect", "max_pool_3x3"], "task.nodes": 1,
                           "task.cells": 1, "task.channels": 2, "task.retrain_steps": 2, "task.hessian_iters": 1,
                           "task.batch_size": 8, "task.exact_max_params": 0}.items():
            OmegaConf.update(cfg, key, value)
    if task == "mwn_text":  # exact's Hessian of even the tiny transformer takes minutes (tests/test_mwn_text.py),
        OmegaConf.update(cfg, "task.exact_max_params", 0)  # and so does naive's row-by-row Jacobian (183 s at load 4):
        if backend == "naive":  # its reverse chain (the original MWN code's plain autograd) is the one Table 2 runs
            OmegaConf.update(cfg, "backend.chain", "reverse")
    record = execute(prepare(cfg))
    assert record["status"] in ("ok", "unsupported"), record.get("traceback") or record["reason"]
    if record["status"] == "unsupported":
        assert record["reason"]
    else:
        m = record["metrics"]
        assert m["steps_done"] == 2 and np.isfinite(m["outer_loss"])
        cls = registry.get("method", method)
        phases = ["time_total_s", "compile_s"]
        if cls.steps_lower:  # the method moves the lower level in its hypergradient phase: no inner phase to time
            assert "time_inner_s" not in m and m["inner_step_evals"] == 0
        else:
            phases.append("time_inner_s")
        if cls.computes_hypergradient:
            phases += ["time_hypergrad_s", "time_outer_s"]
        else:  # a baseline method: no hypergradient phase, and nothing claims to be one
            assert "time_hypergrad_s" not in m and "hypergrad_rel_error" not in m
        for key in phases:
            assert m[key] is not None and m[key] >= 0
        assert m["memory_kind"]
