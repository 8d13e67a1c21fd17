"""``data_cleaning``: per-example weights that clean a training set with corrupted labels, learned on a clean
validation split — benchopt benchmark_bilevel's ``datacleaning`` problem (its ``mnist`` data set), offline, on
scikit-learn's bundled digits instead of MNIST.

    inner (lower, y = θ ∈ R^{64×10}):  f(θ, λ) = mean_i σ(λ_i) ℓ(θ; x_i, y_i) + reg ‖θ‖²        (training split)
    outer (top, x = λ ∈ R^{n_train}):  g(θ)    = mean_j ℓ(θ; x_j, y_j)                         (validation split)

with ℓ the multinomial logistic loss of the linear scores x θ (no intercept) and σ the sigmoid — benchmark_bilevel's
formulation as read from its ``datasets/mnist.py`` (``weighted_loss`` + ``reg * sum(inner_var**2)``: the penalty
is not halved, so f is 2·reg-strongly convex in θ) at its defaults: ``task.reg`` = 0.2, ``task.corruption`` = 0.5 (the
first of its ratios 0.5, 0.7, 0.9; ``+bilevel_problem=datacleaning task.corruption=0.9`` for another), minibatches of
``task.batch_size`` = 64, init θ = 0 and λ = −2 (its objective's init: every σ(λ_i) = 0.12).

Data: the 1,797 digits (8 × 8 pixels in [0, 1], 10 classes), permuted by ``task.problem_seed`` and split into
``task.n_train`` = 1,000 training, ``task.n_val`` = 250 validation and the remaining 547 test examples (MNIST's 20,000
/ 5,000 training / validation proportions); standardised with the training split's mean and standard deviation (a
constant pixel keeps scale 1, as scikit-learn's ``StandardScaler``). A fraction ``task.corruption`` of the training
examples, drawn from ``task.problem_seed``, get a label redrawn uniformly from the 10 classes (as there: about a tenth
of them keep their true label); the validation and test labels are clean. An example is *corrupted* when its label is
wrong (47.1% of the training split at the defaults). The run's seed draws only the minibatches (each step
``task.batch_size`` examples without replacement per level; 0: the whole split; ``task.sampler=epoch``:
benchmark_bilevel's fixed minibatches, as ``logreg_hyper``'s), so seeds are repetitions of one problem.

Ground truth, float64, outside the training clock: θ*(λ) by Newton's method with conjugate-gradient steps on f
(strongly convex), warm-started from the previous solve, to ‖∇_θ f‖ < 1e-12; h(λ) = g(θ*(λ)) and, by the implicit
function theorem (the formula of the suite's ``exact`` method, which ``tests/test_data_cleaning.py`` checks it
against at a random λ),

    ∇h(λ)_i = −(1/n) σ′(λ_i) ⟨x_i, V (p_i − e_{y_i})⟩,     V = H⁻¹ ∇_θ g(θ*),   H = ∇²_θθ f(θ*, λ),

with p_i the softmax of x_i θ* and V by conjugate gradients on Hessian-vector products to a residual 1e-13 relative.
h* is not known in closed form: h is non-convex in λ (the weights saturate, so h flattens as any λ_i → ±∞) and no
global solver is run for it. The metrics therefore report h itself, not a gap (benchmark_bilevel reports no gap
either for this problem: its ``metrics`` are the train, validation and test error rates of the run's own θ).
Metrics at every ``eval_every``: ``value_function`` = h(λ),
``hypergrad_sq_norm`` = ‖∇h(λ)‖², ``inner_distance`` = ‖θ − θ*(λ)‖², ``test_accuracy`` and ``val_accuracy`` of θ*(λ),
``run_test_accuracy``, ``run_val_accuracy`` and ``run_train_accuracy`` (on the corrupted labels: a diagnostic) of the
run's own θ (benchmark_bilevel's ``test_accuracy``, ``value`` and ``train_accuracy``, which are 1 − these: it reports
error rates under those names), ``corrupted_downweighted`` = the share of corrupted examples with σ(λ_i) < 0.5 and
``downweighted_precision`` = the share of corrupted examples among those with σ(λ_i) < 0.5. At the init every weight
is below 0.5, so ``corrupted_downweighted`` starts at 1 and ``downweighted_precision`` at the corrupted share (0.471):
cleaning shows as the precision rising while the recall stays high.

Step sizes: inner SGD 0.1 (benchmark_bilevel's default ``step_size``); outer SGD 1,000. The hypergradient of one
weight is O(1/n) (O(1/batch) on the examples of a minibatch, zero elsewhere), so the outer step must be large:
benchmark_bilevel's tuned configs (``config/datacleaning0_5_best_params.yml``) take outer steps ``step_size /
outer_ratio`` of 100 (AmIGO) to 10,000 (SOBA), decayed by t^(−1/2) in SOBA; the suite's steps are constant. Measured
here (full-batch gradient descent on h with this module's ∇h, 200 steps from the init, h(init) = 2.090): outer step
100 reaches h = 1.269, 300 1.229, 1,000 1.217 (precision 0.960, recall 0.915, test accuracy of θ* 0.898 from 0.865),
3,000 1.213. The report's convergence section ranks the solvers by the time for h to reach ≤ 1.22
(``Paper.convergence``: a level, not a gap; the solvers' 1,000-step runs at these defaults end at h = 1.212–1.264).
Runs of the solvers, their times and final metrics: docs/solvers.md.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlo_bench.suite.contract import Level, MetricSpec, Oracle, Paper, Task
from mlo_bench.suite.engine.optim import OptimizerConfig
from mlo_bench.suite.models.batch import batch_mean, check_sampler, level_batch, n_batches
from mlo_bench.suite.plugins.registry import register
from mlo_bench.tasks.data import images

N_DIGITS, N_CLASSES, N_FEATURES = 1797, 10, 64
#: benchmark_bilevel's init of the weights' logits (its objective's ``outer_var0``: −2 everywhere)
INIT_LOGIT = -2.0


@dataclass
class DataCleaningConfig:
    corruption: float = 0.5
    reg: float = 0.2
    n_train: int = 1000
    n_val: int = 250
    batch_size: int = 64
    sampler: str = "draw"
    problem_seed: int = 0
    inner: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.1))
    outer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=1000.0))

    def validate(self) -> None:
        if not 0.0 <= self.corruption <= 1.0:
            raise ValueError(f"task.corruption must be in [0, 1] (got {self.corruption})")
        if not self.reg > 0:
            raise ValueError(f"task.reg must be > 0: it makes the inner problem strongly convex (got {self.reg})")
        for key in ("n_train", "n_val"):
            if getattr(self, key) < 1:
                raise ValueError(f"task.{key} must be >= 1 (got {getattr(self, key)})")
        check_sampler(self.sampler)
        if self.batch_size < 0:
            raise ValueError(f"task.batch_size must be >= 1, or 0 for the whole sample (got {self.batch_size})")
        if self.n_train + self.n_val >= N_DIGITS:
            raise ValueError(f"task.n_train + task.n_val must be < {N_DIGITS}, the digits, to leave a test split "
                             f"(got {self.n_train} + {self.n_val})")
        if self.batch_size > min(self.n_train, self.n_val):
            raise ValueError(f"task.batch_size must be <= task.n_train and task.n_val (got {self.batch_size})")
        self.inner.validate("task.inner")
        self.outer.validate("task.outer")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _cg(matvec, b: np.ndarray, x0: np.ndarray, rtol: float, maxiter: int = 500) -> np.ndarray:
    """Conjugate gradients on a symmetric positive definite operator, to ‖b − Ax‖ ≤ rtol ‖b‖."""
    x = x0.copy()
    r = b - matvec(x)
    p, rr, stop = r.copy(), float(np.sum(r * r)), (rtol * float(np.linalg.norm(b))) ** 2
    for _ in range(maxiter):
        if rr <= stop:
            break
        ap = matvec(p)
        alpha = rr / float(np.sum(p * ap))
        x += alpha * p
        r -= alpha * ap
        rr, rr_old = float(np.sum(r * r)), rr
        p = r + (rr / rr_old) * p
    return x


@dataclass
class Solution:
    theta: np.ndarray     # θ*(λ), (64, 10)
    value: float          # h(λ)
    grad: np.ndarray      # ∇h(λ), (n_train,)


class Problem:
    """The splits, the corrupted labels, and h(λ) = g(θ*(λ)) with its gradient in float64."""

    def __init__(self, cfg: DataCleaningConfig) -> None:
        x, y = images.load_digits()
        x = x.reshape(len(y), -1)
        rng = np.random.default_rng([cfg.problem_seed, 0xDC])
        order = rng.permutation(len(y))
        tr, va, te = order[: cfg.n_train], order[cfg.n_train: cfg.n_train + cfg.n_val], order[cfg.n_train + cfg.n_val:]
        mean, std = x[tr].mean(0), x[tr].std(0)
        x = (x - mean) / np.where(std > 0, std, 1.0)
        self.a, self.a_val, self.a_test = x[tr], x[va], x[te]
        self.y_true, self.b_val, self.b_test = y[tr], y[va], y[te]
        redrawn = rng.random(cfg.n_train) < cfg.corruption
        self.b = self.y_true.copy()
        self.b[redrawn] = rng.integers(0, N_CLASSES, int(redrawn.sum()))
        self.corrupted = self.b != self.y_true
        self.reg, self.n = cfg.reg, cfg.n_train
        self._onehot, self._onehot_val = np.eye(N_CLASSES)[self.b], np.eye(N_CLASSES)[self.b_val]
        self._theta = np.zeros((N_FEATURES, N_CLASSES))
        self._last: tuple[bytes, Solution] | None = None

    def _hvp(self, p: np.ndarray, w: np.ndarray, v: np.ndarray) -> np.ndarray:
        """∇²_θθ f · v at the softmax probabilities ``p`` and weights ``w`` = σ(λ)."""
        xv = self.a @ v
        return self.a.T @ ((p * xv - p * np.sum(p * xv, axis=1, keepdims=True)) * w[:, None]) / self.n \
            + 2.0 * self.reg * v

    def y_star(self, lam: np.ndarray) -> np.ndarray:
        """θ*(λ) by Newton–CG (warm-started from the last solve) to ‖∇_θ f‖ < 1e-12."""
        w, theta = _sigmoid(lam), self._theta.copy()
        for _ in range(100):
            p = _softmax(self.a @ theta)
            g = self.a.T @ ((p - self._onehot) * w[:, None]) / self.n + 2.0 * self.reg * theta
            if np.linalg.norm(g) < 1e-12:
                break
            theta = theta - _cg(lambda v, p=p: self._hvp(p, w, v), g, np.zeros_like(g), 1e-10)
        self._theta = theta
        return theta

    def solve(self, lam: np.ndarray) -> Solution:
        """θ*(λ), h(λ) and ∇h(λ) (the last λ's answer is kept)."""
        lam = np.asarray(lam, dtype=np.float64)
        key = lam.tobytes()
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        theta = self.y_star(lam)
        w = _sigmoid(lam)
        p_val = _softmax(self.a_val @ theta)
        value = float(-np.mean(np.log(np.sum(p_val * self._onehot_val, axis=1))))
        g_theta = self.a_val.T @ (p_val - self._onehot_val) / len(self.b_val)
        p = _softmax(self.a @ theta)
        v = _cg(lambda u: self._hvp(p, w, u), g_theta, g_theta / (2.0 * self.reg), 1e-13)
        grad = -(w * (1.0 - w)) * np.sum((self.a @ v) * (p - self._onehot), axis=1) / self.n
        sol = Solution(theta, value, grad)
        self._last = (key, sol)
        return sol

    def accuracy(self, theta: np.ndarray, split: str) -> float:
        a, b = {"test": (self.a_test, self.b_test), "val": (self.a_val, self.b_val), "train": (self.a, self.b)}[split]
        return float(np.mean(np.argmax(a @ theta, axis=1) == b))


@functools.lru_cache(maxsize=8)
def _problem(key: tuple) -> Problem:
    return Problem(DataCleaningConfig(**dict(key)))


def problem(cfg: DataCleaningConfig) -> Problem:
    """The problem of these knobs, loaded once per process."""
    values = {k: v for k, v in asdict(cfg).items() if k not in ("inner", "outer", "batch_size", "sampler")}
    return _problem(tuple(sorted(values.items())))


def _ce(ops: Any, x: Any, y: Any, theta: Any) -> Any:
    """Per-example multinomial logistic loss of the scores x θ."""
    return -ops.take_along_last(ops.log_softmax(ops.matmul(x, theta)), y)


def outer_loss(ops, params, batch):
    idx = batch.get("val_idx")
    x, y = (batch["val"], batch["val_y"]) if idx is None else (batch["val"][idx], batch["val_y"][idx])
    return batch_mean(ops, _ce(ops, x, y, params["inner"]["theta"]))


class _Oracle(Oracle):
    def __init__(self, pb: Problem) -> None:
        self.pb = pb

    def best_response(self, top):
        lam = np.asarray(top["logits"], dtype=np.float64)
        return {"outer": {"logits": lam.copy()}, "inner": {"theta": self.pb.solve(lam).theta.copy()}}

    def hypergradient(self, top):
        return {"logits": self.pb.solve(np.asarray(top["logits"], dtype=np.float64)).grad.copy()}


PAPER = Paper(
    metrics=(
        MetricSpec("value_function", "lower", doc="h(λ) = g(θ*(λ)), the validation loss at the exact inner solution "
                                                  "(h* unknown: not a gap)"),
        MetricSpec("hypergrad_sq_norm", "lower", doc="‖∇h(λ)‖², benchmark_bilevel's convergence criterion"),
        MetricSpec("inner_distance", "lower", doc="‖θ − θ*(λ)‖² of the run's lower level"),
        MetricSpec("test_accuracy", "higher", unit="fraction", doc="test accuracy of θ*(λ)"),
        MetricSpec("val_accuracy", "higher", unit="fraction", doc="validation accuracy of θ*(λ)"),
        MetricSpec("run_test_accuracy", "higher", unit="fraction",
                   doc="test accuracy of the run's own θ (1 − benchmark_bilevel's test error)"),
        MetricSpec("run_val_accuracy", "higher", unit="fraction",
                   doc="validation accuracy of the run's own θ (1 − benchmark_bilevel's value)"),
        MetricSpec("run_train_accuracy", None, unit="fraction",
                   doc="the run's own θ on the corrupted training labels (1 − benchmark_bilevel's train error)"),
        MetricSpec("corrupted_downweighted", "higher", unit="fraction",
                   doc="share of the corrupted examples with σ(λ_i) < 0.5 (1 at the init)"),
        MetricSpec("downweighted_precision", "higher", unit="fraction",
                   doc="share of corrupted examples among those with σ(λ_i) < 0.5 (the corrupted share at the init)"),
    ),
    curves=("value_function", "hypergrad_sq_norm"),
    convergence={"value_function": 1.22},
)


@register("task")
class DataCleaning(Task):
    """Per-example weights σ(λ_i) cleaning corrupted labels, learned on a clean split (benchopt's datacleaning)."""

    name = "data_cleaning"
    paper = PAPER
    Config = DataCleaningConfig

    @classmethod
    def default_steps(cls, cfg) -> int:
        return 1000

    def __init__(self, cfg: DataCleaningConfig, seed: int) -> None:
        super().__init__(cfg, seed)
        self.pb = problem(cfg)
        pb = self.pb
        self.arrays = {"train": pb.a, "train_y": pb.b, "val": pb.a_val, "val_y": pb.b_val}

    def inner_loss(self, ops, params, batch):
        theta, lam = params["inner"]["theta"], params["outer"]["logits"]
        idx = batch.get("train_idx")
        x, y = (batch["train"], batch["train_y"]) if idx is None else (batch["train"][idx], batch["train_y"][idx])
        weights = ops.sigmoid(lam if idx is None else lam[idx])
        return batch_mean(ops, weights * _ce(ops, x, y, theta)) + self.cfg.reg * ops.sum(theta * theta)

    def levels(self) -> list[Level]:
        cfg = self.cfg
        size = cfg.batch_size if cfg.sampler == "epoch" else None
        return [Level("outer", outer_loss, cfg.outer, batches=None if size is None else n_batches(cfg.n_val, size)),
                Level("inner", self.inner_loss, cfg.inner, parent="outer", data="train",
                      batches=None if size is None else n_batches(cfg.n_train, size))]

    def init_params(self, rng: np.random.Generator):
        return {"outer": {"logits": np.full(self.cfg.n_train, INIT_LOGIT)},
                "inner": {"theta": np.zeros((N_FEATURES, N_CLASSES))}}

    def data(self):
        return self.arrays

    def batch(self, level: str, step: int):
        key, n, tag = ("train_idx", self.cfg.n_train, 1) if level == "inner" else ("val_idx", self.cfg.n_val, 2)
        return level_batch(self.cfg.sampler, key, [self.seed, tag], n, self.cfg.batch_size, step)

    def oracle(self) -> Oracle:
        return _Oracle(self.pb)

    def metrics(self, backend, params):
        pb = self.pb
        lam = np.asarray(backend.to_numpy(params["outer"]["logits"]), dtype=np.float64)
        theta = np.asarray(backend.to_numpy(params["inner"]["theta"]), dtype=np.float64)
        sol = pb.solve(lam)
        down = _sigmoid(lam) < 0.5
        return {"value_function": sol.value, "hypergrad_sq_norm": float(sol.grad @ sol.grad),
                "inner_distance": float(np.sum((theta - sol.theta) ** 2)),
                "test_accuracy": pb.accuracy(sol.theta, "test"), "val_accuracy": pb.accuracy(sol.theta, "val"),
                "run_test_accuracy": pb.accuracy(theta, "test"), "run_val_accuracy": pb.accuracy(theta, "val"),
                "run_train_accuracy": pb.accuracy(theta, "train"),
                "corrupted_downweighted": float(np.mean(down[pb.corrupted])) if pb.corrupted.any() else float("nan"),
                "downweighted_precision": float(np.mean(pb.corrupted[down])) if down.any() else float("nan")}
