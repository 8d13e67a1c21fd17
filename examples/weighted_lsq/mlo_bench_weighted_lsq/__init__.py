"""Weighted least squares with learned per-example weights: data reweighting in miniature, with closed forms.

Training examples (x_i, y_i), i = 1..n, a fraction ``noise_rate`` of whose labels are corrupted, and a clean
validation set (X_v, y_v) of m examples. The upper level learns one weight logit w_i per training example; the lower
level fits a linear model θ ∈ R^p to the weighted training set:

    lower   θ*(w) = argmin_θ  L(θ, w) = (1/n) Σ_i σ(w_i) (x_iᵀθ − y_i)² + ρ ‖θ‖²
    upper   min_w  F(w) = (1/m) ‖X_v θ*(w) − y_v‖²

Closed forms (the :class:`WeightedLSQOracle`), with S = diag(σ(w)) and A(w) = XᵀSX / n + ρ I (positive definite for
ρ > 0): L is a quadratic in θ with Hessian 2A, so

    θ*(w) = A⁻¹ XᵀS y / n.

Differentiating A θ* = XᵀS y / n in w_i gives A ∂θ*/∂w_i = σ'(w_i) x_i (y_i − x_iᵀθ*) / n, hence with the residuals
r = Xθ* − y, the validation gradient g = ∇_θ F = (2/m) X_vᵀ (X_v θ* − y_v) and u = A⁻¹ g,

    dF/dw = −σ'(w) ⊙ r ⊙ (X u) / n,        σ' = σ (1 − σ),

the implicit-function hypergradient −(∂²L/∂w∂θ)(∂²L/∂θ²)⁻¹ ∇_θF written out (the tests check it against finite
differences of F). Everything is generated from the seed in numpy float64; the oracle works in float64.

Metrics: ``val_mse`` (F at the trained θ), ``weight_clean`` / ``weight_noisy`` (mean σ(w) over clean and corrupted
training examples: reweighting works when the second falls below the first).

Written against the public names only — ``from mlo_bench import Level, Oracle, Task, register`` and
``mlo_bench.suite.engine.optim.OptimizerConfig`` — and registered through the entry-point group ``mlo_bench.plugins``
(``pyproject.toml``), so ``pip install`` is the whole installation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlo_bench import Level, Oracle, Task, register
from mlo_bench.suite.engine.optim import OptimizerConfig

__version__ = "0.1.0"


@dataclass
class WeightedLSQConfig:
    n: int = 64  # training examples (one learned weight each)
    p: int = 8  # features
    n_val: int = 64  # clean validation examples
    noise_rate: float = 0.25  # fraction of training labels corrupted
    noise_scale: float = 3.0  # standard deviation of the corruption added to those labels
    ridge: float = 0.1  # ρ, keeps the lower level strongly convex
    lower: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.5))
    upper: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="adam", lr=0.1))

    def validate(self) -> None:
        for key in ("n", "p", "n_val"):
            if getattr(self, key) < 1:
                raise ValueError(f"task.{key} must be >= 1 (got {getattr(self, key)})")
        if not 0 <= self.noise_rate <= 1:
            raise ValueError(f"task.noise_rate must be in [0, 1] (got {self.noise_rate})")
        if self.noise_scale < 0:
            raise ValueError(f"task.noise_scale must be >= 0 (got {self.noise_scale})")
        if not self.ridge > 0:
            raise ValueError(f"task.ridge must be > 0 (got {self.ridge})")
        self.lower.validate("task.lower")
        self.upper.validate("task.upper")


def generate(seed: int, cfg: WeightedLSQConfig) -> dict[str, np.ndarray]:
    """The task's arrays, a pure function of (seed, sizes, noise): clean linear data, some training labels corrupted."""
    rng = np.random.default_rng([seed, 0x5EED])
    theta_true = rng.standard_normal(cfg.p)
    x, x_val = rng.standard_normal((cfg.n, cfg.p)), rng.standard_normal((cfg.n_val, cfg.p))
    y = x @ theta_true + 0.1 * rng.standard_normal(cfg.n)
    y_val = x_val @ theta_true + 0.1 * rng.standard_normal(cfg.n_val)
    noisy = np.zeros(cfg.n)
    noisy[rng.permutation(cfg.n)[: int(round(cfg.noise_rate * cfg.n))]] = 1.0
    y = y + noisy * cfg.noise_scale * rng.standard_normal(cfg.n)
    return {"x": x, "y": y, "x_val": x_val, "y_val": y_val, "noisy": noisy}


def upper_loss(ops, params, batch):
    """Validation mean squared error of the lower level's model."""
    r = ops.matmul(batch["x_val"], params["model"]["theta"]) - batch["y_val"]
    return ops.mean(r * r)


def lower_loss(ridge: float):
    def loss(ops, params, batch):
        """Training squared errors weighted by σ(w), plus ρ‖θ‖²."""
        theta = params["model"]["theta"]
        r = ops.matmul(batch["x"], theta) - batch["y"]
        return ops.mean(ops.sigmoid(params["weights"]["w"]) * r * r) + ridge * ops.sum(theta * theta)

    return loss


def _sigmoid(w: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-w))


@register("task")
class WeightedLSQ(Task):
    """Weighted least squares with a learned weight per training example (an installed plugin; closed-form oracle)."""

    name = "weighted_lsq"
    Config = WeightedLSQConfig

    def __init__(self, cfg: WeightedLSQConfig, seed: int) -> None:
        super().__init__(cfg, seed)
        self.arrays = generate(seed, cfg)

    def levels(self) -> list[Level]:
        return [
            Level("weights", upper_loss, self.cfg.upper),
            Level("model", lower_loss(self.cfg.ridge), self.cfg.lower, parent="weights"),
        ]

    def init_params(self, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
        # every example starts at weight σ(0) = 1/2; the model at a small random point
        return {"weights": {"w": np.zeros(self.cfg.n)}, "model": {"theta": 0.1 * rng.standard_normal(self.cfg.p)}}

    def data(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.arrays.items() if k != "noisy"}

    def oracle(self) -> WeightedLSQOracle:
        return WeightedLSQOracle(self.arrays, self.cfg.ridge)

    def metrics(self, backend, params) -> dict[str, float]:
        theta = backend.to_numpy(params["model"]["theta"]).astype(np.float64)
        weight = _sigmoid(backend.to_numpy(params["weights"]["w"]).astype(np.float64))
        r = self.arrays["x_val"] @ theta - self.arrays["y_val"]
        noisy = self.arrays["noisy"] > 0
        out = {"val_mse": float(np.mean(r * r))}
        if noisy.any() and (~noisy).any():
            out.update(weight_clean=float(weight[~noisy].mean()), weight_noisy=float(weight[noisy].mean()))
        return out


class WeightedLSQOracle(Oracle):
    """Closed forms in float64 for :class:`WeightedLSQ` (derivation in the module docstring)."""

    def __init__(self, arrays: dict[str, np.ndarray], ridge: float) -> None:
        self.a, self.ridge = arrays, float(ridge)

    def _system(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A, θ*) at weight logits ``w``."""
        x, y = self.a["x"], self.a["y"]
        n, p = x.shape
        s = _sigmoid(w)
        a = x.T @ (s[:, None] * x) / n + self.ridge * np.eye(p)
        return a, np.linalg.solve(a, x.T @ (s * y) / n)

    def best_response(self, top):
        w = np.asarray(top["w"], dtype=np.float64)
        return {"weights": {"w": w}, "model": {"theta": self._system(w)[1]}}

    def objective(self, top) -> float:
        """F(w) = validation MSE at θ*(w)."""
        theta = self.best_response(top)["model"]["theta"]
        r = self.a["x_val"] @ theta - self.a["y_val"]
        return float(np.mean(r * r))

    def hypergradient(self, top):
        w = np.asarray(top["w"], dtype=np.float64)
        a, theta = self._system(w)
        x, y, x_val, y_val = self.a["x"], self.a["y"], self.a["x_val"], self.a["y_val"]
        g = 2.0 / len(y_val) * x_val.T @ (x_val @ theta - y_val)
        u = np.linalg.solve(a, g)  # A is symmetric
        s = _sigmoid(w)
        return {"w": -s * (1.0 - s) * (x @ theta - y) * (x @ u) / len(y)}
