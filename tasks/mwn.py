"""Meta-Weight-Net on long-tailed data (Shu et al. 2019; Betty Table 1), bilevel.

Levels, top first:

- ``mwn`` (upper): Meta-Weight-Net, an MLP 1 → ``weight_net_hidden`` → 1 with a sigmoid output that maps an example's
  training loss to its weight. Its loss is the classifier's mean cross-entropy on a batch of the small *balanced*
  meta set; it reads the classifier only, so its whole gradient is the best-response term.
- ``classifier`` (lower): a classifier (``mlp`` | ``cnn`` | ``resnet32``, :mod:`mlo_bench.suite.models.nn`) trained on
  the *long-tailed* training set with each example's loss weighted by the MWN:
  ``f(θ, λ) = Σ_i w_i ℓ_i(θ) / Σ_i w_i + ½ wd ‖θ‖²`` with ``w_i = MWN_λ(sg(ℓ_i(θ)))`` (``normalize=false``: the plain
  mean ``Σ_i w_i ℓ_i / n``).

Choices, and why:

- The weight net sees the loss *value*, detached (``detach=true``, ``sg`` above), as in the original MWN code
  (``vnet(cost_v.data)``): only the weights' dependence on λ is differentiated, never their dependence on θ. So the
  lower Hessian the implicit methods use is Σ_i w_i ∇²ℓ_i / Σ_i w_i + wd·I (w held fixed), the same operator every
  backend and ``unroll`` differentiate. ``detach=false`` differentiates through the input too.
- Weights are normalised over the batch (``normalize=true``) as in the MWN code for class imbalance.
- The classifier's weight decay is a term of its loss (``weight_decay``), not of its optimizer: the update is the
  same as torch SGD's coupled weight decay, and the implicit methods see ``H + wd·I`` (softmax cross-entropy alone
  has an exactly singular Hessian: adding one constant to every logit changes nothing).
- ERM is the same task with ``reweight=false``: the classifier's loss is the plain mean cross-entropy (+ weight decay),
  the MWN is present but unused. Same data, batches, initialisation, schedule and budget; run it with ``method=none``
  (no hypergradient is computed and the weight net is not trained: variant ``erm``).

Data (``dataset``):

- ``digits`` (default, embedded): scikit-learn's 1,797 8×8 digits. Per class, from a seeded permutation: a balanced
  test set (``test_per_class``) held out first, then a balanced meta set (``meta_per_class``), then the long-tailed
  training set ``n_c = int(n_max · IF^(−c/9))`` (``n_max`` = the smallest remaining class pool; ≥ 1, the classes that
  needed the clamp are reported in ``clamped_classes``), see :mod:`mlo_bench.tasks.data.longtail`.
- ``cifar10``: the python pickle batches under ``data_root`` (``cifar-10-batches-py``). The meta set
  (``meta_per_class`` = 10 → 100 images) is held out of the training batches first (the paper's "validation set"),
  the rest is long-tailed with ``n_max`` = 5000 − 10; the test set is ``test_batch``. Images are standardised per
  channel; ``augment=true`` adds the MWN code's reflect-pad-4 random crop and horizontal flip to training batches.
- ``noise_rate``: uniform label noise on the training set only (a label replaced by a uniformly drawn class).

Metrics: ``test_accuracy`` (balanced: the mean over classes of per-class accuracy on the balanced test set),
``per_class_accuracy`` (list, class 0 = head … class 9 = tail), ``train_class_sizes`` (list), ``clamped_classes``
(how many class sizes were raised to 1), ``noisy_labels`` (how many training labels the noise changed).
The classifier is small enough for an ``exact`` reference (``hypergrad_rel_error`` against ``exact`` at the final
state) when it has at most ``exact_max_params`` parameters; above that ``exact`` is unsupported.

Paper (``PAPER``, the ``paper`` attribute): the metric specs above (``test_accuracy`` is the result; the lists and
counts are diagnostics), Betty Table 1's variants (``variant=NAME`` on any backend; on ``naive`` with the original
code's reverse chain; ``original-unrolled`` runs the original step order, ``ordering=lookahead``), the table with its
claims, and the claims CSV ``tasks/claims/mwn.csv``.

Presets (``+preset=NAME``): ``demo`` (MLP on digits, 300 steps: seconds per run), ``full`` (the embedded data to
convergence: 2,000 classifier steps with the lr divided by 10 at 50 % and 75 %), ``paper`` (Betty's hyperparameters:
ResNet-32 on long-tailed CIFAR-10, needs ``task.data_root`` and a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlo_bench.suite.contract import (
    ClaimRule,
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
from mlo_bench.suite.engine.optim import OptimizerConfig
from mlo_bench.suite.models import nn
from mlo_bench.suite.models.batch import batch_mean
from mlo_bench.suite.models.reweight import EpochBatches, l2, per_example_ce, predict, weighted_mean
from mlo_bench.suite.plugins.registry import register
from mlo_bench.tasks.data import checks, images, longtail
from mlo_bench.tasks.data.longtail import long_tailed_split, uniform_noise

DATASETS = ("digits", "cifar10")
MODELS = ("mlp", "cnn", "resnet32")
#: (channels, height/width, classes) of each data set
SHAPES = {"digits": (1, 8, 10), "cifar10": (3, 32, 10)}


@dataclass
class MWNConfig:
    dataset: str = "digits"
    data_root: str | None = None
    imbalance_factor: float = 100.0
    noise_rate: float = 0.0
    meta_per_class: int = 10
    test_per_class: int = 50
    model: str = "mlp"
    hidden: int = 16
    weight_net_hidden: int = 100
    reweight: bool = True
    detach: bool = True
    normalize: bool = True
    weight_decay: float = 5e-3
    batch_size: int = 100
    meta_batch_size: int = 100
    augment: bool = False
    eval_batch_size: int = 500
    exact_max_params: int = 10000
    lower: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.1, momentum=0.9))
    upper: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", lr=1e-3))

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"task.dataset must be one of {', '.join(DATASETS)} (got {self.dataset!r})")
        if self.model not in MODELS:
            raise ValueError(f"task.model must be one of {', '.join(MODELS)} (got {self.model!r})")
        if not self.imbalance_factor >= 1:
            raise ValueError(f"task.imbalance_factor must be >= 1 (got {self.imbalance_factor})")
        if not 0 <= self.noise_rate < 1:
            raise ValueError(f"task.noise_rate must be in [0, 1) (got {self.noise_rate})")
        for key in ("meta_per_class", "hidden", "weight_net_hidden", "batch_size", "meta_batch_size",
                    "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"task.{key} must be >= 1 (got {getattr(self, key)})")
        if self.test_per_class < 1 and self.dataset == "digits":
            raise ValueError(f"task.test_per_class must be >= 1 (got {self.test_per_class})")
        if self.weight_decay < 0:
            raise ValueError(f"task.weight_decay must be >= 0 (got {self.weight_decay})")
        if self.exact_max_params < 0:
            raise ValueError(f"task.exact_max_params must be >= 0 (got {self.exact_max_params})")
        if self.dataset == "cifar10":
            if not self.data_root:
                raise ValueError(f"task.data_root must be given for task.dataset=cifar10; {images.CIFAR_LAYOUT}")
            data = checks.precheck("task.data_root", images.load_cifar10, self.data_root)  # read once, cached
            root = Path(self.data_root).expanduser()
            checks.precheck("task.data_root", longtail.check_sizes, data[1], 10, self.meta_per_class, 0,
                            f"{root}/data_batch_1..5")
            checks.precheck("task.data_root", checks.enough_per_class, data[3], 10, 1, str(root / images.CIFAR_TEST),
                            "the balanced test accuracy averages over every class")
        else:
            digits = checks.precheck("task.dataset", images.load_digits)  # None without scikit-learn: the run says so
            if digits is not None:
                longtail.check_sizes(digits[1], 10, self.meta_per_class, self.test_per_class,
                                     "task.meta_per_class, task.test_per_class: digits")
        self.lower.validate("task.lower")
        self.upper.validate("task.upper")


# ---- the paper (Betty Table 1): metrics, variants, the table, claims (tasks/claims/mwn.csv) --------------------
#: every variant runs on every backend; on naive with the original code's reverse chain (plain autograd, graph kept)
_NAIVE = {"naive": {"chain": "reverse"}}
_REWEIGHT = {"inner_steps": 1, "task.reweight": True}
VARIANTS = (
    Variant("erm", "none", {"inner_steps": 1, "task.reweight": False}, _NAIVE, label="ERM (no reweighting)",
            doc="the same task, data and budget with the loss unweighted, run with method=none (no hypergradient, "
                "the weight net untrained); not a row of Betty's table"),
    Variant("original-unrolled", "unroll", {**_REWEIGHT, "ordering": "lookahead"}, _NAIVE,
            label="original MWN (unrolled)",
            doc="Shu et al.'s order: virtual step → MWN update → real step, one unrolled step"),
    Variant("unroll-1", "unroll", _REWEIGHT, _NAIVE, label="Betty unrolled"),
    Variant("cg", "cg", _REWEIGHT, _NAIVE, label="Betty cg"),
    Variant("neumann", "neumann", _REWEIGHT, _NAIVE, label="Betty neumann"),
    Variant("darts-1", "darts", _REWEIGHT, _NAIVE, label="Betty darts, 1 step"),
    Variant("darts-5", "darts", {**_REWEIGHT, "inner_steps": 5}, _NAIVE, label="Betty darts, 5 steps"),
)
_REWEIGHTING = tuple(v.name for v in VARIANTS if v.name != "erm")
#: Betty's MWN tutorial in fp16 (its ``Config(fp16=True)``): darts-1 under fp16 autocast with dynamic loss scaling;
#: not a row of Table 1, only the tutorial's memory claim (judged on a ResNet-32, ``experiment=mwn_precision_memory``)
TUTORIAL_FP16 = Variant("darts-1-fp16", "darts", {**_REWEIGHT, "precision.name": "fp16"}, _NAIVE,
                        label="Betty darts, 1 step, fp16",
                        doc="darts-1 in fp16 autocast with dynamic loss scaling (Betty's tutorial, Config(fp16=True))")


def _darts_vs(den: str) -> tuple[Comparison, ...]:
    return (Comparison("darts-1", den, "test_accuracy", "match", at="each"),
            Comparison("darts-1", den, "peak_live_bytes", "lower"),
            Comparison("darts-1", den, "time_total_s", "lower"))


PAPER = Paper(
    metrics=(
        MetricSpec("test_accuracy", "higher", "fraction", doc="balanced test accuracy (mean of per-class)"),
        MetricSpec("per_class_accuracy", "higher", "fraction", kind="list", quality=False),
        MetricSpec("train_class_sizes", None, "count", kind="list"),
        MetricSpec("clamped_classes", None, "count"),
        MetricSpec("noisy_labels", None, "count"),
    ),
    variants=(*VARIANTS, TUTORIAL_FP16),
    tables=(PaperTable(
        "Meta-Weight-Net on long-tailed data (Betty Table 1, our analogue)", tuple(v.name for v in VARIANTS),
        column="task.imbalance_factor", column_label="IF", quality="test_accuracy",
        cost=("peak_live_bytes", "peak_memory_bytes", "time_total_s"), treatments=("task.reweight",),
        claims=(
            TableClaim("MWN beats ERM at the highest imbalance (each reweighting variant against ERM)",
                       tuple(Comparison(v, "erm", "test_accuracy", "higher", at="max") for v in _REWEIGHTING)),
            TableClaim("darts with 1 step matches or beats the original unrolled MWN in accuracy while using less "
                       "memory (peak live bytes) and less wall time", _darts_vs("original-unrolled")),
            TableClaim("darts with 1 step matches or beats Betty's unrolled variant in accuracy while using less "
                       "memory (peak live bytes) and less wall time", _darts_vs("unroll-1")),
        )),),
    claims="mwn.csv",
    baselines={("betty2023", "1"): "original-unrolled", ("betty-tutorial", "tutorial"): "darts-1"},
    # the tutorial's ResNet-50 on CIFAR-10 stands as the ResNet-32 here (on any data: counted bytes, relative)
    settings={**{f"cifar10-lt-if{k}": {"task.imbalance_factor": k} for k in (50, 100, 200)},
              "cifar10-lt-resnet50": {"task.model": "resnet32"}},
    paper_data={"task.dataset": "cifar10"},
    claim_metrics={"test_accuracy": ("test_accuracy",), "peak_memory": ("peak_live_bytes", "peak_memory_bytes"),
                   "wall_time": ("time_total_s",)},
    rules={
        "betty-abstract-acc": ClaimRule(
            "ratio", "test_accuracy", "darts-5", "original-unrolled",
            "darts-5 vs original-unrolled MWN test accuracy, IF 200: up to 11% higher (76.56/68.91)",
            76.56 / 68.91, {"task.imbalance_factor": 200}),
        "betty-abstract-mem": ClaimRule(
            "ratio", "peak_memory", "darts-1", "original-unrolled",
            "darts-1 vs original-unrolled MWN peak memory: 14% less (2051/2381 MiB)", 2051 / 2381),
        "betty-abstract-time": ClaimRule(
            "ratio", "wall_time", "darts-1", "original-unrolled",
            "darts-1 vs original-unrolled MWN wall time: 20% less (28.5/35.8 min)", 28.5 / 35.8),
    },
)


def make_model(cfg: MWNConfig) -> nn.Model:
    channels, size, classes = SHAPES[cfg.dataset]
    if cfg.model == "mlp":
        return nn.mlp(channels * size * size, classes, (cfg.hidden,))
    if cfg.model == "cnn":
        return nn.cnn(channels, size, classes)
    return nn.resnet32(channels, classes)


@register("task")
class MetaWeightNet(ExactBudget, Task):
    """Meta-Weight-Net reweighting a classifier on long-tailed data (digits embedded; CIFAR-10 pickles)."""

    name = "mwn"
    Config = MWNConfig
    paper = PAPER
    presets = {
        "demo": {
            "task": {"dataset": "digits", "model": "mlp", "hidden": 16, "imbalance_factor": 100.0,
                     "batch_size": 100, "meta_batch_size": 100, "weight_decay": 5e-3,
                     "lower": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "milestones": [200], "gamma": 0.1},
                     "upper": {"name": "adam", "lr": 3e-3}},
            "steps": 300,
        },
        "full": {
            "task": {"dataset": "digits", "model": "mlp", "hidden": 32, "batch_size": 100, "meta_batch_size": 100,
                     "weight_decay": 5e-3,
                     "lower": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "milestones": [1000, 1500],
                               "gamma": 0.1},
                     "upper": {"name": "adam", "lr": 1e-3}},
            "steps": 2000,
        },
        "paper": {
            "task": {"dataset": "cifar10", "model": "resnet32", "imbalance_factor": 100.0, "meta_per_class": 10,
                     "batch_size": 100, "meta_batch_size": 100, "augment": True, "weight_decay": 5e-4,
                     "lower": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
                               "milestones": [5000, 7500], "gamma": 0.1},
                     "upper": {"name": "adam", "lr": 1e-5, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.0}},
            "steps": 10000,
        },
    }

    def __init__(self, cfg: MWNConfig, seed: int) -> None:
        super().__init__(cfg, seed)
        self.model = make_model(cfg)
        self.weight_net = nn.weight_net(cfg.weight_net_hidden)
        self.n_classes = SHAPES[cfg.dataset][2]
        self.unavailable: str | None = None
        rng = np.random.default_rng([seed, 0x3A1])
        if cfg.dataset == "digits":
            try:
                x, y = images.load_digits()
            except ImportError as exc:
                self.unavailable = str(exc)
                return
            split = long_tailed_split(y, self.n_classes, cfg.imbalance_factor, cfg.meta_per_class,
                                      cfg.test_per_class, rng)
            x_pool, y_pool = x, y
            self.x_test, self.y_test = x[split.test], y[split.test]
        else:
            x_tr, y_tr, x_te, y_te = images.load_cifar10(cfg.data_root)
            split = long_tailed_split(y_tr, self.n_classes, cfg.imbalance_factor, cfg.meta_per_class, 0, rng)
            x_pool, y_pool = x_tr, y_tr
            order = rng.permutation(len(y_te))  # class-mixed evaluation chunks (batch-statistics BN)
            self.x_test, self.y_test = images.cifar_normalise(x_te[order]), y_te[order]
        self.split = split
        convert = images.cifar_normalise if cfg.dataset == "cifar10" else (lambda a: a)
        self.x_train, self.x_meta = convert(x_pool[split.train]), convert(x_pool[split.meta])
        clean = y_pool[split.train]
        self.y_train = uniform_noise(clean, cfg.noise_rate, self.n_classes, rng) if cfg.noise_rate else clean
        self.noisy = int((self.y_train != clean).sum())
        self.y_meta = y_pool[split.meta]
        self._batches = EpochBatches(seed)

    # ---- the program ------------------------------------------------------------------------------------------
    def levels(self) -> list[Level]:
        return [
            Level("mwn", self._meta_loss, self.cfg.upper, data="meta"),
            Level("classifier", self._train_loss, self.cfg.lower, parent="mwn", data="train"),
        ]

    def _meta_loss(self, ops: Any, params: dict[str, Any], batch: Any) -> Any:
        idx = batch["meta_idx"]
        logits = self.model.apply(ops, params["classifier"], batch["x_meta"][idx])
        return batch_mean(ops, per_example_ce(ops, logits, batch["y_meta"][idx]))

    def _train_loss(self, ops: Any, params: dict[str, Any], batch: Any) -> Any:
        cfg, idx = self.cfg, batch["idx"]
        x = batch["x_aug"] if "x_aug" in batch else batch["x_train"][idx]
        theta = params["classifier"]
        losses = per_example_ce(ops, self.model.apply(ops, theta, x), batch["y_train"][idx])
        if cfg.reweight:
            w = self.weight_net.apply(ops, params["mwn"], ops.stop_gradient(losses) if cfg.detach else losses)
            loss = weighted_mean(ops, w, losses, cfg.normalize)
        else:
            loss = batch_mean(ops, losses)
        if cfg.weight_decay:
            loss = loss + 0.5 * cfg.weight_decay * l2(ops, theta)
        return loss

    def init_params(self, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
        return {"mwn": self.weight_net.init(rng), "classifier": self.model.init(rng)}

    def data(self) -> dict[str, np.ndarray]:
        out = {"y_train": self.y_train, "x_meta": self.x_meta, "y_meta": self.y_meta}
        if not self.cfg.augment:  # augmented batches bring their own images
            out["x_train"] = self.x_train
        return out

    def batch(self, level: str, step: int) -> dict[str, np.ndarray] | None:
        if level == "classifier":
            idx = self._batches.batch("train", len(self.y_train), self.cfg.batch_size, step)
            out = {"idx": idx}
            if self.cfg.augment:
                rng = np.random.default_rng([self.seed, 0xA06, step])
                out["x_aug"] = images.augment_crop_flip(self.x_train[idx], rng)
            return out
        n_meta = len(self.y_meta)
        if self.cfg.meta_batch_size >= n_meta:
            return {"meta_idx": np.arange(n_meta, dtype=np.int64)}
        return {"meta_idx": self._batches.batch("meta", n_meta, self.cfg.meta_batch_size, step)}

    # ---- metrics and checks -----------------------------------------------------------------------------------
    def n_lower_params(self) -> int:
        return nn.n_params(self.model.init(np.random.default_rng(0)))

    def predict(self, backend: Any, theta: dict[str, Any], x: np.ndarray) -> np.ndarray:
        """Class predictions for numpy images ``x``, in chunks of ``eval_batch_size`` (:func:`reweight.predict`)."""
        return predict(backend, self.model, theta, x, self.cfg.eval_batch_size)

    def metrics(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        pred = self.predict(backend, params["classifier"], self.x_test)
        per_class = [float(np.mean(pred[self.y_test == c] == c)) for c in range(self.n_classes)]
        return {
            "test_accuracy": float(np.mean(per_class)),
            "per_class_accuracy": per_class,
            "train_class_sizes": [int(n) for n in self.split.sizes],
            "clamped_classes": len(self.split.clamped),
            "noisy_labels": self.noisy,
        }
