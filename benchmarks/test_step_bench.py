"""pytest-benchmark: ONE outer step of the training loop (batches, inner step, hypergradient, outer update, the
finiteness check) on the Betty-sized Meta-Weight-Net task, per backend × method — what a run's ``time_total_s /
steps`` measures. The config is :data:`mlo_bench.suite.measure.stepbench.BETTY_MWN` (MLP 64 → 100 → 10, weight net
1 → 100 → 1, batch 64, meta batch 100, one inner step, float32, CPU, one thread); ``naive`` runs with
``backend.chain=reverse`` (plain autograd, every method).

Each round is a chunk of :data:`CHUNK` outer steps, continuing training from the previous round. Backends are timed one
after the other here; for ratios on a shared machine use the interleaved ``python -m
mlo_bench.suite.measure.stepbench``.

    pytest benchmarks/test_step_bench.py --benchmark-json=step.json && mlo-bench report --bench step.json
"""

from __future__ import annotations

import pytest

from mlo_bench.suite.measure import stepbench, threads
from mlo_bench.suite.plugins import registry

registry.discover()

CHUNK = 10
ROUNDS = 10


@pytest.mark.parametrize("method", stepbench.METHODS)
@pytest.mark.parametrize("backend_name", stepbench.BACKENDS)
def test_outer_step(benchmark, backend_name, method):
    why = registry.availability("backend", backend_name)
    if why is not None:
        pytest.skip(f"backend {backend_name} unavailable: {why}")
    applied = threads.apply(1)
    ((b, m, overrides),) = stepbench.configs(list(stepbench.BETTY_MWN), [backend_name], [method])
    st = stepbench.make_stepper(b, m, overrides)
    if st.problem is not None:
        pytest.skip(st.problem)
    try:
        benchmark.group = "outer step (Betty-sized MWN)"
        benchmark.extra_info.update({"backend": backend_name, "method": method, "task": "mwn", "steps": CHUNK,
                                     "compile_s": st.compile_s, "threads": applied.get("torch")})
        benchmark.pedantic(st.chunk, args=(CHUNK,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
        assert st.t >= CHUNK and st.per_step and all(s > 0 for s in st.per_step)  # also under --benchmark-disable
    finally:
        st.backend.teardown()
