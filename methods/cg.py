"""``cg``: K conjugate-gradient iterations on H x = v with Hessian-vector products (matrix-free).

``method.warm_start=true`` keeps the last solution x per edge (method state, see
:class:`mlo_bench.suite.contract.Method`) and starts the next solve from it: when the lower level and v move little
between outer steps, fewer iterations reach the same error.

Data parallel (``parallel.world_size``; where each reduction goes, backends/_torch_dist.py): one all-reduce per
iteration: each Hessian-vector product H p is averaged over the ranks (its loss's batch sums are all-reduced inside
it), so every rank runs the same iterations on the global H; the mixed VJP at the end is one more.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.engine.implicit import MatrixFreeSolve
from mlo_bench.suite.engine.linear_solvers import cg
from mlo_bench.suite.plugins.registry import register


@register("method")
class ConjugateGradient(MatrixFreeSolve):
    name = "cg"

    @dataclass
    class Config:
        iterations: int = 10
        warm_start: bool = False
        negative_curvature: str = "continue"

        def validate(self) -> None:
            if self.iterations < 1:
                raise ValueError(f"method.iterations must be >= 1 (got {self.iterations})")
            if self.negative_curvature not in ("continue", "stop"):
                raise ValueError(
                    f"method.negative_curvature must be continue or stop (got {self.negative_curvature!r})")

    def solve(self, backend, matvec, v, cfg, x0):
        return cg(backend.ops, matvec, v, cfg.iterations, x0, cfg.negative_curvature == "stop")
