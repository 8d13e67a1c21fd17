"""The floor of a hypergradient: how many lower-level gradients it costs, against how long it takes.

A matrix-free hypergradient is a fixed number of gradient-like passes (``Method.gradients`` per edge: a Hessian-vector
product, a mixed VJP, a gradient, a pullback through an optimizer step count one each) plus the top loss's own
gradient: cg with K iterations K + 2, neumann K + 2, darts 2 + 1, unroll with K inner steps K + 1, first_order 1. Its
time divided by the time of ONE lower-level gradient at the same state, on the same backend, says how close an
implementation comes to that count: a ratio near the count is the floor (a second-order pass costs somewhat more
than a gradient, so ≈ 1–2× the count is what the arithmetic allows); far above it, the time goes to dispatch, syncs
or recomputation rather than to gradients.

After training (outside the run's clock) a run records ``time_lower_grad_s`` — the median of :data:`REPEATS` timed
calls (after one warm-up) of the compiled gradient of the level below the top, w.r.t. its own parameters, at the
final state on its last batch — and ``gradient_count`` (``None`` for a method that does not count in gradients or a
backend that replaces the chain, e.g. naive's materialised Jacobians). The report divides ``time_hypergrad_s`` by the
first and sets the quotient beside the second (its "Floor" section), and ``flops_hypergrad`` by ``flops_lower_grad``
(the same gradient's counted FLOPs): the hypergradient in gradients by arithmetic, a figure no load disturbs.
"""

from __future__ import annotations

from typing import Any

from mlo_bench.suite.measure import PhaseTimer

#: timed calls of the lower-level gradient (after one warm-up call)
REPEATS = 15


def gradient_count(run: Any) -> int | None:
    """Gradient-like passes of one hypergradient: Σ over edges of the method's count, + the top loss's gradient."""
    per_edge = getattr(run.plan.method, "gradients", None)
    if per_edge is None or not run.trains_upper or run.backend.chain() is not None:
        return None
    counts = [per_edge(run.plan.method_cfg, run.steps[lv.name]) for lv in run.lower]
    return None if any(c is None for c in counts) else int(sum(counts)) + 1


def _lower_grad(run: Any):
    backend, ops, level = run.backend, run.backend.ops, run.lower[0]

    def grad(params, batch):
        return backend.grad(lambda th: level.loss(ops, {**params, level.name: th}, batch))(params[level.name])

    return grad, level.name


def lower_grad_seconds(run: Any, params: dict[str, Any], batches: dict[str, Any]) -> float | None:
    """Median seconds of one gradient of the level below the top w.r.t. its parameters, at ``params`` on its batch
    in ``batches`` (compiled where the backend compiles; compile time not counted)."""
    grad, name = _lower_grad(run)
    batch = batches.get(name)
    fn, _ = run.backend.compile(grad, (params, batch))
    timer = PhaseTimer(run.backend.block)
    for _ in range(REPEATS + 1):
        timer.time("grad", fn, params, batch)
    return timer.median("grad")


def measure(run: Any, params: dict[str, Any], batches: dict[str, Any]) -> dict[str, Any]:
    """``gradient_count``, ``time_lower_grad_s`` and ``flops_lower_grad`` (the same gradient's counted FLOPs, to set
    beside ``flops_hypergrad``: the floor by arithmetic, which no load disturbs) for a run that trains its upper
    level (``{}`` otherwise)."""
    if not run.trains_upper or not run.lower:
        return {}
    grad, name = _lower_grad(run)
    return {"gradient_count": gradient_count(run), "time_lower_grad_s": lower_grad_seconds(run, params, batches),
            "flops_lower_grad": run.backend.count_flops(grad, (params, batches.get(name)))}
