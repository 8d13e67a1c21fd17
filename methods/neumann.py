"""``neumann``: H⁻¹ v ≈ α Σ_{j=0..K} (I − αH)^j v (Betty's form and defaults: K = 1, α = 1.0).

``method.warm_start=true`` keeps the last solution per edge (method state) and runs the same K+1 Richardson steps
x ← x + α(v − Hx) from it instead of from 0.

Data parallel (``parallel.world_size``; where each reduction goes, backends/_torch_dist.py): one all-reduce per
term: each Hessian-vector product of the K + 1 Richardson steps is averaged over the ranks, plus the final mixed
VJP.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.engine.implicit import MatrixFreeSolve
from mlo_bench.suite.engine.linear_solvers import neumann
from mlo_bench.suite.plugins.registry import register


@register("method")
class Neumann(MatrixFreeSolve):
    name = "neumann"

    @dataclass
    class Config:
        iterations: int = 1
        alpha: float = 1.0
        warm_start: bool = False

        def validate(self) -> None:
            if self.iterations < 1:
                raise ValueError(f"method.iterations must be >= 1 (got {self.iterations})")
            if not self.alpha > 0:
                raise ValueError(f"method.alpha must be > 0 (got {self.alpha})")

    def solve(self, backend, matvec, v, cfg, x0):
        return neumann(backend.ops, matvec, v, cfg.iterations, cfg.alpha, x0)
