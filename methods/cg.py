"""``cg``: K conjugate-gradient iterations on H x = v with Hessian-vector products (matrix-free)."""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.implicit import hessian_matvec, mixed_vjp
from mlo_bench.suite.registry import register
from mlo_bench.suite.solvers import cg


@register("method")
class ConjugateGradient:
    name = "cg"

    @dataclass
    class Config:
        iterations: int = 10

        def validate(self) -> None:
            if self.iterations < 1:
                raise ValueError(f"method.iterations must be >= 1 (got {self.iterations})")

    def response_vjp(self, backend, r, v, cfg):
        x = cg(backend.ops, hessian_matvec(backend, r), v, cfg.iterations)
        return mixed_vjp(backend, r, x)
