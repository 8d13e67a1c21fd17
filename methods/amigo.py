"""``amigo``: AmIGO — Amortized Implicit Gradient Optimization (Arbel & Mairal, "Amortized Implicit Differentiation
for Stochastic Bilevel Optimization", ICLR 2022).

Per outer step: the lower level takes T steps of its own SGD (the run's ``inner_steps``; benchopt's
``n_inner_steps`` = 10), warm-started from where the last outer step left it; then the linear system H z = ∇_y g is
solved approximately by P steps of gradient descent on ½ zᵀHz − zᵀ∇_y g started from the previous outer step's z
(the amortisation: method state, :class:`mlo_bench.suite.contract.Method`),

    z ← z − η (H z − ∇_y g)     P times     (P = ``method.iterations`` = 10, η = ``method.lr`` = 0.1: benchopt's
                                             AmIGO defaults, ``n_inner_steps`` and ``step_size``)

and the top level receives ∇_x g − (∂²f/∂x∂y) z (f: the lower loss, g: the top loss). Here every P-step solve sees
one batch of the lower level (its last of this outer step); benchmark_bilevel draws a fresh batch for each of the P
Hessian-vector products. Costs P HVPs + 1 mixed VJP per edge (``gradients``). It is ``neumann``'s warm-started
Richardson iteration at AmIGO's step count and step (one implementation:
:func:`~mlo_bench.suite.engine.linear_solvers.neumann`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.engine.implicit import MatrixFreeSolve
from mlo_bench.suite.engine.linear_solvers import neumann
from mlo_bench.suite.engine.trees import tree_zeros_like
from mlo_bench.suite.plugins.registry import register


@register("method")
class AmIGO(MatrixFreeSolve):
    name = "amigo"

    @dataclass
    class Config:
        iterations: int = 10
        lr: float = 0.1
        #: the amortisation (AmIGO's point); ``false`` starts every solve from 0
        warm_start: bool = True

        def validate(self) -> None:
            if self.iterations < 1:
                raise ValueError(f"method.iterations must be >= 1 (got {self.iterations})")
            if not self.lr > 0:
                raise ValueError(f"method.lr must be > 0 (got {self.lr})")

    def solve(self, backend, matvec, v, cfg, x0):
        start = x0 if x0 is not None else tree_zeros_like(backend.ops, v)
        return neumann(backend.ops, matvec, v, cfg.iterations - 1, cfg.lr, start)
