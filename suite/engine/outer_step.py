"""One outer step, written once, over its phase functions; run three ways.

:func:`outer_step` is the order of a step's phases for every kind of run (``ordering=inner_first``, the default:
``inner`` — each lower level's own optimizer steps, round by round — then ``hypergrad`` at the state reached, then
``outer``, the top level's update — a method that moves the lower level itself, ``Method.steps_lower``, has no
inner phase: its hypergradient phase steps the lower level too; ``ordering=lookahead``, the original Meta-Weight-Net
algorithm: the hypergradient from θ_t first — for a method that unrolls, through a virtual run of this step's inner
steps — the top level updated, then the real inner steps with the new upper parameters). A method that ``unrolls``
runs its inner phase with the graph kept (:attr:`Phases.forward`) and pulls back through it (:attr:`Phases.backward`);
a method that computes no hypergradient (``none``) runs the inner phase alone.

The same function is run

- phase by phase (:meth:`mlo_bench.suite.engine.loop.Run.step`): over the separately compiled phases, each call through
  the ``call`` hook (the loop's timer: synchronised, timed) and the hypergradient through ``seen`` (finite? saved?)
  before the outer update;
- whole (:mod:`mlo_bench.suite.engine.compiled_step`): over the uncompiled phases, traced into one compiled call;
- plain (:meth:`mlo_bench.suite.engine.loop.Run.one_step`): over the uncompiled phases, called as it is — what
  ``peak_live_bytes`` is counted on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlo_bench.suite.engine.step_phases import Round, first_batches, last_batches
from mlo_bench.suite.models.batch import WHOLE

Tree = Any


@dataclass(frozen=True)
class Shape:
    """What a run's outer step does: its top level, whether it trains it, unrolls, and looks ahead."""

    top: str
    trains_upper: bool
    unrolls: bool
    lookahead: bool
    #: the method moves the lower level itself (``Method.steps_lower``): no inner phase, the lower level's parameters
    #: taken from the method's state after the hypergradient, the whole data (these keys of the batches, the task's
    #: ``data()``) among its batches
    steps_lower: bool = False
    data_keys: frozenset[str] = frozenset()

    def hyper_batches(self, rounds: list[Round], top_batch: Any) -> dict[str, Any]:
        """Each level's batch for the hypergradient: a lower level's first (lookahead) or last (after the inner
        phase) one of this step, the top level's own; for a method that moves the lower level, the whole data too."""
        pick = first_batches if self.lookahead else last_batches
        out = pick(rounds, self.top, top_batch)
        if self.steps_lower:
            out[WHOLE] = {k: v for k, v in top_batch.items() if k in self.data_keys}
        return out


@dataclass(frozen=True)
class Phases:
    """The phase functions a step runs (compiled or not); a run needs only those of its shape."""

    inner: Callable  #: (params, states, rounds) -> (params, states)
    outer: Callable | None = None  #: (top params, top state, hypergradient) -> (top params, top state)
    hyper: Callable | None = None  #: (params, states, batches, method state) -> (hypergradient, method state)
    forward: Callable | None = None  #: (params, states, rounds) -> (params, states, pullback): the inner phase, kept
    backward: Callable | None = None  #: (pullback, params, states, top batch) -> hypergradient


def plain(phase: str, fn: Callable, *args: Any) -> Any:
    """The ``call`` hook that only calls (``phase`` names it: inner, hypergrad or outer)."""
    return fn(*args)


def outer_step(shape: Shape, fns: Phases, params: dict[str, Tree], states: dict[str, Tree], mstate: Any,
               rounds: list[Round], top_batch: Any, call: Callable = plain, seen: Callable | None = None):
    """One outer step from ``(params, states, mstate)`` on this step's batches; returns ``(params, states, mstate,
    hypergradient, hyper_batches)`` (the last two ``None`` when not taken: ``hyper_batches`` only for a method that
    takes its hypergradient from batches, not through its own unrolled steps). ``call(phase, fn, *args)`` runs each
    phase; ``seen(hypergradient)`` sees the hypergradient before the outer update (it may raise)."""
    hg = hb = None
    if not shape.lookahead:
        if shape.unrolls:
            params, states, pull = call("inner", fns.forward, params, states, rounds)
            hg = call("hypergrad", fns.backward, pull, params, states, top_batch)
            del pull
        elif not shape.steps_lower:
            params, states = call("inner", fns.inner, params, states, rounds)
    if shape.trains_upper and hg is None:
        if shape.unrolls:  # lookahead: a virtual run of this step's inner steps from θ_t, differentiated
            def virtual(params, states):
                p1, s1, pull = fns.forward(params, states, rounds)
                return fns.backward(pull, p1, s1, top_batch)

            hg = call("hypergrad", virtual, params, states)
        else:
            hb = shape.hyper_batches(rounds, top_batch)
            hg, mstate = call("hypergrad", fns.hyper, params, states, hb, mstate)
            if shape.steps_lower:
                params = {**params, **{name: state["lower"] for name, state in mstate.items()}}
    if hg is not None:
        if seen is not None:
            seen(hg)
        params, states = dict(params), dict(states)
        params[shape.top], states[shape.top] = call("outer", fns.outer, params[shape.top], states[shape.top], hg)
    if shape.lookahead:
        params, states = call("inner", fns.inner, params, states, rounds)
    return params, states, mstate, hg, hb
