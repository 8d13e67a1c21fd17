"""The oracle task: an L-level chain of strongly convex quadratics with closed-form best responses.

Levels x_0 (top) … x_{L-1} (bottom), each in R^d. For k ≥ 1 the level's loss, given its parent x_{k-1}, is

    f_k(x_k; x_{k-1}) = ½ x_kᵀ A_k x_k − x_kᵀ (s · B_k x_{k-1} + c_k)

with A_k symmetric positive definite, eigenvalues spread geometrically over [1/κ, 1] (κ = ``condition``), B_k a random
orthogonal matrix and s = ``coupling``. Its default (``null``) is 1 for two levels and 10^(1/(L−1))/κ (at most 1) for
L ≥ 3: then ‖J_{L−1} ⋯ J_1‖ ≤ 10 for every L, as for two levels at κ = 10.

The best response is linear, x_k* = A_k⁻¹(s B_k x_{k-1} + c_k), with Jacobian J_k = s A_k⁻¹ B_k. The top level's
loss reads the bottom level and its own parameters,

    g(x_0, x_{L-1}) = ½ ‖x_{L-1} − b‖² + ½ ρ ‖x_0‖²      (ρ = ``ridge``),

so its hypergradient is ρ x_0 + J_1ᵀ ⋯ J_{L-1}ᵀ (x_{L-1}* − b), in closed form. The top problem is itself a
quadratic in x_0, so the optimum F* is closed-form too: the metric ``outer_gap`` = F(x0) − F* (with the lower
levels at their exact best response) says how far the whole multilevel optimisation got.

Step sizes (``task.inner.lr`` / ``task.outer.lr`` = ``null``, the default: derived here for plain SGD from the chain's
conditioning; a number given on the command line is used as it is):

- lower levels: f_k is μ-strongly convex and L-smooth in x_k with μ = 1/κ, L = 1 exactly (A_k's spectrum), so
  η_in = 2/(μ + L) = 2κ/(κ + 1), the step that minimises GD's contraction: q = (κ − 1)/(κ + 1) per inner step.
- top level: F(x_0) = ½‖M x_0 + m − b‖² + ½ρ‖x_0‖² with M = J_{L−1} ⋯ J_1 (the composed best-response map) has
  curvature L_F = ρ + ‖M‖². ‖M‖ = sκ exactly for two levels (B orthogonal); for L ≥ 3 it is measured on M (power
  iteration, the affine map the oracle computes anyway; the bound (sκ)^(L−1) = 10 overestimates it 2–7×).
  With the lower levels exact the step would be 1/L_F. They are not: each takes one step per outer step, so the
  bottom level follows x_0 through n = L − 1 first-order lags in series (Gauss–Seidel, each closing a fraction
  a = 1 − q = 2/(κ + 1) of its gap per step). Integrator (the outer GD, gain η_0 L_F) + n lags a/(z + a) is a
  feedback loop whose phase reaches −180° at ω = a·tan(π/2n); it is stable while η_0 L_F < a·g(n),
  g(n) = tan(π/2n)/cos^n(π/2n) (g(1) = ∞: one lag never destabilises; g(2) = 2, g(3) = 0.89, g(4) = 0.57). The
  default takes half of that margin (gain margin 2), capped at the exact-tracking step:

      η_0 = min(1, ½·a·g(L − 1)) / L_F      (rounded down to 3 significant digits)

  For two levels at the defaults η_0 = 1/100.1 = 0.00999 (was 0.01) and η_in = 1.82 (was 1.0). Checked against the
  spectral radius of the joint iteration matrix (all L levels, d = 24, L = 2…5, κ ∈ {2, 10, 30, 100},
  s ∈ {null, 0.3, 1}, ρ ∈ {0, 0.1, 1}: 123 settings): the rule's step is at most 0.43 of the largest stable one.
  The old defaults (η_in = 1, η_0 = 0.01) had spectral radius 1.0024 at L = 3: the README's 3-level run went
  26.5 → 19.3 → 227.6 in outer loss (gap 30 → 2.7 → 11.9) over 1,000 steps.

Measured (method=exact, float64, d = 100, seeds 0–4): the outer gap falls below 1% of its first step's value after
L = 2: < 100 steps; L = 3: 536–868; L = 4: 828–1,510; L = 5: 615–814 steps (the top problem's conditioning, not the
lag, sets the pace: the ridge-dominated directions of x_0 contract by ≈ 1 − η_0 ρ per step). So a run without
``steps=`` takes (``default_steps``) 100 outer steps at L = 2, 1,000 at L = 3 and 5, 2,000 at L = 4 — the measured
worst seed rounded up — and 2,000 beyond L = 5 (not measured there); these are for the default step sizes and
conditioning, which ``task.inner.lr`` / ``task.outer.lr`` / ``task.condition`` change.

Everything is generated from the seed in numpy float64; the oracle works in float64.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from mlo_bench.suite.contract import ClaimRule, Level, MetricSpec, Oracle, Paper, Task, Variant
from mlo_bench.suite.engine.optim import OptimizerConfig
from mlo_bench.suite.plugins.registry import register


@dataclass
class StepConfig(OptimizerConfig):
    """An optimizer whose ``lr`` may be ``null``: derived from the chain's conditioning (the module docstring)."""

    lr: float | None = None

    def validate(self, key: str) -> None:
        if self.lr is None and self.name != "sgd":
            raise ValueError(f"{key}.lr must be set for {key}.name={self.name} (null derives a plain-SGD step)")
        OptimizerConfig.validate(replace(self, lr=1.0) if self.lr is None else self, key)


@dataclass
class QuadraticConfig:
    d: int = 100
    levels: int = 2
    condition: float = 10.0
    coupling: float | None = None
    ridge: float = 0.1
    inner: StepConfig = field(default_factory=StepConfig)
    outer: StepConfig = field(default_factory=StepConfig)

    def validate(self) -> None:
        if self.d < 1:
            raise ValueError(f"task.d must be >= 1 (got {self.d})")
        if self.levels < 2:
            raise ValueError(f"task.levels must be >= 2 (got {self.levels})")
        if not self.condition >= 1:
            raise ValueError(f"task.condition must be >= 1 (got {self.condition})")
        if self.coupling is not None and not self.coupling > 0:
            raise ValueError(f"task.coupling must be > 0 or null (got {self.coupling})")
        if self.ridge < 0:
            raise ValueError(f"task.ridge must be >= 0 (got {self.ridge})")
        self.inner.validate("task.inner")
        self.outer.validate("task.outer")


def coupling(cfg: QuadraticConfig) -> float:
    """s: ``cfg.coupling``, or the default that keeps the chain's amplification ≤ 10 whatever the depth."""
    if cfg.coupling is not None:
        return float(cfg.coupling)
    return 1.0 if cfg.levels == 2 else min(1.0, 10.0 ** (1.0 / (cfg.levels - 1)) / float(cfg.condition))


def inner_lr(cfg: QuadraticConfig) -> float:
    """η_in: ``cfg.inner.lr``, or 2/(μ + L) = 2κ/(κ + 1) for the lower levels' spectrum [1/κ, 1]."""
    if cfg.inner.lr is not None:
        return float(cfg.inner.lr)
    return 2.0 * float(cfg.condition) / (float(cfg.condition) + 1.0)


def lag_margin(n: int) -> float:
    """g(n) = tan(π/2n)/cos^n(π/2n): an integrator in feedback through n first-order lags of rate a is stable while its
    gain is below a·g(n) (∞ for n ≤ 1)."""
    if n <= 1:
        return math.inf
    theta = math.pi / (2 * n)
    return math.tan(theta) / math.cos(theta) ** n


def outer_lr(cfg: QuadraticConfig, chain_norm: float) -> float:
    """η_0: ``cfg.outer.lr``, or min(1, ½·a·g(L − 1)) / (ρ + ‖M‖²) rounded down to 3 significant digits, with
    a = 1 − q the fraction of its gap each lower level closes per step at η_in (the module docstring)."""
    if cfg.outer.lr is not None:
        return float(cfg.outer.lr)
    eta, kappa = inner_lr(cfg), float(cfg.condition)
    a = 1.0 - max(abs(1.0 - eta / kappa), abs(1.0 - eta))  # ≤ 0: the inner step itself diverges; track as if exact
    gain = min(1.0, 0.5 * a * lag_margin(cfg.levels - 1)) if a > 0 else 1.0
    value = gain / (cfg.ridge + chain_norm ** 2)
    digits = 2 - math.floor(math.log10(value))
    return math.floor(value * 10.0 ** digits) / 10.0 ** digits


def _orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


#: data sets (and optima) kept per process: a sweep that runs in one process (``isolate=false``) over many
#: backends × methods of one size generates its O(d³) data once (d = 4096: QR factorisations of tens of seconds)
_CACHE_SIZE = 2
_OPTIMA: dict[tuple, float] = {}
_AFFINE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _keep(cache: dict, key: tuple | None, value):
    if key is not None:
        while len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = value
    return value


def _spectral_norm(m_mat: np.ndarray, iterations: int = 500, tol: float = 1e-12) -> float:
    """‖M‖₂ by power iteration on MᵀM from a fixed seeded start (O(d²) per iteration; an SVD is O(d³))."""
    v = np.random.default_rng(0x9A5).standard_normal(m_mat.shape[1])
    v /= np.linalg.norm(v)
    sigma = 0.0
    for _ in range(iterations):
        w = m_mat @ v
        new = float(np.linalg.norm(w))
        v = m_mat.T @ w
        norm = np.linalg.norm(v)
        if norm == 0 or abs(new - sigma) <= tol * new:
            return new
        v, sigma = v / norm, new
    return sigma


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _generate(seed: int, d: int, levels: int, condition: float) -> dict[str, np.ndarray]:
    """The task's arrays, a pure function of its arguments (shared between instances: never modify them).

    Generated with single-threaded BLAS: the arrays then do not depend on the machine's thread count, and OpenBLAS's
    threaded QR (orgqr) is up to 10× slower than its single-threaded one when another process holds a core
    (d = 4096 on 2 cores: 185 s against 17 s)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a declared dependency; without it the arrays may differ in the last bits across machines
        return _generate_arrays(seed, d, levels, condition)
    with threadpool_limits(1, user_api="blas"):
        return _generate_arrays(seed, d, levels, condition)


def _generate_arrays(seed: int, d: int, levels: int, condition: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 0x9A5])
    spectrum = np.geomspace(1.0 / condition, 1.0, d)
    arrays: dict[str, np.ndarray] = {}
    for k in range(1, levels):
        q = _orthogonal(rng, d)
        arrays[f"A{k}"] = (q * spectrum) @ q.T
        arrays[f"B{k}"] = _orthogonal(rng, d)
        arrays[f"c{k}"] = rng.standard_normal(d) / np.sqrt(d)
    arrays["b"] = rng.standard_normal(d)
    return arrays


def _names(levels: int) -> list[str]:
    return [f"x{k}" for k in range(levels)]


def _lower_loss(k: int, coupling: float):
    def loss(ops, params, batch):
        x, parent = params[f"x{k}"]["w"], params[f"x{k - 1}"]["w"]
        a, b, c = batch[f"A{k}"], batch[f"B{k}"], batch[f"c{k}"]
        return 0.5 * ops.sum(x * ops.matmul(a, x)) - ops.sum(x * (coupling * ops.matmul(b, parent) + c))

    return loss


def _top_loss(levels: int, ridge: float):
    bottom = f"x{levels - 1}"

    def loss(ops, params, batch):
        r = params[bottom]["w"] - batch["b"]
        top = params["x0"]["w"]
        return 0.5 * ops.sum(r * r) + 0.5 * ridge * ops.sum(top * top)

    return loss


#: the paper side: ``outer_gap`` is the result; the size knob ``d`` and the chain length ``levels`` drive the complexity
#: experiment (suite/conf/experiment/complexity.yaml); Betty's O(d³) → O(d²) claim (tasks/claims/quadratic.csv) is the
#: exponent of counted FLOPs of the materialised chain (naive) against reverse mode (torch)
PAPER = Paper(
    metrics=(MetricSpec("outer_gap", "lower", doc="F(x0) - F*: the top objective above its closed-form optimum"),),
    variants=(
        Variant("materialised-chain", "unroll", backend_knobs={"naive": {"chain": "materialised"}},
                backends=("naive",), doc="best-response Jacobians materialised and multiplied (O(d³))"),
        Variant("reverse-mode", "unroll", backends=("torch",), doc="one vector pushed down the chain (O(d²))"),
    ),
    size="task.d", size_label="d", groups=("task.levels",), group_label="L",
    claims="quadratic.csv",
    rules={"betty-abstract-cplx": ClaimRule(
        "exponent", "flops_hypergrad", "materialised-chain", "reverse-mode",
        "materialised best-response Jacobians (naive) grow as O(d³), reverse mode (torch) as O(d²): the naive "
        "exponent of counted FLOPs per hypergradient in d exceeds torch's")},
)


@register("task")
class Quadratic(Task):
    """L-level chain of strongly convex quadratics (L = 2 is bilevel) with a closed-form oracle."""

    name = "quadratic"
    Config = QuadraticConfig
    paper = PAPER

    #: outer steps by depth L within which the default step sizes bring the outer gap below 1% of its first step's
    DEFAULT_STEPS_BY_LEVELS = {2: 100, 3: 1000, 4: 2000, 5: 1000}

    @classmethod
    def default_steps(cls, cfg: QuadraticConfig) -> int:
        """Steps for the outer gap to fall below 1% of its start at this depth (the module docstring); 2,000 past 5."""
        return cls.DEFAULT_STEPS_BY_LEVELS.get(int(cfg.levels), 2000)

    def __init__(self, cfg: QuadraticConfig, seed: int) -> None:
        super().__init__(cfg, seed)
        self.arrays: dict[str, np.ndarray] = dict(_generate(seed, cfg.d, cfg.levels, float(cfg.condition)))
        self._norm: float | None = None

    def step_sizes(self) -> tuple[float, float]:
        """(η_in, η_0): the lower levels' and the top level's SGD steps (given, or derived: the module docstring)."""
        cfg = self.cfg
        if cfg.outer.lr is not None:
            return inner_lr(cfg), float(cfg.outer.lr)
        if self._norm is None:  # ‖M‖ = sκ exactly for two levels; measured on M for more
            self._norm = coupling(cfg) * float(cfg.condition) if cfg.levels == 2 else self.oracle().chain_norm()
        return inner_lr(cfg), outer_lr(cfg, self._norm)

    def levels(self) -> list[Level]:
        names = _names(self.cfg.levels)
        eta_in, eta_out = self.step_sizes()
        inner = OptimizerConfig(**{**vars(self.cfg.inner), "lr": eta_in})
        outer = OptimizerConfig(**{**vars(self.cfg.outer), "lr": eta_out})
        top = Level(names[0], _top_loss(self.cfg.levels, self.cfg.ridge), outer)
        lower = [
            Level(n, _lower_loss(k, coupling(self.cfg)), inner, parent=names[k - 1])
            for k, n in enumerate(names)
            if k
        ]
        return [top, *lower]

    def init_params(self, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
        return {n: {"w": rng.standard_normal(self.cfg.d)} for n in _names(self.cfg.levels)}

    def data(self) -> dict[str, np.ndarray]:
        return self.arrays

    def oracle(self) -> QuadraticOracle:
        return QuadraticOracle(self.arrays, self.cfg, self.seed)

    def metrics(self, backend, params) -> dict[str, float]:
        top = {"w": backend.to_numpy(params["x0"]["w"]).astype(np.float64)}
        oracle = self.oracle()
        return {"outer_gap": float(oracle.objective(top) - oracle.optimum())}


class QuadraticOracle(Oracle):
    """Closed forms in float64 for :class:`Quadratic`."""

    def __init__(self, arrays: dict[str, np.ndarray], cfg: QuadraticConfig, seed: int | None = None) -> None:
        self.a, self.cfg = arrays, cfg
        self.s = coupling(cfg)
        # the arrays are a pure function of (seed, d, levels, condition): M, m and F* are cached per process
        self._chain_key = None if seed is None else (seed, cfg.d, cfg.levels, float(cfg.condition), self.s)
        self._key = None if seed is None else (*self._chain_key, cfg.ridge)

    def _solve(self, k: int, rhs: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.a[f"A{k}"], rhs)

    def best_response(self, top):
        out = {"x0": {"w": np.asarray(top["w"], dtype=np.float64)}}
        x = out["x0"]["w"]
        for k in range(1, self.cfg.levels):
            x = self._solve(k, self.s * self.a[f"B{k}"] @ x + self.a[f"c{k}"])
            out[f"x{k}"] = {"w": x}
        return out

    def hypergradient(self, top):
        levels = self.cfg.levels
        x0 = np.asarray(top["w"], dtype=np.float64)
        v = self.best_response(top)[f"x{levels - 1}"]["w"] - self.a["b"]
        for k in range(levels - 1, 0, -1):
            v = self.s * self.a[f"B{k}"].T @ self._solve(k, v)  # J_kᵀ v, A_k symmetric
        return {"w": v + self.cfg.ridge * x0}

    def objective(self, top) -> float:
        """F(x_0) = g(x_0, x_{L-1}*(x_0))."""
        bottom = self.best_response(top)[f"x{self.cfg.levels - 1}"]["w"]
        x0 = np.asarray(top["w"], dtype=np.float64)
        r = bottom - self.a["b"]
        return 0.5 * float(r @ r) + 0.5 * self.cfg.ridge * float(x0 @ x0)

    def affine_map(self) -> tuple[np.ndarray, np.ndarray]:
        """(M, m) with x_{L-1}*(x_0) = M x_0 + m (cached per process: never modify them)."""
        if self._chain_key is not None and self._chain_key in _AFFINE:
            return _AFFINE[self._chain_key]
        d = self.cfg.d
        m_mat, m_vec = np.eye(d), np.zeros(d)
        for k in range(1, self.cfg.levels):
            m_mat = self.s * self._solve(k, self.a[f"B{k}"] @ m_mat)
            m_vec = self._solve(k, self.s * self.a[f"B{k}"] @ m_vec + self.a[f"c{k}"])
        return _keep(_AFFINE, self._chain_key, (m_mat, m_vec))

    def chain_norm(self) -> float:
        """‖M‖₂, the composed best-response map's gain (‖M‖² + ρ is the top problem's curvature)."""
        return _spectral_norm(self.affine_map()[0])

    def optimum(self) -> float:
        if self._key is not None and self._key in _OPTIMA:
            return _OPTIMA[self._key]
        m_mat, m_vec = self.affine_map()
        lhs = m_mat.T @ m_mat + self.cfg.ridge * np.eye(self.cfg.d)
        rhs = m_mat.T @ (self.a["b"] - m_vec)
        # ridge > 0: lhs is symmetric positive definite, a dense solve (lstsq's SVD costs ~20× more at d = 4096)
        x0 = np.linalg.solve(lhs, rhs) if self.cfg.ridge > 0 else np.linalg.lstsq(lhs, rhs, rcond=None)[0]
        return _keep(_OPTIMA, self._key, self.objective({"w": x0}))
