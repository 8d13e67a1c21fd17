"""A test task whose upper level selects the lower level's examples from a candidate batch (contract v2's
:class:`~mlo_bench.suite.contract.Selection`), small enough for an ``exact`` reference.

- ``scorer`` (upper): u ∈ R^5; example i scores s_i = σ(x_iᵀu) > 0. Its loss: validation MSE of the model
  (+ a small ridge on u).
- ``model`` (lower): w ∈ R^5, trained on the ``keep`` of ``candidates`` examples that the scorer selects each step
  (sampled ∝ s), with the soft weights s_i in its loss: f(w, u) = Σ_kept s_i (x_iᵀw − y_i)² / Σ_kept s_i + ρ‖w‖².
  The hypergradient flows through the soft weights; the choice itself is hard.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlo_bench.suite.contract import Level, Selection, Task
from mlo_bench.suite.engine.optim import OptimizerConfig


@dataclass
class SelectionConfig:
    n: int = 64
    candidates: int = 24
    keep: int = 8
    lower: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.1))
    upper: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.05))

    def validate(self) -> None:
        if not 1 <= self.keep <= self.candidates <= self.n:
            raise ValueError("task.keep <= task.candidates <= task.n must hold")


def _scores(ops, params, x):
    return ops.sigmoid(ops.matmul(x, params["scorer"]["u"]))


def score(ops, params, batch):
    return _scores(ops, params, batch["x"][batch["idx"]])


def lower_loss(ops, params, batch):
    idx = batch["idx"]
    s = _scores(ops, params, batch["x"][idx])
    r = ops.matmul(batch["x"][idx], params["model"]["w"]) - batch["y"][idx]
    w = params["model"]["w"]
    return ops.sum(s * r * r) / ops.sum(s) + 0.1 * ops.sum(w * w)


def upper_loss(ops, params, batch):
    r = ops.matmul(batch["xv"], params["model"]["w"]) - batch["yv"]
    u = params["scorer"]["u"]
    return ops.mean(r * r) + 1e-3 * ops.sum(u * u)


class SelectionTask(Task):
    """Toy data selection: the upper level picks the lower level's training examples (test task)."""

    name = "selection_toy"
    Config = SelectionConfig

    def __init__(self, cfg: SelectionConfig, seed: int) -> None:
        super().__init__(cfg, seed)
        rng = np.random.default_rng([seed, 7])
        x = rng.standard_normal((cfg.n + 32, 5))
        w_true = rng.standard_normal(5)
        y = x @ w_true + np.where(np.arange(cfg.n + 32) % 3 == 0, 2.0, 0.1) * rng.standard_normal(cfg.n + 32)
        self.arrays = {"x": x[: cfg.n], "y": y[: cfg.n], "xv": x[cfg.n:], "yv": x[cfg.n:] @ w_true}

    def levels(self) -> list[Level]:
        return [
            Level("scorer", upper_loss, self.cfg.upper),
            Level("model", lower_loss, self.cfg.lower, parent="scorer", data="train",
                  select=Selection(score=score, keep=self.cfg.keep)),
        ]

    def init_params(self, rng):
        return {"scorer": {"u": 0.5 * rng.standard_normal(5)}, "model": {"w": 0.1 * rng.standard_normal(5)}}

    def data(self):
        return self.arrays

    def batch(self, level, step):
        if level != "model":
            return None
        rng = np.random.default_rng([self.seed, 11, step])
        return {"idx": rng.choice(self.cfg.n, size=self.cfg.candidates, replace=False)}

    def metrics(self, backend, params):
        w = backend.to_numpy(params["model"]["w"])
        r = self.arrays["xv"] @ w - self.arrays["yv"]
        return {"val_mse": float(np.mean(r * r))}

    def exact_reference(self) -> bool:
        return True
