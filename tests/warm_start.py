"""Warm-started against cold ``cg`` / ``neumann`` along an outer trajectory of the quadratic task.

The top parameters follow gradient descent with the exact hypergradient (outer SGD at the task's lr); at every step
the lower level sits at its exact best response, and each method's hypergradient is compared with the oracle's.
Warm: the method's state (last solution) carried from step to step; cold: every solve from 0. The figure per
(mode, iterations) is the median relative error over steps 2..N. ``python tests/warm_start.py`` prints the table.
"""

from __future__ import annotations

import numpy as np

from mlo_bench.suite.engine.hypergradient import oracle_state, stateful_hypergradient_fn
from mlo_bench.suite.plugins import registry


def warm_start_errors(method: str = "cg", iterations=(1, 2, 3, 5, 10), steps: int = 30, d: int = 100,
                      lr: float = 0.01, seed: int = 0) -> dict[tuple[str, int], float]:
    registry.discover()
    task = registry.get("task", "quadratic")(registry.make_config("task", "quadratic", {"d": d}), seed)
    backend = registry.get("backend", "torch")()
    backend.setup("float64", "cpu", seed)
    oracle, levels = task.oracle(), task.levels()
    cls = registry.get("method", method)
    out = {}
    for warm in (False, True):
        for k in iterations:
            cfg = registry.make_config("method", method, {"iterations": k, "warm_start": warm})
            fn = stateful_hypergradient_fn(backend, cls(), cfg, levels, 1)
            top = task.init_params(np.random.default_rng(seed))["x0"]
            state, errors = None, []
            for t in range(steps):
                params, states, batches = oracle_state(backend, task, top)
                if state is None:
                    state = {lv.name: cls().init(backend, params[lv.name], cfg) for lv in levels[1:]}
                hg, state = fn(params, states, batches, state)
                exact = oracle.hypergradient(top)["w"]
                got = backend.to_numpy(hg["w"])
                if t >= 1:
                    errors.append(np.linalg.norm(got - exact) / np.linalg.norm(exact))
                top = {"w": top["w"] - lr * exact}
            out["warm" if warm else "cold", k] = float(np.median(errors))
    backend.teardown()
    return out


if __name__ == "__main__":
    import sys

    method = sys.argv[1] if len(sys.argv) > 1 else "cg"
    errors = warm_start_errors(method)
    ks = sorted({k for _, k in errors})
    print(f"{method}: median relative hypergradient error over steps 2..30 (quadratic d=100, κ=10, float64)")
    print("iterations " + " ".join(f"{k:>9}" for k in ks))
    for mode in ("cold", "warm"):
        print(f"{mode:<10} " + " ".join(f"{errors[mode, k]:9.2e}" for k in ks))
