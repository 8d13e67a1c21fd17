"""Ctrl-C and SIGTERM during a run: stop at the next step boundary and keep what was measured.

:func:`handling` installs a handler for SIGINT and SIGTERM (``mlo-bench run`` for its whole life, an isolated worker
from its start) that only notes the signal; the training loop asks :func:`check` at every outer step's boundary (and
once after the last step, before the evaluation), which raises :class:`Interrupted` — the run ends with status
``interrupted``, its steps done and the metrics so far in its record, and ``mlo-bench run`` exits 130 (128 + SIGINT,
the shell's convention) after one line. A second signal does not wait for the boundary: it raises
``KeyboardInterrupt`` where the process is (the run is still recorded ``interrupted``, with what it had). Where no
handler is installed (a library call of :func:`~mlo_bench.suite.run.execute.execute`, ``mlo-bench verify``) nothing
changes: :func:`check` never raises and Ctrl-C is Python's ``KeyboardInterrupt``.

An isolated worker runs in a process group of its own (a terminal's Ctrl-C reaches the parent only); the parent
forwards the signal, once, and waits for the worker's record (:mod:`mlo_bench.suite.run.isolate`). The ranks of a
data-parallel run (:mod:`mlo_bench.suite.run.ranks`) likewise: the process that started them forwards a stop it was
asked once, each rank notes it, and the ranks agree at every boundary (:func:`agreeing`), so they stop together and
rank 0's measurements make an ``interrupted`` record. A worker whose parent
is gone (killed by SIGKILL) stops at its next boundary as if signalled (:func:`watch_parent`).

An ``interrupted`` record is not a finished one: ``resume`` runs the config again (it is not in
:data:`mlo_bench.suite.run.records.FINAL_STATUSES`), so re-running the same command resumes an interrupted sweep.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

#: ``mlo-bench run``'s exit code after an interruption (128 + SIGINT)
EXIT_CODE = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_state: dict[str, object] = {"installed": False, "signal": None, "count": 0, "parent": None, "escalate": True,
                             "agree": None}


class Interrupted(Exception):
    """The run was asked to stop (a signal, or its parent process gone); ``step``: outer steps done."""

    def __init__(self, step: int, why: str) -> None:
        super().__init__(f"interrupted by {why} after {step} outer steps")
        self.step, self.why = step, why


def _handler(signum: int, frame: object) -> None:
    _state["count"] = int(_state["count"]) + 1
    _state["signal"] = _state["signal"] or signal.Signals(signum).name
    if int(_state["count"]) > 1 and _state["escalate"]:
        raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: stopping now")


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Note SIGINT / SIGTERM instead of raising while inside (main thread only; nested uses are one)."""
    import threading

    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    _state.update(installed=True, signal=None, count=0)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state.update(installed=False)


def count() -> int:
    """How many stop signals arrived while :func:`handling`."""
    return int(_state["count"])


@contextlib.contextmanager
def forwarding() -> Iterator[None]:
    """While inside, a second signal is only counted (:func:`count`), not raised: a parent waiting for its worker
    forwards each one instead (its worker stops, and records itself)."""
    before, _state["escalate"] = _state["escalate"], False
    try:
        yield
    finally:
        _state["escalate"] = before


def watch_parent(pid: int) -> None:
    """Treat the death of process ``pid`` (this worker's parent) as a stop request."""
    _state["parent"] = pid


def requested() -> str | None:
    """The name of the signal that asked to stop (or ``parent gone``), ``None`` when none has."""
    if _state["signal"]:
        return str(_state["signal"])
    if _state["parent"] is not None and os.getppid() != _state["parent"]:
        return "parent gone"
    return None


def agreeing(fn: object) -> None:
    """Make every :func:`check` a decision of all the ranks of a data-parallel run: ``fn(stop) -> bool`` is true when
    any rank asks to stop (a collective: :meth:`mlo_bench.backends._torch_dist.DistributedMixin.any_rank`), so the
    ranks stop at the same boundary — one rank stopping alone would leave the others waiting in its next collective
    until ``parallel.timeout_s``. The training loop then asks at every boundary, not only when this rank was
    signalled (one integer all-reduce per outer step, outside the timed phases). ``None`` forgets it."""
    _state["agree"] = fn


def decided() -> str | None:
    """At a step boundary: why to stop (:func:`requested`, or on any rank where :func:`agreeing` was given one), or
    ``None``. With an agreement every rank must call it at every boundary: it is a collective."""
    why = requested()
    agree = _state["agree"]
    if agree is not None and agree(why is not None) and not why:
        why = "a stop asked of another rank"
    return why


def check(step: int) -> None:
    """At a step boundary (``step`` outer steps done): raise :class:`Interrupted` if a stop was :func:`decided`."""
    why = decided()
    if why:
        raise Interrupted(step, why)


def reset() -> None:
    """Forget a noted signal (tests)."""
    _state.update(signal=None, count=0)
