"""Weak supervision on WRENCH-format data (Betty Table 3): label-model baselines, reweighting, reweighting & correction.

Training labels come from labeling functions (LFs) that vote for a class or abstain; a label model
(:mod:`mlo_bench.tasks.data.label_models`: ``dawid_skene`` by default, or ``majority_vote``) turns the votes of the
training set into labels q_i; an end model (a 2-layer MLP: features → ``hidden`` → classes) trains on them. The
program (``program``):

- ``label_model``: the label model alone — ``test_score`` is its accuracy on the test set (Table 3's "Snorkel" row).
  The end model still trains (as ``baseline``) and is reported as ``end_model_test_accuracy``. Run with
  ``method=none``.
- ``baseline``: the end model on the label model's labels, ``f(θ) = mean_i CE(q_i, p_θ(x_i)) + ½ wd ‖θ‖²``. Run with
  ``method=none`` (the upper level is present, unused and untrained).
- ``reweight`` (bilevel): the upper level ``reweighter`` is a weight net (:func:`mlo_bench.suite.models.nn.weight_net`,
  the MWN's, here with 4 inputs: the example's detached loss and a summary of its LF votes — the fraction of its votes
  that agree with its label, its number of votes / the most any example has, and the label's confidence max_k q_ik)
  giving ``w_i ∈ (0, 1)``; the lower level ``end_model`` minimises ``Σ w_i ℓ_i / Σ w_i + ½ wd ‖θ‖²`` (the MWN's
  normalised weighted mean, :func:`mlo_bench.suite.models.reweight.weighted_mean`).
- ``correct`` (bilevel, "reweight & correct"): the upper level also holds a correction net (MLP: the example's vote
  fractions per class and q_i → ``correct_hidden`` → classes, its last layer initialised at zero) whose output z_i
  shifts the label: ``ỹ_i = softmax(log((1 − ε) q_i + ε/K) + z_i)`` (ε = ``smoothing``), so training starts from the
  (smoothed) label-model labels; the end model's losses are CE(ỹ_i, p_θ(x_i)), weighted as in ``reweight``.

The upper loss of both bilevel programs is the end model's mean cross-entropy on the clean set (WRENCH's
``valid.json``, true labels); it reads the upper level only through θ, so its whole gradient is the best-response term.
The weight net sees its loss input detached (as the MWN's ``detach=true``); the correction enters the lower loss
directly, so every method differentiates it.

Data: ``data_root`` = a WRENCH directory (:mod:`mlo_bench.tasks.data.wrench`; ``dataset`` then names its column in
the table, e.g. ``trec``), or, by default, the embedded problem ``dataset=digits`` — scikit-learn's digits with a
seeded family of 35 LFs (``lf_seed``), written in WRENCH's format under ``cache_dir`` (default
``<tmp>/mlo-bench-wrench``) and read back through the same loader. Training examples no LF covers are left out of the
end model's training set (``uncovered=drop``, WRENCH's practice; counted in ``train_coverage``), or are a one-line
error naming the file and id (``uncovered=error``). Labels are hard (one-hot of the label model's argmax) unless
``soft_labels=true``.

Metrics: ``test_score`` (the row's result: accuracy on test), ``end_model_test_accuracy``,
``label_model_test_accuracy``, ``label_model_train_accuracy`` (on the training examples used), ``mv_test_accuracy``
(majority vote, for comparison), ``lf_accuracy`` / ``lf_coverage`` (lists, one per LF, on train), ``train_coverage``,
``n_train`` (examples used), ``n_lfs``, ``featurizer`` (text); for the bilevel programs ``weight_right`` /
``weight_wrong`` (mean weight of training examples whose weak label is right / wrong), and for ``correct``
``corrected_label_accuracy`` (argmax ỹ against the true training labels). Betty reports accuracy or F1 per data set;
this task reports accuracy only.

Measured on the embedded problem (``lf_seed=0``): 35 LFs, accuracy 0.19–1.00 (median 0.81), coverage 0.04–0.22; 94 %
of train covered; on the covered training examples majority vote 0.78 and Dawid–Skene 0.80 accurate; on test majority
vote 0.716 and Dawid–Skene 0.706. ``+preset=demo`` (300 steps), torch, seed 0: label model 0.706, baseline 0.796,
+ reweight (darts) 0.824, + reweight & correct (darts) 0.840; every variant's training takes 1–18 s on torch, jax
and naive on a loaded 2-core CPU (jax compiles in 2–6 s apart). ``+preset=full`` (1,200 steps; test accuracy, mean ±
std over seeds; ``+experiment=weak_supervision_table3``), torch (4 seeds) / jax (3) / naive (3): label model 0.706 /
0.706 / 0.706; baseline 0.799 ± 0.004 / 0.801 ± 0.003 / 0.801 ± 0.003; + reweight 0.827 ± 0.021 / 0.831 ± 0.008 /
0.837 ± 0.005; + reweight & correct 0.857 ± 0.005 / 0.847 ± 0.011 / 0.855 ± 0.005. Paired by seed, reweighting
beats the baseline on every backend (1.03–1.04×, intervals above 1); correction adds 1.02–1.04×, supported on naive,
inconclusive on torch and jax (≈ 5–8 seeds needed). On torch (3 seeds) with unroll the two bilevel rows are 0.872
and 0.885, with cg (3 iterations) 0.879 and 0.897.
``neumann`` at Betty's defaults (1 term, α = 1) drives the clean loss *up* here (0.2 and 0.1 accuracy: the weight
net learns to favour the wrong labels) — a measured failure of that approximation, not hidden.
"""

from __future__ import annotations

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
from mlo_bench.suite.engine.optim import OptimizerConfig
from mlo_bench.suite.models import nn
from mlo_bench.suite.models.batch import batch_mean
from mlo_bench.suite.models.reweight import EpochBatches, l2, per_example_ce, predict, soft_ce, weighted_mean
from mlo_bench.suite.plugins.registry import register
from mlo_bench.tasks.data import label_models, wrench

PROGRAMS = ("label_model", "baseline", "reweight", "correct")
UNCOVERED = ("drop", "error")
#: Betty Table 3's WRENCH data sets (columns of the paper's table; run with task.data_root and task.dataset=NAME)
PAPER_SETS = ("trec", "agnews", "imdb", "semeval", "chemprot", "youtube")


@dataclass
class WeakSupervisionConfig:
    dataset: str = "digits"
    data_root: str | None = None
    cache_dir: str | None = None
    lf_seed: int = 0
    program: str = "reweight"
    label_model: str = "dawid_skene"
    uncovered: str = "drop"
    soft_labels: bool = False
    feature_key: str = "feature"
    max_features: int = 500
    hidden: int = 16
    weight_net_hidden: int = 32
    correct_hidden: int = 16
    smoothing: float = 0.1
    weight_decay: float = 5e-3
    batch_size: int = 100
    meta_batch_size: int = 100
    eval_batch_size: int = 1000
    exact_max_params: int = 10000
    lower: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.1, momentum=0.9))
    upper: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", lr=1e-3))

    def validate(self) -> None:
        for key, valid in (("program", PROGRAMS), ("label_model", label_models.LABEL_MODELS),
                           ("uncovered", UNCOVERED)):
            if getattr(self, key) not in valid:
                raise ValueError(f"task.{key} must be one of {', '.join(valid)} (got {getattr(self, key)!r})")
        for key in ("hidden", "weight_net_hidden", "correct_hidden", "batch_size", "meta_batch_size",
                    "eval_batch_size", "max_features"):
            if getattr(self, key) < 1:
                raise ValueError(f"task.{key} must be >= 1 (got {getattr(self, key)})")
        if not 0 < self.smoothing < 1:
            raise ValueError(f"task.smoothing must be in (0, 1) (got {self.smoothing})")
        if self.weight_decay < 0 or self.exact_max_params < 0:
            raise ValueError("task.weight_decay and task.exact_max_params must be >= 0")
        if self.data_root is None:
            if self.dataset not in wrench.EMBEDDED:
                raise ValueError(f"task.dataset must be one of {', '.join(wrench.EMBEDDED)} (embedded) unless "
                                 f"task.data_root names a WRENCH directory (got {self.dataset!r})")
        else:
            if self.dataset in wrench.EMBEDDED:
                raise ValueError(f"task.dataset names the WRENCH directory's column (e.g. trec); {self.dataset!r} is "
                                 "the embedded data set")
            try:
                self.load()
            except ValueError as exc:
                raise ValueError(f"task.data_root: {exc}") from None
        self.lower.validate("task.lower")
        self.upper.validate("task.upper")

    def load(self) -> wrench.WrenchData:
        root = self.data_root or wrench.embedded(self.dataset, self.lf_seed, self.cache_dir)
        return wrench.load(root, self.feature_key, self.max_features, require_coverage=self.uncovered == "error")


# ---- the paper (Betty Table 3): rows = label model, baseline, + reweight, + reweight & correct ---------------------
_NAIVE = {"naive": {"chain": "reverse"}}
_ROWS = [Variant("snorkel", "none", {"task.program": "label_model"}, _NAIVE, label="label model alone (Snorkel's row)",
                 doc="the label model's own test predictions (here Dawid–Skene EM, not snorkel's LabelModel)"),
         Variant("baseline", "none", {"task.program": "baseline"}, _NAIVE, label="end model on label-model labels")]
for _prog, _name, _label in (("reweight", "reweight", "+ reweight"), ("correct", "reweight-correct",
                                                                      "+ reweight & correct")):
    _ROWS.append(Variant(_name, "darts", {"task.program": _prog}, _NAIVE, label=f"{_label} (darts, as Betty)"))
    for _m in ("cg", "neumann", "unroll"):
        _ROWS.append(Variant(f"{_name}-{_m}", _m, {"task.program": _prog}, _NAIVE, label=f"{_label} ({_m})"))
VARIANTS = tuple(_ROWS)
_RW = [v.name for v in VARIANTS if v.overrides["task.program"] == "reweight"]
_RWC = [v.name for v in VARIANTS if v.overrides["task.program"] == "correct"]

PAPER = Paper(
    metrics=(
        MetricSpec("test_score", "higher", "fraction", doc="test accuracy of the row (label model or end model)"),
        MetricSpec("end_model_test_accuracy", "higher", "fraction", quality=False),
        MetricSpec("label_model_test_accuracy", None, "fraction"),
        MetricSpec("label_model_train_accuracy", None, "fraction"),
        MetricSpec("mv_test_accuracy", None, "fraction"),
        MetricSpec("lf_accuracy", None, "fraction", kind="list"),
        MetricSpec("lf_coverage", None, "fraction", kind="list"),
        MetricSpec("train_coverage", None, "fraction"),
        MetricSpec("n_train", None, "count"),
        MetricSpec("n_lfs", None, "count"),
        MetricSpec("weight_right", None, "", doc="mean weight of training examples whose weak label is right"),
        MetricSpec("weight_wrong", None, "", doc="mean weight of training examples whose weak label is wrong"),
        MetricSpec("corrected_label_accuracy", None, "fraction"),
        MetricSpec("featurizer", kind="text"),
    ),
    variants=VARIANTS,
    tables=(PaperTable(
        "Weak supervision on WRENCH-format data (Betty Table 3, our analogue)", tuple(v.name for v in VARIANTS),
        column="task.dataset", column_label="data set", quality="test_score", cost=("peak_live_bytes", "time_total_s"),
        claims=(
            TableClaim("+ reweight (darts, Betty's row) beats the baseline on every data set",
                       (Comparison("reweight", "baseline", "test_score", "higher", at="each"),)),
            TableClaim("+ reweight & correct (darts, Betty's row) beats + reweight on every data set",
                       (Comparison("reweight-correct", "reweight", "test_score", "higher", at="each"),)),
            TableClaim("reweighting beats the baseline with cg, neumann and unroll too",
                       tuple(Comparison(v, "baseline", "test_score", "higher", at="each") for v in _RW[1:])),
            TableClaim("correction adds to reweighting with cg, neumann and unroll too (same method)",
                       tuple(Comparison(c, r, "test_score", "higher", at="each")
                             for c, r in zip(_RWC[1:], _RW[1:], strict=True))),
        )),),
    claims="weak_supervision.csv",
    baselines={("betty2023", "3"): "baseline"},
    settings={name: {"task.dataset": name} for name in PAPER_SETS},
    claim_metrics={"test_score": ("test_score",)},
)


@register("task")
class WeakSupervision(ExactBudget, Task):
    """End model on labeling-function labels, with an upper level that reweights (and corrects) them (WRENCH)."""

    name = "weak_supervision"
    Config = WeakSupervisionConfig
    paper = PAPER
    presets = {
        "demo": {
            "task": {"dataset": "digits", "hidden": 16, "batch_size": 100, "meta_batch_size": 100,
                     "lower": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "milestones": [200], "gamma": 0.1},
                     "upper": {"name": "adam", "lr": 3e-3}},
            "steps": 300,
        },
        "full": {
            "task": {"dataset": "digits", "hidden": 32, "batch_size": 100, "meta_batch_size": 100,
                     "lower": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "milestones": [600, 900], "gamma": 0.1},
                     "upper": {"name": "adam", "lr": 3e-3}},
            "steps": 1200,
        },
    }

    def __init__(self, cfg: WeakSupervisionConfig, seed: int) -> None:
        super().__init__(cfg, seed)
        self.d = d = cfg.load()
        self.k = k = len(d.classes)
        tr = d.train
        fit = label_models.fit_dawid_skene(tr.votes, k) if cfg.label_model == "dawid_skene" else None

        def label_probs(votes: np.ndarray) -> np.ndarray:
            return fit.posterior(votes) if fit is not None else label_models.majority_vote(votes, k)

        covered = (tr.votes >= 0).any(axis=1)
        self.used = np.flatnonzero(covered)
        probs = label_probs(tr.votes[self.used])
        hard = label_models.predict(probs)
        self.q = probs if cfg.soft_labels else np.eye(k)[hard]
        self.weak_right = hard == tr.y[self.used]
        votes = tr.votes[self.used]
        counts = label_models.majority_vote(votes, k) * (votes >= 0).sum(axis=1, keepdims=True)
        n_votes = counts.sum(axis=1)
        agree = counts[np.arange(len(hard)), hard] / np.maximum(n_votes, 1)
        self.summary = np.stack([agree, n_votes / n_votes.max(), probs.max(axis=1)], axis=1)
        self.vote_frac = counts / np.maximum(n_votes, 1)[:, None]
        self.lm_test = float(np.mean(label_models.predict(label_probs(d.test.votes)) == d.test.y))
        self.lm_train = float(np.mean(self.weak_right))
        self.mv_test = float(np.mean(label_models.predict(label_models.majority_vote(d.test.votes, k)) == d.test.y))
        self.lf_acc, self.lf_cov = wrench.lf_stats(tr)
        self.model = nn.mlp(tr.x.shape[1], k, (cfg.hidden,))
        self.weight_net = nn.weight_net(cfg.weight_net_hidden, in_features=1 + self.summary.shape[1])
        self.correct_net = nn.mlp(2 * k, k, (cfg.correct_hidden,))
        self._batches = EpochBatches(seed)

    # ---- the program ------------------------------------------------------------------------------------------
    def levels(self) -> list[Level]:
        return [Level("reweighter", self._clean_loss, self.cfg.upper, data="valid"),
                Level("end_model", self._train_loss, self.cfg.lower, parent="reweighter", data="train")]

    def _clean_loss(self, ops: Any, params: dict[str, Any], batch: Any) -> Any:
        idx = batch["valid_idx"]
        logits = self.model.apply(ops, params["end_model"], batch["x_valid"][idx])
        return batch_mean(ops, per_example_ce(ops, logits, batch["y_valid"][idx]))

    @staticmethod
    def _sub(params: dict[str, Any], prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}

    def _targets(self, ops: Any, upper: dict[str, Any], batch: Any, idx: Any) -> Any:
        if self.cfg.program != "correct":
            return batch["q_train"][idx]
        z = self.correct_net.apply(ops, self._sub(upper, "c_"), batch["correct_in"][idx])
        return ops.exp(ops.log_softmax(batch["log_q_smooth"][idx] + z))

    def _losses_weights(self, ops: Any, params: dict[str, Any], batch: Any, idx: Any) -> tuple[Any, Any]:
        upper = params["reweighter"]
        losses = soft_ce(ops, self.model.apply(ops, params["end_model"], batch["x_train"][idx]),
                         self._targets(ops, upper, batch, idx))
        if self.cfg.program not in ("reweight", "correct"):
            return losses, None
        inputs = ops.concatenate([ops.reshape(ops.stop_gradient(losses), (-1, 1)), batch["summary"][idx]], axis=1)
        return losses, self.weight_net.apply(ops, self._sub(upper, "w_"), inputs)

    def _train_loss(self, ops: Any, params: dict[str, Any], batch: Any) -> Any:
        losses, w = self._losses_weights(ops, params, batch, batch["idx"])
        loss = batch_mean(ops, losses) if w is None else weighted_mean(ops, w, losses)
        if self.cfg.weight_decay:
            loss = loss + 0.5 * self.cfg.weight_decay * l2(ops, params["end_model"])
        return loss

    def init_params(self, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
        upper = {f"w_{k}": v for k, v in self.weight_net.init(rng).items()}
        if self.cfg.program == "correct":
            corr = self.correct_net.init(rng)
            corr["l1_w"], corr["l1_b"] = np.zeros_like(corr["l1_w"]), np.zeros_like(corr["l1_b"])
            upper.update({f"c_{k}": v for k, v in corr.items()})
        return {"reweighter": upper, "end_model": self.model.init(rng)}

    def data(self) -> dict[str, np.ndarray]:
        k, eps = self.k, self.cfg.smoothing
        return {"x_train": self.d.train.x[self.used], "q_train": self.q, "summary": self.summary,
                "correct_in": np.concatenate([self.vote_frac, self.q], axis=1),
                "log_q_smooth": np.log((1 - eps) * self.q + eps / k),
                "x_valid": self.d.valid.x, "y_valid": self.d.valid.y}

    def batch(self, level: str, step: int) -> dict[str, np.ndarray] | None:
        if level == "end_model":
            return {"idx": self._batches.batch("train", len(self.used), self.cfg.batch_size, step)}
        n = len(self.d.valid.y)
        if self.cfg.meta_batch_size >= n:
            return {"valid_idx": np.arange(n, dtype=np.int64)}
        return {"valid_idx": self._batches.batch("meta", n, self.cfg.meta_batch_size, step)}

    # ---- metrics and checks -----------------------------------------------------------------------------------
    def n_lower_params(self) -> int:
        return nn.n_params(self.model.init(np.random.default_rng(0)))

    def metrics(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        pred = predict(backend, self.model, params["end_model"], self.d.test.x, self.cfg.eval_batch_size)
        end_acc = float(np.mean(pred == self.d.test.y))
        out: dict[str, Any] = {
            "test_score": self.lm_test if self.cfg.program == "label_model" else end_acc,
            "end_model_test_accuracy": end_acc, "label_model_test_accuracy": self.lm_test,
            "label_model_train_accuracy": self.lm_train, "mv_test_accuracy": self.mv_test,
            "lf_accuracy": self.lf_acc, "lf_coverage": self.lf_cov,
            "train_coverage": len(self.used) / len(self.d.train.y), "n_train": len(self.used),
            "n_lfs": self.d.n_lfs, "featurizer": self.d.featurizer,
        }
        if self.cfg.program in ("reweight", "correct"):
            ops = backend.ops
            batch = backend.tree_asarray(self.data())
            idx = backend.asarray(np.arange(len(self.used), dtype=np.int64))
            _, w = self._losses_weights(ops, params, batch, idx)
            w = backend.to_numpy(w)
            out["weight_right"] = float(w[self.weak_right].mean()) if self.weak_right.any() else float("nan")
            out["weight_wrong"] = float(w[~self.weak_right].mean()) if (~self.weak_right).any() else float("nan")
            if self.cfg.program == "correct":
                ytil = backend.to_numpy(self._targets(ops, params["reweighter"], batch, idx))
                out["corrected_label_accuracy"] = float(np.mean(ytil.argmax(axis=1) == self.d.train.y[self.used]))
        return out
