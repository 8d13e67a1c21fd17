"""Where each paper claim (suite/data/claims.csv) is measured in our records: the mapping, as data.

A claim row names a paper's ``task``, ``setting``, ``variant`` and ``metric``. Here:

- :data:`VARIANTS` maps (claim task, variant) to a :class:`Selector` — the record ``task``, ``method``, ``backend`` and
  config filters (flat keys as in the tidy table, e.g. ``inner_steps`` or ``task.imbalance_factor``) of the runs that
  stand for it. "original" implementations (the original MWN code, original DARTS) are the ``naive`` backend: plain
  torch autograd with the whole graph kept, as that code did; Betty's variants are the ``torch`` backend.
- :data:`SETTING_FILTERS` maps the claim's ``setting`` to config filters (an imbalance factor, a data set, a domain
  pair); settings not listed add no filter.
- :data:`PAPER_DATA` are the filters that put a run on the paper's own data set — required only when an absolute
  figure is compared (runs on the embedded default data are analogues, good for ratios, not for absolute numbers).
- :data:`METRICS` maps the claim's metric to the record metric(s) (the first one present is used);
  :data:`DERIVED` computes a record metric from others.
- :data:`BASELINES`: per (source, table), the variant every other variant of that table is compared with.
- :data:`EXPLICIT`: claims that are not "variant vs the table's baseline" (the Betty abstract).

Knob names of tasks that have not landed yet (``mwn``, ``weak_supervision``, …) are the expected ones; a task that
names a knob differently must be aligned here, or its claims stay "not measured" — which the report shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Selector:
    task: str
    method: str
    backend: str | None = "torch"  # None: any backend
    where: tuple[tuple[str, Any], ...] = field(default=())

    def describe(self) -> str:
        knobs = ", ".join(f"{k}={v}" for k, v in self.where)
        return f"{self.task}/{self.backend or '*'}/{self.method}" + (f" [{knobs}]" if knobs else "")


def sel(task: str, method: str, backend: str | None = "torch", **where: Any) -> Selector:
    return Selector(task, method, backend, tuple(sorted(where.items())))


VARIANTS: dict[tuple[str, str], Selector] = {
    # Betty Table 1: Meta-Weight-Net on long-tailed data (tasks/mwn.py). ERM (not in the paper's table) is the same
    # task with task.reweight=false, run with first_order (its hypergradient is exactly zero: the weight net never
    # moves); task.reweight is a task knob, so ERM runs form a setting of their own and never pair with MWN runs.
    ("mwn", "erm"): sel("mwn", "first_order", **{"task.reweight": False}),
    ("mwn", "original-unrolled"): sel("mwn", "unroll", "naive", inner_steps=1, **{"backend.chain": "reverse"}),
    ("mwn", "unroll-1"): sel("mwn", "unroll", inner_steps=1),
    ("mwn", "cg"): sel("mwn", "cg"),
    ("mwn", "neumann"): sel("mwn", "neumann"),
    ("mwn", "darts-1"): sel("mwn", "darts", inner_steps=1),
    ("mwn", "darts-5"): sel("mwn", "darts", inner_steps=5),
    # Betty Table 2: data reweighting at scale ("baseline" = plain training, no upper level)
    ("data_reweighting", "baseline"): sel("data_reweighting", "baseline"),
    ("data_reweighting", "mwn-fp16"): sel("data_reweighting", "darts", dtype="float16"),
    # Betty Table 3: weak supervision
    ("weak_supervision", "snorkel"): sel("weak_supervision", "snorkel"),
    ("weak_supervision", "baseline"): sel("weak_supervision", "baseline"),
    ("weak_supervision", "reweight"): sel("weak_supervision", "darts", **{"task.correct": False}),
    ("weak_supervision", "reweight-correct"): sel("weak_supervision", "darts", **{"task.correct": True}),
    # Betty Table 4: domain adaptation
    ("domain_adaptation", "baseline"): sel("domain_adaptation", "baseline"),
    ("domain_adaptation", "reweight"): sel("domain_adaptation", "darts"),
    # Betty README: DARTS architecture search
    ("darts", "original-darts"): sel("nas", "darts", "naive", inner_steps=1),
    ("darts", "darts-1"): sel("nas", "darts", inner_steps=1),
    ("darts", "darts-3"): sel("nas", "darts", inner_steps=3),
    # Grangier et al.: online bilevel data selection
    ("data_selection", "generic-only"): sel("data_selection", "generic_only"),
    ("data_selection", "mixing"): sel("data_selection", "mixing"),
    ("data_selection", "soba"): sel("data_selection", "soba"),
    ("data_selection", "dds"): sel("data_selection", "dds"),
    ("data_selection", "anograd"): sel("data_selection", "anograd"),
    ("data_selection", "cds"): sel("data_selection", "cds"),
    ("data_selection", "classifier"): sel("data_selection", "classifier"),
}

SETTING_FILTERS: dict[str, dict[str, Any]] = {
    "cifar10-lt-if200": {"task.imbalance_factor": 200},
    "cifar10-lt-if100": {"task.imbalance_factor": 100},
    "cifar10-lt-if50": {"task.imbalance_factor": 50},
    "sst-bert-base-if20": {"task.imbalance_factor": 20},
    "sst-bert-base-if50": {"task.imbalance_factor": 50},
    **{name: {"task.dataset": name} for name in ("trec", "agnews", "imdb", "semeval", "chemprot", "youtube")},
    "officehome-cl-ar": {"task.source": "clipart", "task.target": "art"},
    "officehome-ar-pr": {"task.source": "art", "task.target": "product"},
    "officehome-pr-rw": {"task.source": "product", "task.target": "real_world"},
    "officehome-rw-cl": {"task.source": "real_world", "task.target": "clipart"},
    "c4-rcv1": {"task.finetune": False},
    "c4-rcv1-finetuned": {"task.finetune": True},
}

PAPER_DATA: dict[str, dict[str, Any]] = {
    "mwn": {"task.dataset": "cifar10"},
    "data_reweighting": {"task.dataset": "sst"},
    "weak_supervision": {},  # the setting already names the WRENCH data set
    "domain_adaptation": {"task.dataset": "officehome"},
    "darts": {"task.dataset": "cifar10"},
    "data_selection": {"task.generic": "c4", "task.specific": "rcv1"},
}

METRICS: dict[str, tuple[str, ...]] = {
    "test_accuracy": ("test_accuracy",),
    "test_score": ("test_score", "test_accuracy"),
    # the deterministic allocator-level count first: on a CPU the process's RSS is mostly the runtime itself at these
    # model sizes (runs on a GPU record CUDA's max_memory_allocated as peak_memory_bytes, used when no count exists)
    "peak_memory": ("peak_live_bytes", "peak_memory_bytes"),
    "wall_time": ("time_total_s",),
    "specific_loss": ("specific_loss",),
    "steps_per_second": ("steps_per_second",),
}

DERIVED = {
    "steps_per_second": lambda m: (m["steps_done"] / m["time_total_s"]
                                   if m.get("steps_done") and m.get("time_total_s") else None),
}

#: absolute figures that depend on the paper's hardware: never compared in absolute terms (their ratios are)
HARDWARE_METRICS = ("peak_memory", "wall_time", "steps_per_second")

#: the paper's unit → the record's unit, for absolute comparisons
UNIT_SCALE = {"percent": 0.01, "MiB": 1024.0**2, "GiB": 1024.0**3, "min": 60.0, "s": 1.0, "nats-per-byte": 1.0,
              "1/s": 1.0}

BASELINES: dict[tuple[str, str], str] = {
    ("betty2023", "1"): "original-unrolled",
    ("betty2023", "2"): "baseline",
    ("betty2023", "3"): "baseline",
    ("betty2023", "4"): "baseline",
    ("betty-readme", "nas"): "original-darts",
    ("grangier2024-code", "reference-runs"): "generic-only",
}


@dataclass(frozen=True)
class Explicit:
    """A claim measured as ``kind`` between two selectors: ``ratio`` (expected = paper ratio num/den) or
    ``exponent`` (log–log slope of ``metric`` in ``x``; the claim: num's exponent exceeds den's)."""

    kind: str
    metric: str
    num: Selector
    den: Selector
    expected: float
    text: str
    where: tuple[tuple[str, Any], ...] = ()
    x: str = "task.d"


EXPLICIT: dict[str, Explicit] = {
    "betty-abstract-acc": Explicit(
        "ratio", "test_accuracy", VARIANTS[("mwn", "darts-5")], VARIANTS[("mwn", "original-unrolled")],
        76.56 / 68.91, "darts-5 vs original-unrolled MWN test accuracy, IF 200: up to 11% higher (76.56/68.91)",
        where=tuple(SETTING_FILTERS["cifar10-lt-if200"].items())),
    "betty-abstract-mem": Explicit(
        "ratio", "peak_memory", VARIANTS[("mwn", "darts-1")], VARIANTS[("mwn", "original-unrolled")],
        2051 / 2381, "darts-1 vs original-unrolled MWN peak memory: 14% less (2051/2381 MiB)"),
    "betty-abstract-time": Explicit(
        "ratio", "time_total_s", VARIANTS[("mwn", "darts-1")], VARIANTS[("mwn", "original-unrolled")],
        28.5 / 35.8, "darts-1 vs original-unrolled MWN wall time: 20% less (28.5/35.8 min)"),
    # counted FLOPs: the computational complexity itself (wall time and memory exponents are in the report's
    # complexity section, suite/report/complexity.py, whose range rule this claim's fit uses)
    "betty-abstract-cplx": Explicit(
        "exponent", "flops_hypergrad", sel("quadratic", "unroll", "naive", **{"backend.chain": "materialised"}),
        sel("quadratic", "unroll", "torch"),
        1.0, "materialised best-response Jacobians (naive) grow as O(d³), reverse mode (torch) as O(d²): "
             "the naive exponent of counted FLOPs per hypergradient in d exceeds torch's"),
}
