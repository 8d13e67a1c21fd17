"""The Task contract: a multilevel program, defined once for every backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from mlo_bench.suite.optim import OptimizerConfig

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class Level:
    """One level of a multilevel program.

    - ``name``: unique within the task; levels are listed top first.
    - ``loss(ops, params, batch)``: this level's scalar loss; ``params`` maps every level's name to its parameter dict,
      so a loss may read any level (it is differentiated only w.r.t. its own and, for the chain, its parent's).
    - ``parent``: the level directly above whose parameters this level best-responds to (``None`` for the top).
    - ``optimizer``: how this level's own parameters are trained.
    - ``data``: the name of the data split its batches come from (``None`` for deterministic losses).
    """

    name: str
    loss: Callable[[Any, dict[str, Any], Any], Any]
    optimizer: OptimizerConfig
    parent: str | None = None
    data: str | None = None


class Oracle(ABC):
    """Closed forms for a task whose levels are simple enough (e.g. quadratics)."""

    @abstractmethod
    def best_response(self, top: Params) -> dict[str, Params]:
        """Every level's exact parameters given the top level's, as numpy float64."""

    @abstractmethod
    def hypergradient(self, top: Params) -> Params:
        """The exact total derivative of the top level's loss w.r.t. its parameters."""


class Task(ABC):
    """A multilevel program.

    Spec:
    - ``name``: registry name; ``Config``: a dataclass of the task's knobs with defaults (Hydra's ``task`` group),
      with ``validate()`` raising ``ValueError("task.<key> ...")`` on a bad value.
    - ``__init__(cfg, seed)`` builds the data deterministically from ``seed`` (numpy only).
    - ``levels()``: the levels, top first; every level but the first has the previous one as ``parent``.
    - ``init_params(rng)``: ``{level: {name: np.ndarray}}`` — identical across backends for one seed.
    - ``data()``: the task's constant arrays (data sets, fixed matrices) as numpy; converted to backend arrays once.
    - ``batch(level, step)``: that level's per-step arrays (e.g. example indices) for its ``step``-th update, or
      ``None``; a pure function of (seed, level, step), so every backend sees the same batches in the same order.
      A level's loss receives ``batch = {**data(), **batch(level, step)}``.
    - ``metrics(backend, params)``: task metrics of the trained parameters (floats).
    - ``oracle()``: an :class:`Oracle` or ``None``.
    - ``supports(method)``: ``None`` or the reason this task cannot be run with that method.
    - ``exact_reference()``: for a task without an oracle, whether its lower levels are small enough for their
      Hessians to be materialised; then the runner measures ``hypergrad_rel_error`` / ``hypergrad_cosine`` of the
      run's method against the ``exact`` method on the same backend at the same state (the final one).
    - ``presets``: named sets of config values, ``{name: {"task": {knob: value}, top-level key: value}}``; each is a
      Hydra option (``+preset=NAME`` applies the chosen task's values; command-line overrides still win). Preset
      names are shared between tasks (``demo``: seconds per run; ``full``: the embedded data to convergence; …).
    - ``paper``: a :class:`~mlo_bench.suite.contract.paper.Paper` — the task's metric specs, variants (``+variant=``),
      paper tables, size knob and claims, read by the report (``None``: standard metrics only).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    paper: ClassVar[Any] = None

    def __init__(self, cfg: Any, seed: int) -> None:
        self.cfg = cfg
        self.seed = seed

    @abstractmethod
    def levels(self) -> list[Level]: ...

    @abstractmethod
    def init_params(self, rng: np.random.Generator) -> dict[str, Params]: ...

    def data(self) -> dict[str, np.ndarray]:
        return {}

    def batch(self, level: str, step: int) -> dict[str, np.ndarray] | None:
        return None

    def metrics(self, backend: Any, params: dict[str, Any]) -> dict[str, float]:
        return {}

    def oracle(self) -> Oracle | None:
        return None

    def supports(self, method: str) -> str | None:
        return None

    def exact_reference(self) -> bool:
        return False
