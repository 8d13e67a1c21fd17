"""The floor of a hypergradient: how many lower-level gradients it costs, against how long it takes.

A matrix-free hypergradient is a fixed number of gradient-like passes (``Method.gradients`` per edge: a Hessian-vector
product, a mixed VJP, a gradient, a pullback through an optimizer step count one each) plus the top loss's own
gradient: cg with K iterations K + 2, neumann K + 2, darts 2 + 1, unroll with K inner steps K + 1, first_order 1. Its
time divided by the time of ONE lower-level gradient at the same state, on the same backend, says how close an
implementation comes to that count: a ratio near the count is the floor (a second-order pass costs somewhat more
than a gradient, so ≈ 1–2× the count is what the arithmetic allows); far above it, the time goes to dispatch, syncs
or recomputation rather than to gradients.

After training (outside the run's clock) a run times, in :data:`REPEATS` interleaved pairs (after one warm-up pair),
one hypergradient — the compiled function the loop runs, at the final state on the last step's batches; for ``unroll``
its forward (the differentiated inner steps) and pullback, as ``flops_hypergrad`` counts them; only where the run has a
gradient count — and one gradient of the level below the top w.r.t. its own parameters, at the same state on its batch.
It records the medians of their process CPU time (``cpu_hypergrad_s``, ``cpu_lower_grad_s``), the gradient's wall-clock
median (``time_lower_grad_s``) and ``gradient_count`` (``None`` for a method that does not count in gradients or a
backend that replaces the chain, e.g. naive's materialised Jacobians). The report's "Floor" section divides the first
by the second and sets the quotient beside the count, and ``flops_hypergrad`` by ``flops_lower_grad`` (the same
gradient's counted FLOPs): the hypergradient in gradients by arithmetic, a figure no load disturbs.

Why CPU time, and pairs: on a shared machine a wall-clock median charges the time a call spends preempted to the
longer call (a call longer than the scheduler's slice is interrupted far more often than a short one). Measured at
load ≈ 4 on 2 cores (docs/floor.md: ``mlo-bench run -m task=quadratic task.d=1000 backend=torch
method=cg steps=60``): torch cg's loop wall quotient was 26.7 gradients, its paired CPU quotient 10.9, its counted
FLOPs 9.0; timing both clocks per call over 60 pairs, 52% of cg's calls were preempted against 12% of the gradient's.
CPU time counts every thread of the process, so with ``threads`` > 1 it is the work of all of them, not the latency.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from mlo_bench.suite.engine.levels import level_gradient

#: timed pairs (hypergradient, lower-level gradient), after one warm-up pair …
REPEATS = 15
#: … or fewer (at least :data:`MIN_REPEATS`) once the pairs have taken this many seconds: a slow hypergradient
#: (seconds on a large task) needs no fifteen samples to be told from a fast one
BUDGET_S = 2.0
MIN_REPEATS = 3


def gradient_count(run: Any) -> int | None:
    """Gradient-like passes of one hypergradient: Σ over edges of the method's count, + the top loss's gradient."""
    per_edge = run.plan.method.gradients
    if not run.trains_upper or run.backend.chain() is not None:
        return None
    counts = [per_edge(run.plan.method_cfg, run.steps[lv.name]) for lv in run.lower]
    return None if any(c is None for c in counts) else int(sum(counts)) + 1


def _lower_grad(run: Any):
    """The gradient the level below the top steps along (:func:`mlo_bench.suite.engine.levels.level_gradient`), as a
    function of (params, batch); and the level's name."""
    backend, level = run.backend, run.lower[0]

    def grad(params, batch):
        g = level_gradient(backend.ops, level, params, batch, level.parent, backend.grad)
        return g(params[level.name], params[level.parent])

    return grad, level.name


def _hypergradient(run: Any, params, states, mstate, rounds, top_batch):
    """One hypergradient as the loop computes it, with its compiled phases at this state (``None`` when the run has
    none compiled)."""
    fns = run.compiled
    if run.unrolls:
        def unrolled():
            p1, s1, pull = fns.forward(params, states, rounds)
            return fns.backward(pull, p1, s1, top_batch)

        return unrolled
    hyper = fns.hyper
    if hyper is None:
        return None
    hb = run.hyper_batches(rounds, top_batch)
    return lambda: hyper(params, states, hb, mstate)[0]


def _timed(block, fn) -> tuple[float, float]:
    """(wall, process CPU) seconds of one synchronised call."""
    wall, cpu = time.perf_counter(), time.process_time()
    block(fn())
    return time.perf_counter() - wall, time.process_time() - cpu


def paired_seconds(block, hyper, grad, repeats: int = REPEATS, budget_s: float = BUDGET_S) -> dict[str, float]:
    """Medians over ``repeats`` interleaved pairs (after one warm-up pair; fewer, not under :data:`MIN_REPEATS`,
    past ``budget_s`` seconds) of the gradient's wall and CPU time and, when ``hyper`` is given, the hypergradient's
    CPU time."""
    samples: dict[str, list[float]] = {"grad_wall": [], "grad_cpu": [], "hyper_cpu": []}
    start = time.perf_counter()
    for i in range(repeats + 1):
        if i > MIN_REPEATS and time.perf_counter() - start > budget_s:
            break
        if hyper is not None:
            _, cpu = _timed(block, hyper)
            samples["hyper_cpu"].append(cpu)
        wall, cpu = _timed(block, grad)
        samples["grad_wall"].append(wall)
        samples["grad_cpu"].append(cpu)
    return {k: statistics.median(v[1:]) for k, v in samples.items() if len(v) > 1}


def measure(run: Any, params: dict[str, Any], states: dict[str, Any], mstate: Any, rounds: list,
            top_batch: Any) -> dict[str, Any]:
    """``gradient_count``, ``time_lower_grad_s``, ``cpu_lower_grad_s``, ``cpu_hypergrad_s`` (``None`` without a
    count) and ``flops_lower_grad`` (the same gradient's counted FLOPs) at the state reached after the last step on its
    batches, for a run that trains its upper level (``{}`` otherwise)."""
    if not run.trains_upper or not run.lower:
        return {}
    grad, name = _lower_grad(run)
    batch = run.hyper_batches(rounds, top_batch).get(name)
    fn, _ = run.backend.compile(grad, (params, batch))
    count = gradient_count(run)
    # no count, no floor: exact's Hessians or a materialised chain (minutes at the complexity experiment's largest d)
    # are not timed again
    hyper = None if count is None else _hypergradient(run, params, states, mstate, rounds, top_batch)
    # ranks that are processes run the same collectives: the same number of repeats on each, not a time budget
    budget = BUDGET_S if getattr(run.backend, "world_size", 1) == 1 else float("inf")
    t = paired_seconds(run.backend.block, hyper, lambda: fn(params, batch), budget_s=budget)
    return {"gradient_count": count, "time_lower_grad_s": t["grad_wall"],
            "cpu_lower_grad_s": t["grad_cpu"], "cpu_hypergrad_s": t.get("hyper_cpu"),
            "flops_lower_grad": run.backend.count_flops(grad, (params, batch))}
