"""pytest-benchmark: the time of ONE hypergradient per backend × method × d on the quadratic task.

The state is the one ``hypergrad_rel_error`` is measured at: the initial top parameters with the lower level at its
exact best response (from the task's oracle). The function timed is what the runner times in its ``hypergrad``
phase — the backend's chain (or the reverse-mode one) with the backend's override of the method (or the method's
generic ``response_vjp``), compiled first where the backend compiles (compile time stays out of the timing), each call
synchronised. Unavailable backends and unsupported methods skip with the reason.

    pytest benchmarks --benchmark-json=bench.json && mlo-bench report --bench bench.json

``extra_info`` carries backend, method, d, dtype, compile_s. Rounds are fixed per size (``pedantic``) so a full run
stays short; pass ``--benchmark-disable`` to only check that everything runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlo_bench.suite.engine.hypergradient import hypergradient_fn, oracle_state
from mlo_bench.suite.plugins import registry

registry.discover()

SIZES = (64, 256, 1024)
DTYPE = "float32"
#: rounds per size: enough for a stable median while the full suite stays near a minute on a 2-core CPU
ROUNDS = {64: 15, 256: 7, 1024: 3}
BACKENDS = registry.names("backend")
METHODS = registry.names("method")


def _method_cfg(name: str):
    cls = registry.get("method", name)
    cfg = getattr(cls, "Config", registry.NoConfig)()
    cfg.validate()
    return cfg


def hypergrad_call(backend_name: str, method_name: str, d: int):
    """(backend, zero-argument callable computing one synchronised hypergradient, compile seconds)."""
    why = registry.availability("backend", backend_name)
    if why is not None:
        pytest.skip(f"backend {backend_name} unavailable: {why}")
    backend = registry.get("backend", backend_name)()
    reason = backend.supports(method_name)
    if reason:
        pytest.skip(f"{backend_name} does not support {method_name}: {reason}")
    task_cls = registry.get("task", "quadratic")
    cfg = task_cls.Config(d=d)
    cfg.validate()
    task = task_cls(cfg, 0)
    reason = task.supports(method_name)
    if reason:
        pytest.skip(f"quadratic does not support {method_name}: {reason}")
    backend.setup(DTYPE, "cpu", 0)
    levels = task.levels()
    params, states, batches = oracle_state(backend, task)
    hyper_fn = hypergradient_fn(backend, registry.get("method", method_name)(), _method_cfg(method_name), levels, 1)

    compiled, compile_s = backend.compile(hyper_fn, (params, states, batches))

    def call():
        return backend.block(compiled(params, states, batches))

    return backend, call, compile_s


@pytest.mark.parametrize("d", SIZES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("backend_name", BACKENDS)
def test_hypergradient(benchmark, backend_name, method, d):
    backend, call, compile_s = hypergrad_call(backend_name, method, d)
    try:
        benchmark.group = f"hypergradient {method}"
        benchmark.extra_info.update(
            {"backend": backend_name, "method": method, "d": d, "dtype": DTYPE, "compile_s": compile_s,
             "task": "quadratic"})
        out = benchmark.pedantic(call, rounds=ROUNDS[d], iterations=1, warmup_rounds=1)
        h = backend.tree_to_numpy(out)
        assert np.isfinite(h["w"]).all() and h["w"].shape == (d,)
    finally:
        backend.teardown()
