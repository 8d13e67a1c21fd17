"""The pieces of one outer step: its batches (with selection by the upper level), the inner phase, and the
differentiated inner phase of methods that unroll.

An outer step t runs R = max over lower levels of their steps-per-outer-step *rounds*; in round r every lower level
whose step count exceeds r takes one optimizer step (levels in chain order, top-down), on its batch number
``t·steps + r`` (:meth:`mlo_bench.suite.contract.Task.batch` counts per level). The top level uses batch number t.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from mlo_bench.suite.engine import precision
from mlo_bench.suite.engine.levels import level_step
from mlo_bench.suite.engine.trees import tree_add

Tree = Any
Round = dict[str, Any]  # {lower level name: its batch} for the levels that step in this round


class Diverged(Exception):
    """A run's numbers stopped being finite (or grew without bound) at outer step ``step``: the run ends
    ``diverged`` there (raised by the training loop and by the compiled step)."""

    def __init__(self, step: int, what: str) -> None:
        super().__init__(f"{what} at step {step}")
        self.step = step


def keep_by_score(scores: np.ndarray, keep: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``keep`` candidates sampled without replacement with probability ∝ ``scores`` (Gumbel top-k:
    the top ``keep`` of log(score) + Gumbel noise is a draw of the successive-sampling scheme). A candidate scored 0
    is kept only when fewer than ``keep`` have a positive score. Deterministic given (scores, rng state)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if keep > scores.size:
        raise ValueError(f"selection keeps {keep} of only {scores.size} candidates")
    if not np.all(np.isfinite(scores)) or np.any(scores < 0):
        raise ValueError("selection scores must be finite and >= 0")
    gumbel = rng.gumbel(size=scores.size)
    keys = np.where(scores > 0, np.log(np.maximum(scores, 1e-300)) + gumbel, -np.inf)
    order = np.lexsort((-gumbel, -keys))  # by key, then (zero scores) by noise alone
    return np.sort(order[:keep])


def selection_rng(seed: int, level: str, step: int) -> np.random.Generator:
    """The selection noise of ``level``'s ``step``-th update: a pure function of (seed, level, step)."""
    return np.random.default_rng([seed, zlib.crc32(level.encode()), step, 0x5E1EC7])


class Batches:
    """Every batch of an outer step, as backend arrays; a selecting level's candidates scored and cut down first.

    ``rounds(t, params)`` returns the lower levels' batches round by round and the seconds spent selecting (scoring
    passes + sampling; 0 when no level selects); ``top(t)`` the top level's batch."""

    def __init__(self, task: Any, backend: Any, data: dict[str, Any], levels: list[Any], steps: dict[str, int]):
        self.task, self.backend, self.data = task, backend, data
        self.top_level, self.lower, self.steps = levels[0], levels[1:], steps
        self.n_rounds = max(steps.values())
        self._score: dict[str, Callable] = {}

    @property
    def selects(self) -> bool:
        return any(lv.select is not None for lv in self.lower)

    def _batch(self, level: str, step: int) -> dict[str, Any]:
        extra = self.task.batch(level, step)
        return {**self.data, **(self.backend.shard_batch(extra) if extra else {})}

    def top(self, t: int) -> dict[str, Any]:
        return self._batch(self.top_level.name, t)

    def _score_fn(self, level: Any) -> Callable:
        ops, score = self.backend.ops, level.select.score
        return lambda params, batch: score(ops, params, batch)

    def compile(self, params: dict[str, Tree]) -> tuple[float, int | None]:
        """Compile each selecting level's scoring pass on its first candidate batch: ``(seconds, FLOPs of one
        scoring pass of every selecting level, or None when none selects or the backend cannot count)``."""
        seconds, flops = 0.0, None
        for level in self.lower:
            if level.select is None:
                continue
            batch = self._batch(level.name, 0)
            fn = self._score_fn(level)
            self._score[level.name], s = self.backend.compile(fn, (params, batch))
            seconds += s
            counted = self.backend.count_flops(fn, (params, batch))
            flops = None if counted is None else (flops or 0) + counted
        return seconds, flops

    def _selected(self, level: Any, step: int, params: dict[str, Tree]) -> dict[str, Any]:
        sel = level.select
        extra = dict(self.task.batch(level.name, step) or {})
        if sel.key not in extra:
            raise KeyError(f"level {level.name!r} selects its examples but Task.batch gave no {sel.key!r} candidates")
        candidates = np.asarray(extra[sel.key])
        candidate_batch = {**self.data, **self.backend.shard_batch(extra)}  # scored shard by shard (data parallel)
        scores = self.backend.gather_scores(self._score[level.name](params, candidate_batch))
        kept = keep_by_score(scores, sel.keep, selection_rng(self.task.seed, level.name, step))
        extra[sel.key] = candidates[kept]
        # every candidate, whole on every rank (replicated): the loss may read them as a set
        whole = {sel.key + "_candidates": self.backend.asarray(candidates)}
        return {**self.data, **self.backend.shard_batch(extra), **whole}

    def examples_per_step(self) -> int:
        """Examples in every level's batches of one outer step, over the global batch (before any data-parallel
        split): the length of each per-step array set (a selecting level's kept ``keep``) × the level's steps."""
        def size(level: Any, step: int) -> int:
            if level.select is not None:
                return int(level.select.keep)
            extra = self.task.batch(level.name, step) or {}
            return next((len(v) for v in extra.values() if np.ndim(v)), 0)

        return size(self.top_level, 0) + sum(self.steps[lv.name] * size(lv, 0) for lv in self.lower)

    def rounds(self, t: int, params: dict[str, Tree]) -> tuple[list[Round], float]:
        out: list[Round] = [{} for _ in range(self.n_rounds)]
        select_s = 0.0
        for level in self.lower:
            for r in range(self.steps[level.name]):
                step = t * self.steps[level.name] + r
                if level.select is None:
                    out[r][level.name] = self._batch(level.name, step)
                else:
                    start = time.perf_counter()
                    out[r][level.name] = self.backend.block(self._selected(level, step, params))
                    select_s += time.perf_counter() - start
        return out, select_s


def last_batches(rounds: list[Round], top_name: str, top_batch: Any) -> dict[str, Any]:
    """Each level's batch for a hypergradient after the inner phase: a lower level's last one, the top's own."""
    out = {top_name: top_batch}
    for rnd in rounds:
        out.update(rnd)
    return out


def first_batches(rounds: list[Round], top_name: str, top_batch: Any) -> dict[str, Any]:
    """Each level's batch for a hypergradient before the inner phase (``ordering=lookahead``): its first one."""
    out = {top_name: top_batch}
    for rnd in reversed(rounds):
        out.update(rnd)
    return out


def round_fn(backend: Any, lower: list[Any], active: frozenset[str]) -> Callable:
    """One round of the inner phase: each lower level in ``active`` takes one step of its own optimizer
    (:func:`mlo_bench.suite.engine.levels.level_step`), in chain order, each seeing the levels above as they are after
    their own step in this round."""
    ops = backend.ops

    def fn(params: dict[str, Tree], states: dict[str, Tree], batches: Round):
        params, states = dict(params), dict(states)
        for lv in lower:
            if lv.name not in active:
                continue
            step = level_step(ops, lv, params, batches[lv.name], lv.parent, backend.grad)
            params[lv.name], states[lv.name] = step(params[lv.name], states[lv.name], params[lv.parent])
        return params, states

    return fn


def inner_phase(backend: Any, lower: list[Any]) -> Callable:
    """``phase(params, states, rounds) -> (params, states)``: every round, uncompiled (traced whole by a compiled
    caller, e.g. the differentiated phase)."""
    fns: dict[frozenset[str], Callable] = {}

    def phase(params, states, rounds):
        for rnd in rounds:
            active = frozenset(rnd)
            fn = fns.setdefault(active, round_fn(backend, lower, active))
            params, states = fn(params, states, rnd)
        return params, states

    return phase


def unrolled_fns(backend: Any, levels: list[Any], top: Any = None) -> tuple[Callable, Callable]:
    """``forward(params, states, rounds) -> (params, states, pullback)`` runs the inner phase once with its graph
    kept, as a function of the top level's parameters; ``backward(pullback, params, states, top_batch) ->
    hypergradient`` is ∂g/∂x_0 + (d lower levels / d x_0)ᵀ ∂g/∂(lower levels) at the parameters the phase reached:
    the exact derivative of the inner steps taken. ``top`` (default ``levels[0]``) is the top level whose loss g is
    differentiated (another precision's than the inner phase's); where its optimizer state in ``states`` holds a loss
    scale S, the pullback is seeded with S·∂g and the result divided by S (:mod:`mlo_bench.suite.engine.precision`)."""
    ops, lower = backend.ops, levels[1:]
    top = levels[0] if top is None else top
    names = [lv.name for lv in lower]
    phase = inner_phase(backend, lower)

    def forward(params, states, rounds):
        def trajectory(top_params):
            p, s = phase({**params, top.name: top_params}, states, rounds)
            return {n: p[n] for n in names}, {n: s[n] for n in names}

        lower_after, states_after, pullback = backend.trajectory_vjp(trajectory, params[top.name])
        return {**params, **lower_after}, {**states, **states_after}, pullback

    def backward(pullback, params, states, top_batch):
        (scaled, *_), scale = precision.scaled_top([top], states)
        direct = backend.grad(lambda p: scaled.loss(ops, p, top_batch))(params)
        return precision.unscale(tree_add(direct[top.name], pullback({n: direct[n] for n in names})), scale)

    return forward, backward
