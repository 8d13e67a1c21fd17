"""A fused outer step: the inner steps, the hypergradient, the finiteness check and the outer update in ONE compiled
function, called once per outer step — the step of :mod:`mlo_bench.suite.engine.outer_step`, traced whole.

Phase by phase (:meth:`mlo_bench.suite.engine.loop.Run.step`) a step is three or more calls, each synchronised so that
its time can be read, and the hypergradient's finiteness is one more computation and a transfer. On jax that costs as
much as the arithmetic at the sizes of the suite's demos (Betty-sized Meta-Weight-Net step: the phases' calls and syncs
were ≈ 2/3 of the step), so a run whose backend compiles (``Backend.fuses_step``; the ``fused`` run key: ``null`` =
where the backend asks for it, ``true`` = on any backend, ``false`` = never) steps through :class:`Fused`:

- outer step 0 runs phase by phase (it is the warm-up step, and its hypergradient is the one a run saves); every later
  step is one call of the compiled step, which also returns ⟨h, h⟩ of its hypergradient h — computed inside, so the
  host reads one scalar and a non-finite hypergradient still ends the run as ``diverged`` at its own step;
- the loop's clock (``time_total_s``) and ``time_step_s`` (median seconds per outer step) are the fused steps';
- the per-phase medians (``time_inner_s``, ``time_hypergrad_s``, ``time_outer_s``) come from a separate sampled pass
  after training: :data:`PHASE_SAMPLES` outer steps run phase by phase from the trained state on the first steps'
  batches, each phase synchronised and timed (the first, warm-up sample left out), and their results thrown away — so
  the trained parameters are those of the fused run and the phase figures say where a step's time goes, not how long
  the fused step took (their sum exceeds it by the calls and syncs fusing saves). ``phase_timing`` says ``sampled``.

Only the default ordering (``inner_first``) without selection is fused (a selecting level samples on the host between
scoring and its step; ``lookahead`` keeps its three-phase shape); anything else runs phase by phase.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlo_bench.suite.engine.step_phases import Diverged

#: outer steps of the sampled pass that times the phases of a fused run (the first is a warm-up)
PHASE_SAMPLES = 11


def wanted(plan: Any, backend: Any) -> bool:
    """Whether the ``fused`` key (``None``: the backend's ``fuses_step``) asks for a fused step."""
    return bool(backend.fuses_step) if plan.fused is None else bool(plan.fused)


def eligible(run: Any) -> bool:
    return run.trains_upper and not run.lookahead and not run.batches.selects


def step_fn(run: Any):
    """``fn(params, states, mstate, rounds, top_batch) -> (params, states, mstate, ⟨h, h⟩)``: one whole outer step,
    :func:`mlo_bench.suite.engine.outer_step.outer_step` over the run's uncompiled phases (the inner rounds or the
    differentiated trajectory, the method's chain, the top level's optimizer), traced into one function."""
    from mlo_bench.suite.engine.outer_step import outer_step
    from mlo_bench.suite.engine.trees import tree_vdot

    ops = run.backend.ops

    def fn(params, states, mstate, rounds, top_batch):
        params, states, mstate, hg, _ = outer_step(run.shape, run.plain, params, states, mstate, rounds, top_batch)
        return params, states, mstate, tree_vdot(ops, hg, hg)

    return fn


class Fused:
    """The compiled step of a run and the sampled pass that times its phases."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.fn: Any = None

    def compile(self, params, states, mstate) -> float:
        """Compile the step on outer step 0's arguments; returns the seconds it took."""
        rounds0, _ = self.run.batches.rounds(0, params)
        self.fn, seconds = self.run.backend.compile(step_fn(self.run), (params, states, mstate, rounds0,
                                                                          self.run.batches.top(0)))
        return seconds

    def step(self, t: int, params, states, mstate, timer: Any, capture: dict[str, Any] | None = None):
        """Outer step ``t`` (same signature and returns as :meth:`Run.step`): phase by phase at t = 0, fused after."""
        run = self.run
        if t == 0:
            return run.step(t, params, states, mstate, timer, capture)
        rounds, _ = run.batches.rounds(t, params)
        top_batch = run.batches.top(t)
        params, states, mstate, hh = self.fn(params, states, mstate, rounds, top_batch)
        finite = np.isfinite(run.backend.to_numpy(hh)).all()  # one scalar: also the step's synchronisation
        if not finite and not run.scales_hypergrad:  # loss-scaled (fp16): a skipped step, not a divergence
            raise Diverged(t + 1, "non-finite hypergradient")
        return params, states, mstate, rounds, top_batch, None

    def sample_phases(self, params, states, mstate, timer: Any, steps: int) -> None:
        """The sampled pass: ``min(PHASE_SAMPLES, steps)`` phase-by-phase steps from this state on the first steps'
        batches, timed into ``timer``; the results are discarded."""
        for t in range(min(PHASE_SAMPLES, steps)):
            params, states, mstate, *_ = self.run.step(t, params, states, mstate, timer)
