"""Meta-Weight-Net reweighting a transformer text classifier on long-tailed text (Betty Table 2's program), bilevel.

The program is :mod:`mlo_bench.tasks.mwn`'s — the same levels, losses and choices (the weight net sees the detached
per-example loss, weights normalised over the batch, weight decay a term of the loss; see that module) — with a
BERT-shaped classifier (:func:`mlo_bench.suite.models.transformer.transformer`, ``task.size`` from ``tiny`` to
``base`` = BERT-base, 109.5M parameters) on token ids. A task of its own rather than a ``model`` option of ``mwn``
because its data (text, a tokenizer, a sequence length), its sizes and its paper table (Betty Table 2: scale, half
precision, memory) are its own; the losses are inherited, not copied.

Data (``dataset``):

- ``stdlib`` (default, embedded): lines of the Python standard library's own source, labelled by the package they
  live in (:func:`mlo_bench.tasks.data.text_classes.stdlib_lines`, ``n_classes`` packages); per class, from a seeded
  permutation, a balanced test set (``test_per_class``), a balanced meta set (``meta_per_class``), then the long-tailed
  training set ``n_c = int(n_max · IF^(−c/(C−1)))`` with ``n_max`` = ``train_max_per_class`` (or the smallest pool).
- ``sst``: GLUE SST-2's ``train.tsv`` / ``dev.tsv`` under ``data_root`` (the GLUE test split has no labels: dev is the
  test set); the meta set is held out of train, the rest long-tailed as above.

Tokens: a hashed word tokenizer (no vocabulary can be downloaded; ``vocab_size`` buckets, stable across runs and
machines) or BERT's WordPiece from a local ``vocab_file``; ``[CLS]`` first, ``seq_len`` tokens, ``[PAD]`` = 0
masked out of attention. ``checkpoint``: a local BERT checkpoint (HuggingFace names; ``.bin`` / ``.npz``) loaded
over the random initialisation (:func:`mlo_bench.suite.models.checkpoint.load_bert_checkpoint`).

Metrics: ``test_accuracy`` (balanced), ``per_class_accuracy``, ``train_class_sizes``, ``n_params`` (the classifier's).
``exact`` (and the ``hypergrad_rel_error`` reference) only up to ``exact_max_params`` parameters: the ``tiny`` size
(1,282 parameters at the default 10 classes) is certified by ``verify`` against it.

Paper (``PAPER``): Betty Table 2 — baseline (no reweighting), MWN in fp32 and in fp16 (and bf16, the CPU's half
precision) — with its claims (``tasks/claims/mwn_text.csv``): memory ratios judged on counted bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlo_bench.suite.contract import ClaimRule, MemoryFamily, MetricSpec, Paper, PaperTable, Task, Variant
from mlo_bench.suite.engine.optim import OptimizerConfig
from mlo_bench.suite.models import nn
from mlo_bench.suite.models import transformer as tf
from mlo_bench.suite.models.reweight import EpochBatches
from mlo_bench.suite.plugins.registry import register
from mlo_bench.tasks.data import checks, longtail
from mlo_bench.tasks.data import text_classes as tc
from mlo_bench.tasks.mwn import MetaWeightNet

DATASETS = ("stdlib", "sst")


@dataclass
class MWNTextConfig:
    dataset: str = "stdlib"
    data_root: str | None = None
    n_classes: int = 10
    imbalance_factor: float = 20.0
    meta_per_class: int = 10
    test_per_class: int = 50
    train_max_per_class: int = 500
    size: str = "tiny"
    seq_len: int = 16
    vocab_size: int | None = None
    vocab_file: str | None = None
    checkpoint: str | None = None
    weight_net_hidden: int = 100
    reweight: bool = True
    detach: bool = True
    normalize: bool = True
    weight_decay: float = 1e-4
    batch_size: int = 32
    meta_batch_size: int = 32
    eval_batch_size: int = 250
    exact_max_params: int = 10000
    #: eps_root > 0: an embedding row no token of the batch uses has a gradient of exactly 0, where plain Adam's
    #: sqrt is not differentiable (``unroll`` would return NaN)
    lower: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", lr=1e-3, eps_root=1e-12))
    upper: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", lr=1e-3))

    def shape(self) -> tf.Shape:
        base = tf.SIZES[self.size]
        return tf.Shape(self.vocab_size or base.vocab_size, base.d_model, base.n_layers, base.n_heads, base.d_ff,
                        base.max_len)

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"task.dataset must be one of {', '.join(DATASETS)} (got {self.dataset!r})")
        if self.size not in tf.SIZES:
            raise ValueError(f"task.size must be one of {', '.join(tf.SIZES)} (got {self.size!r})")
        if not self.imbalance_factor >= 1:
            raise ValueError(f"task.imbalance_factor must be >= 1 (got {self.imbalance_factor})")
        for key in ("n_classes", "meta_per_class", "test_per_class", "train_max_per_class", "seq_len",
                    "weight_net_hidden", "batch_size", "meta_batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"task.{key} must be >= 1 (got {getattr(self, key)})")
        if self.n_classes < 2:
            raise ValueError(f"task.n_classes must be >= 2 (got {self.n_classes})")
        if self.vocab_size is not None and self.vocab_size < 8:
            raise ValueError(f"task.vocab_size must be >= 8 or null (got {self.vocab_size})")
        if self.seq_len > tf.SIZES[self.size].max_len:
            raise ValueError(f"task.seq_len must be <= {tf.SIZES[self.size].max_len}, the positions of size "
                             f"{self.size} (got {self.seq_len})")
        if self.weight_decay < 0:
            raise ValueError(f"task.weight_decay must be >= 0 (got {self.weight_decay})")
        if self.exact_max_params < 0:
            raise ValueError(f"task.exact_max_params must be >= 0 (got {self.exact_max_params})")
        if self.dataset == "sst" and not self.data_root:
            raise ValueError("task.data_root must be given for task.dataset=sst (a folder with GLUE SST-2's "
                             "train.tsv and dev.tsv)")
        if self.vocab_file:
            checks.precheck("task.vocab_file", tc.make_tokenizer, self.vocab_size, self.vocab_file)
        if self.checkpoint:
            from mlo_bench.suite.models.checkpoint import load_bert_checkpoint

            checks.precheck("task.checkpoint", load_bert_checkpoint, self.checkpoint, self.shape().n_layers)
        texts = _labelled(self)
        longtail.check_sizes(texts[0].labels, _classes(self, texts[0]), self.meta_per_class,
                             self.test_per_class if self.dataset == "stdlib" else 0, "task.meta_per_class, "
                             f"task.test_per_class: {self.dataset}")
        self.lower.validate("task.lower")
        self.upper.validate("task.upper")


def _labelled(cfg: MWNTextConfig) -> tuple[Any, Any | None]:
    """(the pool the splits come from, the separate test set or None)."""
    if cfg.dataset == "sst":
        return checks.precheck("task.data_root", tc.sst_dir, cfg.data_root)
    per_class = cfg.train_max_per_class + cfg.meta_per_class + cfg.test_per_class
    return checks.precheck("task.dataset", tc.stdlib_lines, cfg.n_classes, max_per_class=per_class), None


def _classes(cfg: MWNTextConfig, pool: Any) -> int:
    return cfg.n_classes if cfg.dataset == "stdlib" else int(pool.labels.max()) + 1


VARIANTS = (
    Variant("baseline", "none", {"inner_steps": 1, "task.reweight": False}, label="baseline (no reweighting)",
            doc="the classifier on the long-tailed set unweighted, method=none"),
    Variant("mwn-fp32", "darts", {"inner_steps": 1, "task.reweight": True, "precision.name": "fp32"},
            label="MWN fp32",
            doc="Meta-Weight-Net with Betty's default finite-difference hypergradient, in fp32 (out of memory in "
                "the paper)"),
    Variant("mwn-fp16", "darts", {"inner_steps": 1, "task.reweight": True, "precision.name": "fp16"},
            label="MWN fp16", doc="the same in fp16 autocast with dynamic loss scaling"),
    Variant("mwn-bf16", "darts", {"inner_steps": 1, "task.reweight": True, "precision.name": "bf16"},
            label="MWN bf16", doc="the same in bf16 (not a row of the paper: the CPU's half precision)"),
    # the memory experiment's methods (+experiment=memory_scaling), each in the precision the run chooses
    *(Variant(name, method, {"inner_steps": k, "task.reweight": True}, label=label)
      for name, method, k, label in (
          ("darts", "darts", 1, "darts"), ("sama", "sama", 1, "SAMA"), ("cg", "cg", 1, "CG"),
          ("neumann", "neumann", 1, "Neumann"), ("unroll-1", "unroll", 1, "unrolled, K = 1"),
          ("unroll-4", "unroll", 4, "unrolled, K = 4"), ("first-order", "first_order", 1, "first order"))),
)

#: the memory model's family (:class:`MemoryFamily`): BERT-shaped — 12 layers, heads d/64, MLP 4d, a 30,522-token
#: vocabulary, 512 positions, 2 classes (SST-2) — at the ``paper`` preset's batches, 32 + 32 sequences of 128 tokens
FAMILY = {"layers": 12, "vocab": 30522, "positions": 512, "classes": 2, "sequences": 64, "seq_len": 128}


def _family_params(d: int) -> int:
    f = FAMILY
    return tf.count_params(tf.Shape(f["vocab"], d, f["layers"], 1, 4 * d, f["positions"]), f["classes"])


@functools.cache
def _family_coefficients() -> tuple[float, float, float]:
    p0, p1, p2 = (_family_params(d) for d in (0, 1, 2))
    a = (p2 - 2 * p1 + p0) / 2
    return a, p1 - p0 - a, p0


def family_width(n_params: float) -> float:
    """The width d of the family's model with ``n_params`` parameters: the positive root of the quadratic
    :func:`~mlo_bench.suite.models.transformer.count_params` is in d (``d_ff = 4d``), its coefficients read off
    the count at d = 0, 1, 2."""
    a, b, p0 = _family_coefficients()
    c = p0 - n_params
    return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)


def family_activations(n_params: float) -> float:
    """``activation_elements`` of the family's model with ``n_params`` parameters at the paper preset's batches."""
    d, f = family_width(n_params), FAMILY
    return f["sequences"] * f["seq_len"] * f["layers"] * (d + (d / 64) * f["seq_len"])


PAPER = Paper(
    metrics=(
        MetricSpec("test_accuracy", "higher", "fraction", doc="balanced test accuracy (mean of per-class)"),
        MetricSpec("per_class_accuracy", "higher", "fraction", kind="list", quality=False),
        MetricSpec("train_class_sizes", None, "count", kind="list"),
        MetricSpec("n_params", None, "count", doc="the classifier's parameters"),
        MetricSpec("activation_elements", None, "count",
                   doc="(batch + meta batch) · seq_len · layers · (d_model + heads · seq_len)"),
    ),
    variants=VARIANTS,
    tables=(PaperTable(
        "Meta-Weight-Net on a transformer text classifier (Betty Table 2, our analogue)",
        ("baseline", "mwn-fp32", "mwn-fp16", "mwn-bf16"), column="task.imbalance_factor", column_label="IF",
        quality="test_accuracy", cost=("peak_live_bytes", "peak_memory_bytes", "time_total_s"),
        treatments=("task.reweight", "precision.name")),),
    claims="mwn_text.csv",
    baselines={("betty2023", "2"): "baseline"},
    settings={"sst-bert-base-if20": {"task.imbalance_factor": 20, "task.size": "base"},
              "sst-bert-base-if50": {"task.imbalance_factor": 50, "task.size": "base"},
              "sst-bert-base": {"task.size": "base"}},
    paper_data={"task.dataset": "sst"},
    claim_metrics={"test_accuracy": ("test_accuracy",), "peak_memory": ("peak_live_bytes", "peak_memory_bytes")},
    # "MWN fp32: out of memory" where fp16 fit in 10,511 MiB: a side, not a figure (the paper does not name its GPU)
    rules={"betty-t2-mwn32-oom": ClaimRule(
        "ratio", "peak_memory", "mwn-fp32", "mwn-fp16",
        "MWN fp32 vs MWN fp16 peak memory: fp32 ran out of memory where fp16 fit (10,511 MiB): more than 1×",
        math.inf, {"task.size": "base"})},
    memory=MemoryFamily(family_activations, "BERT-shaped (12 layers, heads d/64, MLP 4d, 30,522-token vocabulary) at "
                        "the paper preset's batches, 32 + 32 sequences of 128 tokens"),
)


@register("task")
class MWNText(MetaWeightNet):
    """Meta-Weight-Net reweighting a transformer text classifier on long-tailed text (Betty Table 2)."""

    name = "mwn_text"
    Config = MWNTextConfig
    paper = PAPER
    presets = {
        "demo": {"task": {"size": "tiny", "seq_len": 16, "batch_size": 32, "meta_batch_size": 32}, "steps": 100},
        "full": {"task": {"size": "1m", "seq_len": 32, "train_max_per_class": 1000}, "steps": 1000},
        "paper": {
            "task": {"dataset": "sst", "size": "base", "seq_len": 128, "batch_size": 32, "meta_batch_size": 32,
                     "imbalance_factor": 20.0, "weight_decay": 0.0,
                     "lower": {"name": "adam", "lr": 2e-5, "eps_root": 1e-12}, "upper": {"name": "adam", "lr": 1e-3}},
            "steps": 3000,
        },
    }

    def __init__(self, cfg: MWNTextConfig, seed: int) -> None:  # noqa: D107 - the data differ from mwn's
        Task.__init__(self, cfg, seed)
        self.tokenizer = tc.make_tokenizer(cfg.shape().vocab_size if not cfg.vocab_file else cfg.vocab_size,
                                           cfg.vocab_file)
        self.shape = dataclasses.replace(cfg.shape(), vocab_size=self.tokenizer.vocab_size)
        sep = bool(cfg.vocab_file)  # BERT's input form ([CLS] … [SEP]) with a real vocabulary
        pool, test = _labelled(cfg)
        self.n_classes = _classes(cfg, pool)
        self.model = tf.transformer(self.n_classes, self.shape)
        self.weight_net = nn.weight_net(cfg.weight_net_hidden)
        self.unavailable = None
        ids = self.tokenizer.encode(pool.texts, cfg.seq_len, sep=sep)[0]
        rng = np.random.default_rng([seed, 0x7E7])
        split = longtail.long_tailed_split(pool.labels, self.n_classes, cfg.imbalance_factor, cfg.meta_per_class,
                                           cfg.test_per_class if test is None else 0, rng,
                                           n_max=self._n_max(pool.labels, test is None))
        self.split, self.noisy, self.provenance = split, 0, getattr(pool, "provenance", {})
        self.x_train, self.y_train = ids[split.train], pool.labels[split.train]
        self.x_meta, self.y_meta = ids[split.meta], pool.labels[split.meta]
        if test is None:
            self.x_test, self.y_test = ids[split.test], pool.labels[split.test]
        else:
            self.x_test, self.y_test = self.tokenizer.encode(test.texts, cfg.seq_len, sep=sep)[0], test.labels
        self._batches = EpochBatches(seed)

    def _n_max(self, labels: np.ndarray, with_test: bool) -> int:
        held = self.cfg.meta_per_class + (self.cfg.test_per_class if with_test else 0)
        smallest = int(np.bincount(labels, minlength=self.n_classes).min()) - held
        return min(self.cfg.train_max_per_class, smallest)

    def init_params(self, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
        params = super().init_params(rng)
        if self.cfg.checkpoint:
            from mlo_bench.suite.models.checkpoint import load_bert_checkpoint

            loaded = load_bert_checkpoint(self.cfg.checkpoint, self.shape.n_layers,
                                          {k: v.shape for k, v in params["classifier"].items()})
            params["classifier"].update({k: v for k, v in loaded.items() if k in params["classifier"]})
        return params

    def data(self) -> dict[str, np.ndarray]:
        return {"x_train": self.x_train, "y_train": self.y_train, "x_meta": self.x_meta, "y_meta": self.y_meta}

    def batch(self, level: str, step: int) -> dict[str, np.ndarray] | None:
        if level == "classifier":
            return {"idx": self._batches.batch("train", len(self.y_train), self.cfg.batch_size, step)}
        return super().batch(level, step)

    def n_lower_params(self) -> int:
        return tf.count_params(self.shape, self.n_classes)

    def metrics(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        out = super().metrics(backend, params)
        for key in ("clamped_classes", "noisy_labels"):
            out.pop(key, None)
        out["n_params"] = self.n_lower_params()
        out["activation_elements"] = self.activation_elements()
        return out

    def activation_elements(self) -> int:
        """Elements of the residual stream and the attention maps of one forward pass over an outer step's two
        batches, summed over layers: ``(batch + meta batch) · s · L · (d + h · s)`` (the batches as drawn: at most
        the training and meta sets) — the variable the memory model's activation term is fitted against (bytes ≈
        a · parameters + b · this)."""
        cfg, sh = self.cfg, self.shape
        sequences = min(cfg.batch_size, len(self.y_train)) + min(cfg.meta_batch_size, len(self.y_meta))
        return sequences * cfg.seq_len * sh.n_layers * (sh.d_model + sh.n_heads * cfg.seq_len)
