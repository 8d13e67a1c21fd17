"""``logreg_hyper``: ℓ2-regularised binary logistic regression whose regularisation is selected on a validation split —
benchopt benchmark_bilevel's ijcnn1 / covtype problem (its ``reg_parametrization=exp``), offline.

    inner (lower, y = w ∈ R^d):   f(w, x) = mean_i log(1 + exp(−b_i a_iᵀw)) + ½ Σ_j e^{x_j} w_j²     (training split)
    outer (top, x):               g(w)    = mean_j log(1 + exp(−b_j a_jᵀw))                         (validation split)

with one hyperparameter per feature (``task.reg=per_feature``, benchmark_bilevel's choice) or one for all
(``task.reg=single``). Data (``task.data``): ``breast_cancer`` (scikit-learn's bundled set, 569 × 30, standardised on
the training split, split in halves by ``task.problem_seed``; the default) or ``libsvm`` (``task.train_path`` and
``task.val_path``: LIBSVM files such as ijcnn1 / ijcnn1.t or a covtype.binary split;
:mod:`mlo_bench.tasks.data.libsvm`).
Minibatches of ``task.batch_size`` examples per level and step (drawn from the run's seed; 0: the whole split;
``task.sampler``: ``draw`` afresh each step, or ``epoch``, benchmark_bilevel's fixed minibatches visited once per
epoch, :func:`mlo_bench.suite.models.batch.epoch_batch`, which ``saba`` / ``srba`` need); init as
benchmark_bilevel's: w ~ N(0, I), x = log U(0, 1).

Ground truth, float64, once per problem (cached on its knobs): y*(x) by Newton's method on f (strongly convex) to
‖∇f‖ < 1e-12; ∇h(x) = −e^x ∘ w* ∘ H⁻¹∇_w g(w*) (the implicit function theorem with the dense Hessian H — the
formula of the suite's ``exact`` method, which ``tests/test_bilevel_solvers.py`` checks it against); x* = argmin h
over the box [−10, 10]^d by L-BFGS-B with that gradient, h* = h(x*). (benchmark_bilevel has no h* for ijcnn1: it
draws h and ‖∇h‖², with y*(x) from JAXopt's L-BFGS at its default tolerance and the gradient by JAXopt's implicit
differentiation, in JAX's default float32.) Metrics at every ``eval_every``: ``suboptimality`` = h(x) − h*,
``hypergrad_sq_norm`` = ‖∇h(x)‖², ``inner_distance`` = ‖w − w*(x)‖², ``val_accuracy`` of w*(x).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np

from mlo_bench.suite.contract import Level, MetricSpec, Oracle, Paper, Task
from mlo_bench.suite.engine.optim import OptimizerConfig
from mlo_bench.suite.models.batch import check_sampler, level_batch, n_batches
from mlo_bench.suite.plugins.registry import register
from mlo_bench.tasks.data import checks, libsvm

DATA = ("breast_cancer", "libsvm")
REGS = ("per_feature", "single")
BOX = 10.0


@dataclass
class LogRegConfig:
    data: str = "breast_cancer"
    train_path: str | None = None
    val_path: str | None = None
    reg: str = "per_feature"
    batch_size: int = 64
    sampler: str = "draw"
    problem_seed: int = 0
    inner: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.1))
    outer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="sgd", lr=0.1))

    def validate(self) -> None:
        if self.data not in DATA:
            raise ValueError(f"task.data must be one of {', '.join(DATA)} (got {self.data!r})")
        if self.reg not in REGS:
            raise ValueError(f"task.reg must be one of {', '.join(REGS)} (got {self.reg!r})")
        check_sampler(self.sampler)
        if self.batch_size < 0:
            raise ValueError(f"task.batch_size must be >= 1, or 0 for the whole sample (got {self.batch_size})")
        self.inner.validate("task.inner")
        self.outer.validate("task.outer")
        if self.data == "libsvm":
            for key in ("train_path", "val_path"):
                if not getattr(self, key):
                    raise ValueError(f"task.{key} must be given for task.data=libsvm ({libsvm.FORMAT})")
            x, _ = checks.precheck("task.train_path", libsvm.load, self.train_path)
            checks.precheck("task.val_path", libsvm.load, self.val_path, x.shape[1])


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class Problem:
    """The data splits and the value function h(x) = g(w*(x)) in float64."""

    def __init__(self, cfg: LogRegConfig) -> None:
        if cfg.data == "libsvm":
            self.a, self.b = libsvm.load(cfg.train_path)
            self.a_val, self.b_val = libsvm.load(cfg.val_path, self.a.shape[1])
        else:
            from sklearn.datasets import load_breast_cancer

            x, y = load_breast_cancer(return_X_y=True)
            order = np.random.default_rng(cfg.problem_seed).permutation(len(y))
            tr, va = order[: len(y) // 2], order[len(y) // 2:]
            mean, std = x[tr].mean(0), x[tr].std(0) + 1e-12
            x = (x - mean) / std
            self.a, self.b, self.a_val, self.b_val = x[tr], 2.0 * y[tr] - 1.0, x[va], 2.0 * y[va] - 1.0
        self.d = self.a.shape[1]
        self.n_reg = self.d if cfg.reg == "per_feature" else 1
        self._w = np.zeros(self.d)
        res = self._minimise()
        self.x_star, self.h_star = res

    def _minimise(self) -> tuple[np.ndarray, float]:
        from scipy.optimize import minimize

        out = minimize(lambda x: (self.value(x), self.grad(x)), np.zeros(self.n_reg), jac=True, method="L-BFGS-B",
                       bounds=[(-BOX, BOX)] * self.n_reg, options={"maxiter": 500, "gtol": 1e-10})
        return out.x, float(self.value(out.x))

    def y_star(self, x: np.ndarray) -> np.ndarray:
        """w*(x) by Newton's method (warm-started from the last solve) to ‖∇f‖ < 1e-12."""
        reg, w = np.broadcast_to(np.exp(np.asarray(x, dtype=np.float64)), (self.d,)), self._w.copy()
        n = len(self.b)
        for _ in range(100):
            z = self.b * (self.a @ w)
            g = self.a.T @ (-self.b * _sigmoid(-z)) / n + reg * w
            if np.linalg.norm(g) < 1e-12:
                break
            s = _sigmoid(z)
            h = (self.a.T * (s * (1.0 - s))) @ self.a / n + np.diag(reg)
            w = w - np.linalg.solve(h, g)
        self._w = w
        return w

    def _hessian(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        s = _sigmoid(self.b * (self.a @ w))
        reg = np.broadcast_to(np.exp(x), (self.d,))
        return (self.a.T * (s * (1.0 - s))) @ self.a / len(self.b) + np.diag(reg)

    def value(self, x: np.ndarray) -> float:
        w = self.y_star(x)
        return float(np.mean(_softplus(-self.b_val * (self.a_val @ w))))

    def grad(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        w = self.y_star(x)
        g_w = self.a_val.T @ (-self.b_val * _sigmoid(-self.b_val * (self.a_val @ w))) / len(self.b_val)
        z = np.linalg.solve(self._hessian(x, w), g_w)
        per_feature = -np.broadcast_to(np.exp(x), (self.d,)) * w * z
        return per_feature if self.n_reg == self.d else np.array([per_feature.sum()])


@functools.lru_cache(maxsize=8)
def _problem(key: tuple) -> Problem:
    values = dict(key)
    return Problem(LogRegConfig(**values))


def problem(cfg: LogRegConfig) -> Problem:
    """The problem of these knobs, loaded and solved once per process."""
    values = {k: v for k, v in asdict(cfg).items() if k not in ("inner", "outer", "batch_size", "sampler")}
    return _problem(tuple(sorted(values.items())))


def _logistic(ops, a, b, w):
    z = -b * ops.matmul(a, w)
    return ops.mean(ops.maximum(z, z * 0.0) + ops.log(1.0 + ops.exp(-ops.maximum(z, -z))))


def _rows(batch, key, idx_key):
    idx = batch.get(idx_key)
    return (batch[key], batch[key + "_y"]) if idx is None else (batch[key][idx], batch[key + "_y"][idx])


def inner_loss(ops, params, batch):
    w, x = params["inner"]["w"], params["outer"]["log_reg"]
    a, b = _rows(batch, "train", "train_idx")
    return _logistic(ops, a, b, w) + 0.5 * ops.sum(ops.exp(x) * w * w)


def outer_loss(ops, params, batch):
    a, b = _rows(batch, "val", "val_idx")
    return _logistic(ops, a, b, params["inner"]["w"])


class _Oracle(Oracle):
    def __init__(self, pb: Problem) -> None:
        self.pb = pb

    def best_response(self, top):
        x = np.asarray(top["log_reg"], dtype=np.float64)
        return {"outer": {"log_reg": x}, "inner": {"w": self.pb.y_star(x)}}

    def hypergradient(self, top):
        return {"log_reg": self.pb.grad(np.asarray(top["log_reg"], dtype=np.float64))}


PAPER = Paper(
    metrics=(
        MetricSpec("suboptimality", "lower", doc="h(x) − h*, the value function's gap (exact inner solve)"),
        MetricSpec("hypergrad_sq_norm", "lower", doc="‖∇h(x)‖², benchmark_bilevel's convergence criterion"),
        MetricSpec("inner_distance", "lower", doc="‖y − y*(x)‖² of the run's lower level"),
        MetricSpec("val_accuracy", "higher", doc="validation accuracy of w*(x)"),
    ),
    curves=("suboptimality", "hypergrad_sq_norm"),
    convergence={"suboptimality": 0.1},
)


@register("task")
class LogRegHyper(Task):
    """ℓ2-regularised logistic regression, its regularisation selected on a validation split (benchopt's ijcnn1)."""

    name = "logreg_hyper"
    paper = PAPER
    Config = LogRegConfig

    @classmethod
    def default_steps(cls, cfg) -> int:
        return 1000

    def __init__(self, cfg: LogRegConfig, seed: int) -> None:
        super().__init__(cfg, seed)
        self.pb = problem(cfg)
        pb = self.pb
        self.arrays = {"train": pb.a, "train_y": pb.b, "val": pb.a_val, "val_y": pb.b_val}

    def levels(self) -> list[Level]:
        size = self.cfg.batch_size if self.cfg.sampler == "epoch" else None
        counts = {n: None if size is None else n_batches(n, size) for n in (len(self.pb.b), len(self.pb.b_val))}
        return [Level("outer", outer_loss, self.cfg.outer, batches=counts[len(self.pb.b_val)]),
                Level("inner", inner_loss, self.cfg.inner, parent="outer", data="train",
                      batches=counts[len(self.pb.b)])]

    def init_params(self, rng: np.random.Generator):
        w = rng.standard_normal(self.pb.d)
        return {"outer": {"log_reg": np.log(rng.uniform(size=self.pb.n_reg))}, "inner": {"w": w}}

    def data(self):
        return self.arrays

    def batch(self, level: str, step: int):
        key, n, tag = ("train_idx", len(self.pb.b), 1) if level == "inner" else ("val_idx", len(self.pb.b_val), 2)
        return level_batch(self.cfg.sampler, key, [self.seed, tag], n, self.cfg.batch_size, step)

    def oracle(self) -> Oracle:
        return _Oracle(self.pb)

    def metrics(self, backend, params):
        pb = self.pb
        x = np.asarray(backend.to_numpy(params["outer"]["log_reg"]), dtype=np.float64)
        w = np.asarray(backend.to_numpy(params["inner"]["w"]), dtype=np.float64)
        g, w_star = pb.grad(x), pb.y_star(x)
        acc = float(np.mean(np.sign(pb.a_val @ w_star) == pb.b_val))
        return {"suboptimality": pb.value(x) - pb.h_star, "hypergrad_sq_norm": float(g @ g),
                "inner_distance": float(np.sum((w - w_star) ** 2)), "val_accuracy": acc}
