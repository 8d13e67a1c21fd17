"""What a task declares about its paper, beside the task: metrics, variants, paper tables, size knob, claims.

A task sets ``paper = Paper(...)`` (a class attribute of :class:`~mlo_bench.suite.contract.Task`). The report reads
only these declarations — it never names a task — so a task adds its paper table, its variants and its claims by
editing its own files. All types are small frozen dataclasses; their docstrings are the spec.

Config keys are *flat*: dotted paths into a run's resolved config, as in the report's tidy table (``inner_steps``,
``task.imbalance_factor``, ``backend.chain``, ``ordering``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("scalar", "list", "text")
DIRECTIONS = ("higher", "lower", None)
WANTS = ("higher", "lower", "match")
AT = ("all", "max", "each")


@dataclass(frozen=True)
class MetricSpec:
    """One metric a run records.

    - ``name``: the key in ``record["metrics"]``.
    - ``kind``: ``scalar`` (a number), ``list`` (numbers, e.g. one per class) or ``text`` (e.g. a DARTS genotype).
      Only scalars are ranked, plotted or compared; lists are spread into the tidy table as ``name.<i>``; text is
      kept in the record only.
    - ``direction``: ``higher`` or ``lower`` is better; ``None`` = a *diagnostic* (recorded, shown on demand, never
      ranked or plotted as a result — e.g. a count such as ``noisy_labels``).
    - ``unit``: ``s``, ``bytes``, ``fraction``, ``FLOP``, ``count``, ``""`` … (times and bytes are shown scaled).
    - ``quality``: a *result* of the task (accuracy, loss, gap) rather than a cost; quality metrics lead the tables
      and the "which one should I use" section. Defaults to True for a scalar with a direction.
    """

    name: str
    direction: str | None = None
    unit: str = ""
    kind: str = "scalar"
    quality: bool | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"MetricSpec {self.name}: kind must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"MetricSpec {self.name}: direction must be higher, lower or None "
                             f"(got {self.direction!r})")
        if self.quality is None:
            object.__setattr__(self, "quality", self.kind == "scalar" and self.direction is not None)

    @property
    def ranked(self) -> bool:
        """Whether the report ranks it (best in bold, Pareto front): a scalar with a direction."""
        return self.kind == "scalar" and self.direction is not None


@dataclass(frozen=True)
class Variant:
    """A named configuration of a task — a row of a paper table — run as ``+variant=NAME`` on any backend.

    - ``method``: the method plugin it runs.
    - ``overrides``: flat config keys it sets (``{"inner_steps": 5, "task.reweight": False}``); the records of the
      variant are recognised by ``task``, ``method`` and these values (plus the record's own ``variant`` key when
      it has one).
    - ``backend_knobs``: per backend, the knobs it needs there (``{"naive": {"chain": "reverse"}}``).
    - ``backends``: the backends it exists on (``None``: every backend).
    - ``label``: what the paper calls it; ``doc``: one line.
    """

    name: str
    method: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    backend_knobs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    backends: tuple[str, ...] | None = None
    label: str = ""
    doc: str = ""


@dataclass(frozen=True)
class Comparison:
    """``num`` against ``den`` (variant names) on ``metric``, seed by seed on one backend at a time.

    ``want``: ``higher`` (num's values higher), ``lower``, or ``match`` (num at least (1 − tolerance) × den, the
    tolerance of the table's ``match_tolerance``). ``at``: ``max`` compares at the table column's largest value only,
    ``each`` at every column value, ``all`` pooled over the columns."""

    num: str
    den: str
    metric: str
    want: str
    at: str = "all"

    def __post_init__(self) -> None:
        if self.want not in WANTS or self.at not in AT:
            raise ValueError(f"Comparison {self.num}/{self.den}: want must be one of {WANTS}, at one of {AT}")


@dataclass(frozen=True)
class TableClaim:
    """A statement of a paper table made of comparisons: supported when each is, not supported when one is not."""

    text: str
    comparisons: tuple[Comparison, ...]


@dataclass(frozen=True)
class PaperTable:
    """A paper-shaped table: rows = ``variants`` (names of the task's :class:`Variant`), columns = the values of the
    flat config key ``column`` for metric ``quality``, then the ``cost`` metrics pooled over the columns, one block
    per backend. ``treatments``: config keys that tell variants apart besides backend, method and the variants'
    overrides (e.g. ``task.reweight``), left out when finding the shared setting. ``figure``: metrics drawn by row
    beside the table (one panel each: bars = mean over the runs of a row, dots = runs, hue = backend), e.g.
    ``selection_precision``; ``references``: a metric drawn as a dashed line on another's panel (its mean over the
    table's runs per backend), e.g. ``{"selection_precision": "base_rate"}``."""

    title: str
    variants: tuple[str, ...]
    column: str
    column_label: str
    quality: str
    cost: tuple[str, ...] = ()
    treatments: tuple[str, ...] = ()
    claims: tuple[TableClaim, ...] = ()
    match_tolerance: float = 0.02
    figure: tuple[str, ...] = ()
    references: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClaimRule:
    """How one claim of the task's claims CSV is measured, when it is not "variant against the table's baseline":
    ``kind`` ``ratio`` (mean ratio of ``metric`` between variants ``num`` and ``den``, paper value ``expected``) or
    ``exponent`` (log–log slope of ``metric`` in the task's size knob; the claim: num's exponent exceeds den's).
    ``where``: flat config filters. ``expected`` ``math.inf`` (or 0): the paper states only the side of 1, not a
    figure (Betty Table 2's "MWN fp32: out of memory" where fp16 fits)."""

    kind: str
    metric: str
    num: str
    den: str
    text: str
    expected: float = 1.0
    where: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryFamily:
    """How the report's memory model (:mod:`mlo_bench.suite.report.sections.memory`) extrapolates a task's counted
    bytes to GPUs it was not run on.

    The report fits, per backend × variant × precision, ``bytes ≈ a · P + b · A + c`` by non-negative least squares
    over the task's runs, where bytes = ``peak_live_bytes`` + ``resident_bytes`` (counted), ``P`` = the record
    metric ``params_metric`` and ``A`` = ``activations_metric``. ``activations(P)`` gives ``A`` for the task's model
    family with ``P`` parameters at the batch the prediction is for (``label`` says which: e.g. "BERT-shaped, 12
    layers, 32 + 32 sequences of 128 tokens"); the report then states the largest ``P`` whose predicted bytes fit
    in 24, 40, 80 and 141 GiB."""

    activations: Callable[[float], float]
    label: str
    params_metric: str = "n_params"
    activations_metric: str = "activation_elements"


@dataclass(frozen=True)
class Paper:
    """Everything the report needs to know about a task's paper(s).

    - ``metrics``: the task's own metrics (the standard ones of the runner are :data:`STANDARD_METRICS`).
    - ``variants``, ``tables``: see :class:`Variant`, :class:`PaperTable`.
    - ``size``: the flat key of the problem size for scaling plots and complexity fits (``task.d``), ``None``
      without one; ``size_label``; ``groups``: flat keys fitted separately (``task.levels``), ``group_label``;
      ``size_metrics``: the times plotted and fitted against the size (default the hypergradient's; data selection:
      the select phase and the whole step, its paper's claim being that scoring is cheap next to the update).
    - ``claims``: file name of the task's claims CSV in the ``claims/`` folder beside the task's module (columns and
      rows as in ``suite/data/claims.csv``, the reference list), ``None`` without claims.
    - ``baselines``: per (source, table) of the CSV, the variant every other variant of that table is divided by.
    - ``settings``: per claim ``setting``, flat config filters (``{"cifar10-lt-if100": {"task.imbalance_factor":
      100}}``); ``paper_data``: filters that put a run on the paper's own data (needed for absolute figures).
    - ``claim_metrics``: per claim metric, the record metrics that measure it, first present used.
    - ``rules``: per claim id, a :class:`ClaimRule`.
    - ``claim_variants``: the paper's row name (the CSV's ``variant``) → the task's variant that measures it, where
      they differ (a variant name stands for one method in every task, so ``reweight`` run with cg is
      ``reweight-cg`` in a task whose sibling task's ``reweight`` is darts).
    - ``curves``: columns of a run's ``trace.csv`` (``outer_loss`` or a metric the task computes every ``eval_every``
      steps) that the report plots against the outer step, per variant, mean over seeds
      (:mod:`mlo_bench.suite.report.sections.curves`).
    - ``convergence``: trace metrics (lower is better, e.g. a suboptimality) → the tolerance solvers are ranked by:
      the report draws each against time and against oracle calls, median over seeds with a 20–80% band, one line per
      backend × method (each at its best config of a grid), and ranks them by the time to reach the tolerance
      (:mod:`mlo_bench.suite.report.sections.convergence`).
    - ``memory``: a :class:`MemoryFamily` — the report fits a memory model to the task's counted bytes and predicts
      the largest model of the family each method fits on common GPUs (``None``: no memory model).
    """

    metrics: tuple[MetricSpec, ...] = ()
    variants: tuple[Variant, ...] = ()
    tables: tuple[PaperTable, ...] = ()
    size: str | None = None
    size_label: str = "d"
    size_metrics: tuple[str, ...] = ("time_hypergrad_s",)
    groups: tuple[str, ...] = ()
    group_label: str = "L"
    claims: str | None = None
    baselines: Mapping[tuple[str, str], str] = field(default_factory=dict)
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    paper_data: Mapping[str, Any] = field(default_factory=dict)
    claim_metrics: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    rules: Mapping[str, ClaimRule] = field(default_factory=dict)
    claim_variants: Mapping[str, str] = field(default_factory=dict)
    curves: tuple[str, ...] = ()
    convergence: Mapping[str, float] = field(default_factory=dict)
    memory: MemoryFamily | None = None

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"unknown variant {name!r}; valid: {', '.join(v.name for v in self.variants)}")


#: the runner's own metrics (results/README.md), for every task
STANDARD_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("outer_loss", "lower", doc="the top level's loss at the end of training"),
    MetricSpec("hypergrad_rel_error", "lower", quality=False, doc="‖h − h*‖ / ‖h*‖ against the reference"),
    MetricSpec("hypergrad_cosine", "higher", quality=False),
    MetricSpec("hypergrad_nonfinite", None, "count", quality=False,
               doc="entries of the checked hypergradient that are not finite (then the two above are null)"),
    MetricSpec("time_inner_s", "lower", "s", quality=False),
    MetricSpec("time_hypergrad_s", "lower", "s", quality=False),
    MetricSpec("time_outer_s", "lower", "s", quality=False),
    MetricSpec("time_select_s", "lower", "s", quality=False, doc="the select phase (scoring candidates, keeping some)"),
    MetricSpec("time_step_s", "lower", "s", quality=False, doc="one whole outer step (every phase)"),
    MetricSpec("time_total_s", "lower", "s", quality=False),
    MetricSpec("compile_s", "lower", "s", quality=False),
    MetricSpec("peak_memory_bytes", "lower", "bytes", quality=False),
    MetricSpec("peak_live_bytes", "lower", "bytes", quality=False),
    MetricSpec("resident_bytes", "lower", "bytes", quality=False,
               doc="every level's parameters and optimizer state (a step's inputs: not in peak_live_bytes)"),
    MetricSpec("flops_hypergrad", "lower", "FLOP", quality=False),
    MetricSpec("inner_step_evals", "lower", "count", quality=False),
    MetricSpec("memory_kind", kind="text"),
    MetricSpec("steps_done", unit="count"),
    MetricSpec("steps_per_s", "higher", "1/s", quality=False, doc="outer steps per second of the training clock"),
    MetricSpec("diverged_step", unit="count"),
)
