"""DARTS: differentiable architecture search (Liu et al., ICLR 2019), bilevel; Betty's NAS example.

Levels, top first:

- ``arch`` (upper): the architecture logits α (edges × primitives, shared by every cell) of the cell search space
  :class:`mlo_bench.suite.models.darts_cells.SearchSpace`. Its loss is the supernet's mean cross-entropy on a batch of
  the *second* half of the training data.
- ``weights`` (lower): the supernet's weights w, trained on the *first* half: mean cross-entropy
  ``+ ½ weight_decay ‖w‖²`` (a term of the loss, so the implicit methods see ``H + wd·I``).

Methods: ``first_order`` (α's gradient at the current w), ``darts`` with ``method.xi`` = the lower learning rate
(Liu et al.'s second-order approximation; variant ``original-darts``), ``darts`` with ξ = 1 (Betty's form; ``darts-1``
and, with 3 inner steps, ``darts-3``), ``cg``, ``neumann`` and ``unroll``; on naive with the reverse chain.

Evaluation (``evaluate``, the post-training phase, ``time_eval_s``): derive the genotype (DARTS's rule: per node the
two strongest incoming edges, each with its strongest non-``none`` operation), retrain the derived network from a fresh
initialisation on the whole training split (both halves) for ``retrain_steps`` SGD steps, and score it on the test
split: ``derived_accuracy``, ``derived_params``, ``genotype`` (text), ``retrain_s`` (the retraining loop alone,
compile excluded). Search time and memory are the run's own (``time_total_s``, ``peak_*``).

Skip-connection collapse, measured, not hidden (``metrics``; with ``eval_every=N`` also curves in ``trace.csv``):
``skip_share`` (share of ``skip_connect`` in the genotype), ``zero_share`` (share of edges whose largest α is
``none``'s), and ``hessian_eig`` — the dominant eigenvalue of ∇²_α L_val(w, α) at the current state, by
``hessian_iters`` power iterations with the backend's Hessian-vector products on a fixed batch of the α half
(``hessian_examples``). RobustDARTS (Zela et al. 2020) ties its growth to poor derived architectures.

Choices, and why: one α for every cell and no reduction cells (a digit is 8×8: no room to downsample twice; the
derivation and collapse mechanics are the normal cell's); the lower level's weight decay is a loss term; α's Adam uses
DARTS's β₁ = 0.5 with a 10× larger rate (3e-3: hundreds of steps here against DARTS's ~20,000); ``original-darts``
is ``darts`` with ``method.xi`` = the lower learning rate (see :mod:`mlo_bench.methods.darts`). The eigenvalue is the
one of largest magnitude, signed (early in a search it is small and may be negative). ``exact`` materialises the
supernet's Hessian: only up to ``exact_max_params`` (300) weights.

Data (``dataset``): ``digits`` (default, embedded): scikit-learn's 8×8 digits, a seeded ``test_fraction`` held out,
the rest split in two halves; ``cifar10``: the MWN task's loader (``data_root`` holding ``cifar-10-batches-py``),
the 50,000 training images split in two halves, scored on ``test_batch`` (``test_examples`` > 0 keeps that many).

Demo size (``+preset=demo``: 1 cell of 1 node — 2 edges — over :data:`DEMO_PRIMITIVES`, 4 channels, batch 32,
100 steps, 300 retraining steps, 5 power iterations; ``+experiment=darts_demo`` adds ``eval_every=20``). Measured
per run, ``MLO_BENCH_JAX_CACHE=off`` (jax compiles cold, as on a first run), 1 thread, a 2-core CPU at load 3.4–6.5
(other sessions' work): ``/usr/bin/time mlo-bench run task=darts +preset=demo variant=V backend=B eval_every=20``.
CPU = user + sys of the whole process (≈ its wall time on a quiet machine); search / compile / eval are the
record's ``time_total_s`` / ``compile_s`` / ``time_eval_s`` (wall, inflated ~2× by the load); accuracy: chance 0.1.

==============  =================  =================  =================  ============
variant         torch CPU s (acc)  jax CPU s (acc)    naive CPU s (acc)  jax compile
==============  =================  =================  =================  ============
original-darts  14.4 (0.738)       41.2 (0.741)       16.5 (0.738)       19.2 s
darts-1         14.1 (0.738)       43.1 (0.741)       16.4 (0.738)       16.1 s
darts-3         17.4 (0.777)       46.7 (0.780)       16.4 (0.777)       21.3 s
first-order     16.1 (0.738)       34.6 (0.741)       13.3 (0.738)       16.1 s
nas-cg          36.0 (0.713)       78.9 (0.713)       41.3 (0.713)       41.1 s
nas-neumann     20.0 (0.713)       64.1 (0.713)       16.1 (0.713)       42.2 s
nas-unroll      15.8 (0.738)       43.9 (0.741)       15.2 (0.738)       20.3 s
==============  =================  =================  =================  ============

Every combination is under 80 s CPU (18 of 21 under 50 s); wall clock on a quiet machine (load 0.7–1.3), the slowest:
jax × cg 49 s cold, jax × neumann 36 s, naive × cg 38 s, torch × cg 32 s. What dominates: ~10 s fixed per process
(imports, data, warm-up: a 5-step naive run took 12 s CPU); on torch and naive the search (cg's 10 Hessian-vector
products per step: 40 s wall of torch's 68, torch at 0.4 s per step against darts' 0.05) and the retraining (2–3 s); on
jax the compiles — the loop's (16–42 s wall, cg and neumann twice darts'), then, outside every clock, FLOP counting,
which compiles the hypergradient once more with its loops unrolled (cg: 10 HVPs), the floor's gradient, the HVP of
``hessian_eig`` and the retraining step — while jax's 100 steps take 2–9 s. The former demo (2 nodes, DARTS's 8
primitives, 400 retraining steps) cost 20–89 s CPU on torch (cg 89) and 258 s on jax × cg (129 s compiling), hence the
smaller cell: the compiled graph grows with edges × primitives (one supernet gradient: 6.2 s CPU to compile at 2 nodes ×
8 primitives, 2.6 s at 1 node, 3.7 s with 6 primitives). At that former size, 3 seeds: darts-1 ÷ original-darts = 0.981×
[0.938, 1.03] (paired) on derived accuracy 0.70–0.91; ``hessian_eig`` grew from ≈ ±0.004 to 0.03 over 100 steps; skip
share 0 (pools dominate early, as in DARTS's first epochs). In the demo's traces (``eval_every=20``, the report's
curves) ``hessian_eig`` grows from −0.007 at step 20 to 0.015–0.020 at step 100 (darts-3, whose w takes 3 steps per α
step: 0.011 → 0.037), the same to 2–3 digits on the three backends; the skip share ends at 0 (cg's genotype held one
skip at step 20). ``mlo-bench verify`` (the command in docs/tasks.md: a 5-edge space, float64, 2 steps) passes: all 6
comparisons within 1e-6 (jax × first_order, darts, cg, neumann, unroll: 5e-14 – 8e-9 against torch; naive × unroll
1e-17), 735 s wall, 500 s CPU at load 3–5, of which one 2-minute jax compile for cg.

Full size (``+preset=full``: 1 cell of 2 nodes — 5 edges, a topology to choose — over DARTS's 8 primitives, 4
channels, batch 32, 200 steps, 800 retraining steps; ``+experiment=darts_table``: torch, 7 variants × 4 seeds,
``eval_every=50``), sized from CPU per outer step, measured by two runs 10 steps apart per variant in one process
(``time.process_time``, load 3.5–4): darts-1 0.11, original-darts 0.06, darts-3 0.16, first-order 0.07, cg 0.96,
neumann 0.21, unroll 0.13 s — 1.7 s per step of all 7, 340 s per seed for 200 steps, plus ~20 s per run (process
start, retraining, 5 collapse evaluations): ≈ 480 s per seed, ≈ 32 min for the 28 runs on a quiet machine (one run at
a time). cg is 57% of it. The former full size (3 nodes, 6 channels, batch 64: 0.26–2.3 s per step, cg 2.3) came to ≈
71 min.

Run (``mlo-bench run -m +experiment=darts_table results_dir=/tmp/wt17-results/darts``, then ``mlo-bench report`` on
it; load 1–3.6): 28 runs ok in 1625 s wall, 1570 s CPU (26 min, under the 32 estimated). Derived accuracy (4 seeds,
mean ± std): original-darts 0.928 ± 0.011, darts-1 0.890 ± 0.074, darts-3 0.961 ± 0.013, first-order 0.927 ± 0.010, cg
0.880 ± 0.077, neumann 0.859 ± 0.082, unroll 0.928 ± 0.011; computed verdicts: darts-3 matches original-darts,
supported (1.04× [1.01, 1.06], paired, n = 4); darts-1 matches it, inconclusive (0.956× [0.845, 1.08]: ≈ 41 seeds at
that spread). ``hessian_eig`` grows on every variant (0.007–0.030 at step 50 → 0.034–0.16 at 200, darts-3 highest);
skip share 0 at the end except cg (one skip in one seed's genotype).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlo_bench.suite.contract import (
    Comparison,
    ExactBudget,
    Level,
    MetricSpec,
    Paper,
    PaperTable,
    TableClaim,
    Task,
    Variant,
)
from mlo_bench.suite.engine import optim
from mlo_bench.suite.engine.optim import OptimizerConfig
from mlo_bench.suite.engine.trees import tree_map, tree_vdot
from mlo_bench.suite.models import nn
from mlo_bench.suite.models.batch import batch_mean
from mlo_bench.suite.models.darts_cells import DARTS_PRIMITIVES, PRIMITIVES, SearchSpace
from mlo_bench.suite.models.reweight import EpochBatches, l2, per_example_ce, predict
from mlo_bench.suite.plugins.registry import register
from mlo_bench.tasks.data import images

DATASETS = ("digits", "cifar10")
#: the demo's primitives: one of each kind (zero, pools, skip, separable and dilated convolutions), the 5×5 ones out
DEMO_PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")
LOWER_LR = 0.05


@dataclass
class DartsConfig:
    dataset: str = "digits"
    data_root: str | None = None
    test_fraction: float = 0.2
    test_examples: int = 0
    channels: int = 8
    cells: int = 2
    nodes: int = 3
    primitives: list[str] = field(default_factory=lambda: list(DARTS_PRIMITIVES))
    stem_pool: int = 1
    batch_size: int = 64
    weight_decay: float = 3e-4
    retrain_steps: int = 300
    retrain_batch_size: int = 64
    retrain: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.05, momentum=0.9))
    eval_batch_size: int = 256
    hessian_iters: int = 10
    hessian_examples: int = 128
    exact_max_params: int = 300
    lower: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=LOWER_LR, momentum=0.9))
    upper: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", lr=3e-3, beta1=0.5))

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"task.dataset must be one of {', '.join(DATASETS)} (got {self.dataset!r})")
        if self.dataset == "cifar10":
            if not self.data_root:
                raise ValueError("task.data_root must be given for task.dataset=cifar10")
            try:
                images.check_cifar10(self.data_root)
            except (OSError, ValueError) as exc:
                raise ValueError(f"task.data_root: {exc}") from None
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"task.test_fraction must be in (0, 1) (got {self.test_fraction})")
        for key in ("channels", "cells", "nodes", "stem_pool", "batch_size", "retrain_batch_size",
                    "eval_batch_size", "hessian_iters", "hessian_examples"):
            if getattr(self, key) < 1:
                raise ValueError(f"task.{key} must be >= 1 (got {getattr(self, key)})")
        for key in ("retrain_steps", "test_examples", "exact_max_params"):
            if getattr(self, key) < 0:
                raise ValueError(f"task.{key} must be >= 0 (got {getattr(self, key)})")
        if self.weight_decay < 0:
            raise ValueError(f"task.weight_decay must be >= 0 (got {self.weight_decay})")
        try:
            SearchSpace(1, 2, primitives=tuple(self.primitives))
        except ValueError as exc:
            raise ValueError(f"task.{exc}") from None
        for key in ("lower", "upper", "retrain"):
            getattr(self, key).validate(f"task.{key}")


# ---- the paper: DARTS rows of Betty's README (tasks/claims/darts.csv), metrics, variants, the table --------------
_NAIVE = {"naive": {"chain": "reverse"}}
VARIANTS = (
    Variant("original-darts", "darts", {"method.xi": LOWER_LR}, _NAIVE, label="original DARTS (2nd order, ξ = lr)",
            doc="Liu et al.'s second-order approximation: finite-difference mixed derivative scaled by ξ"),
    Variant("darts-1", "darts", {"inner_steps": 1}, _NAIVE, label="Betty darts, 1 step",
            doc="Betty's finite-difference form (no ξ), one w step per α step"),
    Variant("darts-3", "darts", {"inner_steps": 3}, _NAIVE, label="Betty darts, 3 steps",
            doc="Betty's finite-difference form (no ξ), three w steps per α step"),
    Variant("first-order", "first_order", {}, _NAIVE, label="DARTS 1st order",
            doc="α's gradient at the current w (DARTS's first-order approximation)"),
    Variant("nas-cg", "cg", {}, _NAIVE, label="implicit, cg", doc="implicit hypergradient, conjugate gradient"),
    Variant("nas-neumann", "neumann", {}, _NAIVE, label="implicit, neumann", doc="implicit, Neumann series"),
    Variant("nas-unroll", "unroll", {}, _NAIVE, label="unrolled", doc="reverse mode through the w step"),
)
ROWS = tuple(v.name for v in VARIANTS)

PAPER = Paper(
    metrics=(
        MetricSpec("derived_accuracy", "higher", "fraction", doc="test accuracy of the derived, retrained network"),
        MetricSpec("derived_params", None, "count", doc="parameters of the derived network"),
        MetricSpec("genotype", kind="text", doc="the derived cell in DARTS's text form"),
        MetricSpec("skip_share", None, "fraction", doc="share of skip_connect among the genotype's operations"),
        MetricSpec("zero_share", None, "fraction", doc="share of edges whose largest α is none's"),
        MetricSpec("hessian_eig", None, "", doc="dominant eigenvalue of the α-Hessian of the validation loss"),
        MetricSpec("retrain_s", None, "s", doc="the derived network's retraining loop (compile excluded)"),
    ),
    variants=VARIANTS,
    tables=(PaperTable(
        "DARTS on a small cell search space (Betty's README, our analogue)", ROWS, column="task.dataset",
        column_label="data", quality="derived_accuracy",
        cost=("derived_params", "peak_live_bytes", "peak_memory_bytes", "time_total_s", "time_eval_s",
              "hessian_eig", "skip_share"),
        claims=(
            TableClaim("Betty's one-step darts matches original second-order DARTS",
                       (Comparison("darts-1", "original-darts", "derived_accuracy", "match"),)),
            TableClaim("Betty's three-step darts matches original second-order DARTS",
                       (Comparison("darts-3", "original-darts", "derived_accuracy", "match"),)),
        ), match_tolerance=0.02),),
    claims="darts.csv",
    baselines={("betty-readme", "nas"): "original-darts"},
    settings={"cifar10": {}},
    paper_data={"task.dataset": "cifar10"},
    claim_metrics={"test_accuracy": ("derived_accuracy",)},
    curves=("hessian_eig", "skip_share", "outer_loss"),
)


@register("task")
class Darts(ExactBudget, Task):
    """DARTS: architecture logits α over network weights w, derived architectures retrained and scored."""

    name = "darts"
    Config = DartsConfig
    paper = PAPER
    presets = {
        "demo": {"task": {"channels": 4, "cells": 1, "nodes": 1, "primitives": list(DEMO_PRIMITIVES),
                          "batch_size": 32, "retrain_steps": 300, "hessian_iters": 5}, "steps": 100},
        "full": {"task": {"channels": 4, "cells": 1, "nodes": 2, "batch_size": 32, "retrain_steps": 800}, "steps": 200},
    }

    def __init__(self, cfg: DartsConfig, seed: int) -> None:
        super().__init__(cfg, seed)
        self.unavailable: str | None = None
        try:
            x, y, x_test, y_test = self._load(cfg, seed)
        except ImportError as exc:
            self.unavailable = str(exc)
            x, y = np.zeros((4, 1, 8, 8)), np.arange(4) % 2
            x_test, y_test = x, y
        half = np.random.default_rng([seed, 0xDA7, 1]).permutation(len(y))
        a, b = np.sort(half[: len(y) // 2]), np.sort(half[len(y) // 2:])
        self.x_train, self.y_train, self.x_val, self.y_val = x[a], y[a], x[b], y[b]
        self.x_all, self.y_all, self.x_test, self.y_test = x, y, x_test, y_test
        self.n_classes = int(y.max()) + 1
        self.space = SearchSpace(x.shape[1], self.n_classes, cfg.channels, cfg.cells, cfg.nodes,
                                 tuple(cfg.primitives), cfg.stem_pool)
        self._batches = EpochBatches(seed, {"train": 1, "val": 2, "retrain": 3})
        self._hvp: dict[int, Any] = {}

    @staticmethod
    def _load(cfg: DartsConfig, seed: int) -> tuple[np.ndarray, ...]:
        if cfg.dataset == "digits":
            x, y = images.load_digits()
            perm = np.random.default_rng([seed, 0xDA7, 0]).permutation(len(y))
            n_test = int(round(cfg.test_fraction * len(y)))
            test, rest = np.sort(perm[:n_test]), np.sort(perm[n_test:])
            return x[rest], y[rest], x[test], y[test]
        x, y, x_test, y_test = images.load_cifar10(cfg.data_root)
        if cfg.test_examples:
            x_test, y_test = x_test[: cfg.test_examples], y_test[: cfg.test_examples]
        return images.cifar_normalise(x), y, images.cifar_normalise(x_test), y_test

    # ---- the program ------------------------------------------------------------------------------------------
    def levels(self) -> list[Level]:
        return [Level("arch", self._val_loss, self.cfg.upper, data="val"),
                Level("weights", self._train_loss, self.cfg.lower, parent="arch", data="train")]

    def _ce(self, ops: Any, w: Any, alpha: Any, x: Any, y: Any) -> Any:
        return batch_mean(ops, per_example_ce(ops, self.space.supernet(ops, w, alpha, x), y))

    def _val_loss(self, ops: Any, params: dict[str, Any], batch: Any) -> Any:
        idx = batch["idx"]
        return self._ce(ops, params["weights"], params["arch"]["normal"], batch["x_val"][idx], batch["y_val"][idx])

    def _train_loss(self, ops: Any, params: dict[str, Any], batch: Any) -> Any:
        idx, w = batch["idx"], params["weights"]
        loss = self._ce(ops, w, params["arch"]["normal"], batch["x_train"][idx], batch["y_train"][idx])
        return loss + 0.5 * self.cfg.weight_decay * l2(ops, w) if self.cfg.weight_decay else loss

    def init_params(self, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
        return {"arch": {"normal": self.space.init_alpha(rng)}, "weights": self.space.init_supernet(rng)}

    def data(self) -> dict[str, np.ndarray]:
        return {"x_train": self.x_train, "y_train": self.y_train, "x_val": self.x_val, "y_val": self.y_val}

    def batch(self, level: str, step: int) -> dict[str, np.ndarray] | None:
        tag, n = ("train", len(self.y_train)) if level == "weights" else ("val", len(self.y_val))
        return {"idx": self._batches.batch(tag, n, self.cfg.batch_size, step)}

    def n_lower_params(self) -> int:
        return nn.n_params(self.space.init_supernet(np.random.default_rng(0)))

    # ---- collapse diagnostics (every eval_every steps and at the end) -----------------------------------------
    def hessian_eig(self, backend: Any, params: dict[str, Any]) -> float:
        """Dominant eigenvalue of ∇²_α L_val(w, α) by power iteration (Rayleigh quotient of the last iterate), HVPs
        through the backend on the first ``hessian_examples`` examples of the α half; start vector seeded."""
        ops = backend.ops
        if id(backend) not in self._hvp:
            def hv(alpha: Any, w: Any, v: Any, x: Any, y: Any) -> Any:
                return backend.hvp(lambda a: self._ce(ops, w, a, x, y), alpha, v)

            n = min(self.cfg.hessian_examples, len(self.y_val))
            args = (backend.asarray(self.x_val[:n]), backend.asarray(self.y_val[:n]))
            alpha = params["arch"]["normal"]
            self._hvp[id(backend)] = (backend.compile(hv, (alpha, params["weights"], alpha, *args))[0], args)
        fn, args = self._hvp[id(backend)]
        v = np.random.default_rng([self.seed, 0xE16]).standard_normal(self.space.alpha_shape())
        v = backend.asarray(v / np.linalg.norm(v))
        eig = 0.0
        for _ in range(self.cfg.hessian_iters):
            hv = fn(params["arch"]["normal"], params["weights"], v, *args)
            eig = float(backend.to_numpy(tree_vdot(ops, v, hv)))
            norm = float(np.sqrt(backend.to_numpy(tree_vdot(ops, hv, hv))))
            if not norm > 0:
                return 0.0
            v = tree_map(lambda t, s=norm: t / s, hv)
        return eig

    def metrics(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        alpha = backend.to_numpy(params["arch"]["normal"])
        g = self.space.derive(alpha)
        return {"genotype": str(g), "skip_share": g.share("skip_connect"), "zero_share": self.space.zero_share(alpha),
                "hessian_eig": self.hessian_eig(backend, params)}

    # ---- derive, retrain, score -------------------------------------------------------------------------------
    def evaluate(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        cfg, ops = self.cfg, backend.ops
        g = self.space.derive(backend.to_numpy(params["arch"]["normal"]))
        apply = self.space.derived(g)
        theta0 = self.space.init_derived(np.random.default_rng([self.seed, 0xE7A]), g)
        model = nn.Model("derived", lambda rng: theta0, apply)

        def loss(theta: Any, x: Any, y: Any) -> Any:
            ce = ops.mean(per_example_ce(ops, apply(ops, theta, x), y))
            return ce + 0.5 * cfg.weight_decay * l2(ops, theta) if cfg.weight_decay else ce

        grad = backend.grad(loss)

        def step(theta: Any, state: Any, x: Any, y: Any) -> Any:
            return optim.update(ops, cfg.retrain, grad(theta, x, y), state, theta)

        theta = backend.tree_asarray(theta0)
        state = optim.init(ops, cfg.retrain, theta)
        size = min(cfg.retrain_batch_size, len(self.y_all))
        first = self._batches.batch("retrain", len(self.y_all), size, 0)
        step_c = backend.compile(step, (theta, state, backend.asarray(self.x_all[first]),
                                        backend.asarray(self.y_all[first])))[0] if cfg.retrain_steps else step
        backend.block(theta)
        start = time.perf_counter()
        for t in range(cfg.retrain_steps):
            idx = self._batches.batch("retrain", len(self.y_all), size, t)
            theta, state = step_c(theta, state, backend.asarray(self.x_all[idx]), backend.asarray(self.y_all[idx]))
        backend.block(theta)
        retrain_s = time.perf_counter() - start
        pred = predict(backend, model, theta, self.x_test, cfg.eval_batch_size)
        return {"derived_accuracy": float(np.mean(pred == self.y_test)), "derived_params": nn.n_params(theta0),
                "genotype": str(g), "retrain_s": retrain_s}


__all__ = ["Darts", "DartsConfig", "PRIMITIVES"]
