"""The Task contract: a multilevel program, defined once for every backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mlo_bench.suite.engine.optim import OptimizerConfig

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class Selection:
    """How the levels above choose a level's training examples each step (data selection by the upper level).

    Each of the level's updates, :meth:`Task.batch` gives a *candidate* batch whose entry ``key`` holds candidate
    example indices (shape ``(n,)``). The runner scores them with ``score(ops, params, batch) -> (n,)`` (non-negative
    weights; ``params`` holds every level's parameters as at the start of the outer step, ``batch`` the candidate
    batch) in a phase of its own (``time_select_s``, FLOPs in ``flops_select``), then keeps ``keep`` of them, sampled
    without replacement with probability ∝ score (Gumbel top-k with noise from a generator that is a pure function of
    (seed, level, step): every backend keeps the same examples for the same scores). The level's loss then sees
    ``batch[key]`` = the kept indices and ``batch[key + "_candidates"]`` = all of them; everything else in the batch
    is unchanged. Selection is hard (no gradient flows through the choice). Soft weights are the loss's business: a
    loss that weights its kept examples by the upper level's scores (read from ``params``) is differentiated through
    them by every method, as DDS's soft-weighted step is.
    """

    score: Callable[[Any, dict[str, Any], Any], Any]
    keep: int
    key: str = "idx"


@dataclass(frozen=True)
class Level:
    """One level of a multilevel program.

    - ``name``: unique within the task.
    - ``loss(ops, params, batch)``: this level's scalar loss; ``params`` maps every level's name to its parameter dict,
      so a loss may read any level (it is differentiated only w.r.t. its own and, for the chain, its parent's).
    - ``parent``: the level directly above whose parameters this level best-responds to (``None`` for the top).
      The levels form a chain: one top level, every other level's ``parent`` names a level of the task, no cycles,
      and at most one child per level (:func:`mlo_bench.suite.engine.levels.chain` rejects anything else in one line
      naming the level, before any work).
    - ``optimizer``: how this level's own parameters are trained.
    - ``data``: the name of the data split its batches come from (``None`` for deterministic losses).
    - ``steps``: this level's optimizer steps per outer step (``None``: the run's ``inner_steps``; the run key
      ``level_steps.<name>=N`` overrides both). Ignored for the top level, which takes one step per outer step.
    - ``select``: a :class:`Selection` when the levels above choose this level's examples each step.
    - ``batches``: the number of fixed minibatches the level's data is split into, when its per-step batches are
      drawn from such a partition epoch by epoch and each carries its number under
      :data:`mlo_bench.suite.models.batch.BATCH_ID` (benchmark_bilevel's sampler, ``task.sampler=epoch``:
      :func:`mlo_bench.suite.models.batch.epoch_batch`); ``None``: drawn freely. A variance-reduced method keeps one
      memory slot per batch (``saba``).
    """

    name: str
    loss: Callable[[Any, dict[str, Any], Any], Any]
    optimizer: OptimizerConfig
    parent: str | None = None
    data: str | None = None
    steps: int | None = None
    select: Selection | None = None
    batches: int | None = None


class Oracle(ABC):
    """Closed forms for a task whose levels are simple enough (e.g. quadratics)."""

    @abstractmethod
    def best_response(self, top: Params) -> dict[str, Params]:
        """Every level's exact parameters given the top level's, as numpy float64."""

    @abstractmethod
    def hypergradient(self, top: Params) -> Params:
        """The exact total derivative of the top level's loss w.r.t. its parameters."""


#: the outer steps of a run whose ``steps`` is null and whose task declares no ``default_steps``
DEFAULT_STEPS = 100


class Task(ABC):
    """A multilevel program.

    Spec:
    - ``name``: registry name; ``Config``: a dataclass of the task's knobs with defaults (Hydra's ``task`` group),
      with ``validate()`` raising ``ValueError("task.<key> ...")`` on a bad value. ``validate()`` is the task's
      pre-check, run by the plan before any work: it reads the task's data files' *content* too (parse, shapes,
      sizes, finiteness, examples per class) and knobs whose valid values depend on the data, so a bad file is one
      line naming the key and the file (exit 2, no record); loaders cache what it read for the constructor.
    - ``__init__(cfg, seed)`` builds the data deterministically from ``seed`` (numpy only).
    - ``levels()``: the levels, top first; their ``parent`` fields form one chain (see :class:`Level`).
    - ``init_params(rng)``: ``{level: {name: np.ndarray}}`` — identical across backends for one seed.
    - ``data()``: the task's constant arrays (data sets, fixed matrices) as numpy; converted to backend arrays once.
    - ``batch(level, step)``: that level's per-step arrays (e.g. example indices) for its ``step``-th update (counted
      per level from 0: a level with ``steps`` = 3 asks for 3t, 3t+1, 3t+2 in outer step t; the top level for t), or
      ``None``; a pure function of (seed, level, step), so every backend sees the same batches in the same order.
      A level's loss receives ``batch = {**data(), **batch(level, step)}`` (after selection, for a selected level).
      Data parallel (``parallel.world_size`` > 1, docs/parallel.md): every per-step array is per-example, split along
      axis 0 across the ranks (a selected level's ``key + "_candidates"`` stays whole), so a loss reduces over its
      examples with :func:`mlo_bench.suite.models.batch.batch_sum` / ``batch_mean`` to be the global batch's.
    - ``metrics(backend, params)``: task metrics of the trained parameters, computed after training and, with the run
      key ``eval_every=N``, every N outer steps during it (the scalar ones become curves in ``trace.csv``; their time
      is kept out of the training clock). Values are floats, lists (e.g. per class) or strings (e.g. a genotype).
    - ``evaluate(backend, params)``: an optional post-training phase (derive and retrain an architecture, fine-tune
      …), run after training and timed apart (``time_eval_s``); its metrics are recorded under their own names. The
      default does nothing (``{}``).
    - ``oracle()``: an :class:`Oracle` or ``None``.
    - ``supports(method)``: ``None`` or the reason this task cannot be run with that method.
    - ``supports_on(backend, method)``: ``None`` or the reason this task cannot run that method on that backend (e.g.
      a backend that ``materialises`` best-response Jacobians row by row, one backward pass per lower parameter,
      on a task whose lower level has tens of thousands); the default defers to ``supports``'s answer alone.
    - ``exact_reference()``: for a task without an oracle, whether its lower levels are small enough for their
      Hessians to be materialised; then the runner measures ``hypergrad_rel_error`` / ``hypergrad_cosine`` of the
      run's method against the ``exact`` method on the same backend at the same state (the final one).
      :class:`ExactBudget` implements it and ``supports`` from a parameter count and ``task.exact_max_params``.
    - ``presets``: named sets of config values, ``{name: {"task": {knob: value}, top-level key: value}}``; each is a
      Hydra option (``+preset=NAME`` applies the chosen task's values; command-line overrides still win). Preset
      names are shared between tasks (``demo``: seconds per run; ``full``: the embedded data to convergence; …).
    - Baselines of a paper (ERM, mixing, fine-tuning, a filter, majority vote) are task knobs run with
      ``method=none`` (the upper level is not trained; no hypergradient is computed), never a fake method.
    - ``paper``: a :class:`~mlo_bench.suite.contract.paper.Paper` — the task's metric specs, variants (``+variant=``),
      paper tables, size knob and claims, read by the report (``None``: standard metrics only).
    - ``default_steps(cfg)`` (a classmethod, asked before the task is built): the outer steps a run takes when the
      run key ``steps`` is null (its default) — enough for the task's defaults to converge at this ``cfg`` (e.g. a
      deeper chain needs more); :data:`DEFAULT_STEPS` unless the task says otherwise. The record's config holds the
      number, so a run's hash is the same whether the steps were given or taken from here.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    paper: ClassVar[Any] = None

    def __init__(self, cfg: Any, seed: int) -> None:
        self.cfg = cfg
        self.seed = seed

    @classmethod
    def default_steps(cls, cfg: Any) -> int:
        return DEFAULT_STEPS

    @abstractmethod
    def levels(self) -> list[Level]: ...

    @abstractmethod
    def init_params(self, rng: np.random.Generator) -> dict[str, Params]: ...

    def data(self) -> dict[str, np.ndarray]:
        return {}

    def batch(self, level: str, step: int) -> dict[str, np.ndarray] | None:
        return None

    def metrics(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def evaluate(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def oracle(self) -> Oracle | None:
        return None

    def supports(self, method: str) -> str | None:
        return None

    def supports_on(self, backend: Any, method: str) -> str | None:
        return None

    def exact_reference(self) -> bool:
        return False


class ExactBudget:
    """Mixin for a task without an oracle whose lower levels are sometimes small enough for ``exact``.

    The task provides ``n_lower_params()`` (the parameters whose Hessians ``exact`` materialises) and a config knob
    ``exact_max_params``; optionally an instance attribute ``unavailable`` (the one-line reason its data cannot be
    loaded, which then answers every ``supports``). Above the limit ``exact`` is unsupported with a reason naming the
    knob, and below it ``exact_reference()`` is true (the runner compares the run's method to ``exact``). List it
    before :class:`Task` in the bases: ``class MyTask(ExactBudget, Task)``.
    """

    unavailable: str | None = None

    def n_lower_params(self) -> int:
        raise NotImplementedError

    def supports(self, method: str) -> str | None:
        if self.unavailable:
            return self.unavailable
        n, limit = self.n_lower_params(), self.cfg.exact_max_params  # type: ignore[attr-defined]
        if method == "exact" and n > limit:
            return (f"the lower levels have {n} parameters; exact materialises their Hessians "
                    f"(limit task.exact_max_params={limit})")
        return None

    def exact_reference(self) -> bool:
        return not self.unavailable and self.n_lower_params() <= self.cfg.exact_max_params  # type: ignore[attr-defined]
