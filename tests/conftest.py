"""Shared fixtures: a float64 torch backend and helpers to evaluate one hypergradient at the oracle state."""

from __future__ import annotations

import numpy as np
import pytest

from mlo_bench.suite.engine.hypergradient import hypergradient, oracle_state
from mlo_bench.suite.plugins import registry

registry.discover()


def make_backend(name: str = "torch", dtype: str = "float64"):
    cls = registry.get("backend", name)
    why = registry.availability("backend", name)
    if why is not None:
        pytest.skip(f"backend {name} unavailable: {why}")
    backend = cls()
    backend.setup(dtype, "cpu", 0)
    return backend


def make_task(seed: int = 0, **knobs):
    cls = registry.get("task", "quadratic")
    cfg = cls.Config(**knobs)
    cfg.validate()
    return cls(cfg, seed)


def method_cfg(name: str, **knobs):
    cls = registry.get("method", name)
    cfg = getattr(cls, "Config", registry.NoConfig)(**knobs)
    cfg.validate()
    return cfg


def hypergrad_at_best_response(backend, task, method: str, unroll_steps: int = 1, top=None, **knobs):
    """The method's hypergradient (numpy) at the task's initial top parameters with exact lower levels."""
    if top is None:
        top = task.init_params(np.random.default_rng(task.seed))["x0"]
    params, states, batches = oracle_state(backend, task, top)
    m = registry.get("method", method)()
    hg = hypergradient(backend, m.response_vjp, method_cfg(method, **knobs), task.levels(), params, states, batches,
                       unroll_steps)
    return backend.tree_to_numpy(hg), top


def initial_state(b, task):
    """``(levels, params, states, batches)`` of ``task`` on backend ``b``: the parameters of seed 0, fresh optimizer
    states and every level's step-0 batch (the task's data included), as backend arrays."""
    from mlo_bench.suite.engine import optim

    levels = task.levels()
    params = b.tree_asarray(task.init_params(np.random.default_rng(0)))
    states = {lv.name: optim.init(b.ops, lv.optimizer, params[lv.name]) for lv in levels}
    data = b.tree_asarray(task.data())
    batches = {lv.name: {**data, **b.tree_asarray(task.batch(lv.name, 0))} for lv in levels}
    return levels, params, states, batches


def rel_error(a, b) -> float:
    a, b = np.ravel(a["w"]), np.ravel(b["w"])
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture
def torch64():
    return make_backend("torch", "float64")
