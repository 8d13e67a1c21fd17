"""``stocbio``: StocBiO — Stochastic Bilevel Optimizer (Ji, Yang & Liang, "Bilevel Optimization: Convergence Analysis
and Enhanced Design", ICML 2021).

Per outer step: the lower level takes T steps of its own SGD (the run's ``inner_steps``; benchopt's
``n_inner_steps`` = 10) from where it was; then H⁻¹ ∇_y g is approximated by the truncated Neumann series of P terms

    z = η Σ_{j=0..P−1} (I − η H)^j ∇_y g      (P = ``method.iterations`` = 10, η = ``method.alpha`` = 0.1:
                                               benchopt's ``n_shia_steps`` and ``step_size``)

from zero every time (stateless), and the top level receives ∇_x g − (∂²f/∂x∂y) z. The paper and benchmark_bilevel
draw a fresh batch for each term (stochastic Hessian inverse approximation, SHIA); here the P terms share the lower
level's last batch of the outer step. Costs P − 1 HVPs + 1 mixed VJP per edge. The series is ``neumann``'s
(Betty's form with K = P − 1: :func:`~mlo_bench.suite.engine.linear_solvers.neumann`), at StocBiO's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.engine.implicit import MatrixFreeSolve
from mlo_bench.suite.engine.linear_solvers import neumann
from mlo_bench.suite.plugins.registry import register


@register("method")
class StocBiO(MatrixFreeSolve):
    name = "stocbio"
    init = None  # stateless: every series starts from 0
    update = None

    @dataclass
    class Config:
        iterations: int = 10
        alpha: float = 0.1

        def validate(self) -> None:
            if self.iterations < 1:
                raise ValueError(f"method.iterations must be >= 1 (got {self.iterations})")
            if not self.alpha > 0:
                raise ValueError(f"method.alpha must be > 0 (got {self.alpha})")

    def gradients(self, cfg, unroll_steps):
        """P − 1 Hessian-vector products (the series' terms after the first) and one mixed VJP."""
        return int(cfg.iterations)

    def solve(self, backend, matvec, v, cfg, x0):
        return neumann(backend.ops, matvec, v, cfg.iterations - 1, cfg.alpha, None)
