"""``neumann``: H⁻¹ v ≈ α Σ_{j=0..K} (I − αH)^j v (Betty's form and defaults: K = 1, α = 1.0)."""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.implicit import hessian_matvec, mixed_vjp
from mlo_bench.suite.registry import register
from mlo_bench.suite.solvers import neumann


@register("method")
class Neumann:
    name = "neumann"

    @dataclass
    class Config:
        iterations: int = 1
        alpha: float = 1.0

        def validate(self) -> None:
            if self.iterations < 1:
                raise ValueError(f"method.iterations must be >= 1 (got {self.iterations})")
            if not self.alpha > 0:
                raise ValueError(f"method.alpha must be > 0 (got {self.alpha})")

    def response_vjp(self, backend, r, v, cfg):
        x = neumann(backend.ops, hessian_matvec(backend, r), v, cfg.iterations, cfg.alpha)
        return mixed_vjp(backend, r, x)
