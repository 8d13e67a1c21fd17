"""Template for a new task: copy to ``tasks/<name>.py``, rename, fill in, and uncomment ``@register``.

That one file is the whole plugin: it is discovered, gets a Hydra option ``task=<name>`` (its ``Config`` fields become
``task.<field>`` keys), and the contract tests run it on every backend × method.

Declare what the report should know (metrics, variants, paper tables, claims) as ``paper = Paper(...)``; see
``tasks/_template_paper.py``.

Write models and losses once, against the ops protocol (``mlo_bench.suite.contract.Ops``):
they receive the backend's ``ops``,
a dict of every level's parameters, and the batch (``{**data(), **batch(level, step)}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlo_bench.suite.contract import Level, Task
from mlo_bench.suite.engine.optim import OptimizerConfig
from mlo_bench.suite.plugins.registry import register  # noqa: F401


@dataclass
class TemplateConfig:
    n: int = 64
    lower: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.1))
    upper: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", lr=1e-3))

    def validate(self) -> None:
        if self.n < 1:
            raise ValueError(f"task.n must be >= 1 (got {self.n})")
        self.lower.validate("task.lower")
        self.upper.validate("task.upper")


def upper_loss(ops, params, batch):
    """Validation loss of the lower model (reads the lower level's parameters)."""
    r = ops.matmul(batch["x_val"], params["lower"]["w"]) - batch["y_val"]
    return ops.mean(r * r)


def lower_loss(ops, params, batch):
    """Training loss, regularised by the upper level's (hyper)parameters."""
    idx = batch["idx"]
    r = ops.matmul(batch["x_train"][idx], params["lower"]["w"]) - batch["y_train"][idx]
    return ops.mean(r * r) + ops.sum(ops.exp(params["upper"]["log_l2"]) * params["lower"]["w"] ** 2)


# @register("task")   # uncomment in the copy
class TemplateTask(Task):
    """One line saying what the task is (shown by ``mlo-bench list``)."""

    name = "template"
    Config = TemplateConfig

    def __init__(self, cfg: TemplateConfig, seed: int) -> None:
        super().__init__(cfg, seed)
        rng = np.random.default_rng([seed, 1])  # data from the seed, numpy only
        x = rng.standard_normal((2 * cfg.n, 5))
        y = x @ rng.standard_normal(5) + 0.1 * rng.standard_normal(2 * cfg.n)
        self.arrays = {"x_train": x[: cfg.n], "y_train": y[: cfg.n], "x_val": x[cfg.n :], "y_val": y[cfg.n :]}

    def levels(self) -> list[Level]:
        # ``parent`` links make the chain (one top level, one child per level). Optional per level:
        #   steps=3                        its optimizer steps per outer step (default: the run's inner_steps;
        #                                  ``level_steps.lower=3`` on the command line overrides both)
        #   select=Selection(score, keep)  the levels above choose its examples each step: ``score(ops, params,
        #                                  batch)`` rates the candidates in ``batch["idx"]`` (from ``batch()``), and
        #                                  ``keep`` of them are sampled ∝ score (tests/selection_task.py)
        return [
            Level("upper", upper_loss, self.cfg.upper),
            Level("lower", lower_loss, self.cfg.lower, parent="upper", data="train"),
        ]

    def init_params(self, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
        return {"upper": {"log_l2": np.full(5, -3.0)}, "lower": {"w": 0.1 * rng.standard_normal(5)}}

    def data(self) -> dict[str, np.ndarray]:
        return self.arrays

    def batch(self, level: str, step: int) -> dict[str, np.ndarray] | None:
        if level != "lower":
            return None
        rng = np.random.default_rng([self.seed, 2, step])  # a pure function of (seed, level, step)
        return {"idx": rng.choice(self.cfg.n, size=16, replace=False)}

    def metrics(self, backend, params) -> dict[str, float]:
        """After training, and every ``eval_every`` steps during it (scalars become curves in trace.csv). Values may
        be floats, lists or strings."""
        w = backend.to_numpy(params["lower"]["w"])
        r = self.arrays["x_val"] @ w - self.arrays["y_val"]
        return {"val_mse": float(np.mean(r * r))}

    # Optional post-training phase (derive + retrain, fine-tune …), timed apart as ``time_eval_s``:
    # def evaluate(self, backend, params) -> dict[str, Any]:
    #     return {"genotype": "...", "derived_params": 123}
    #
    # Baselines of the paper (ERM, mixing …) are knobs of this config run with ``method=none``.
