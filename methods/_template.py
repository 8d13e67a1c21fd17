"""Template for a new hypergradient method: copy to ``methods/<name>.py`` and fill in.

That file is the whole plugin: it is discovered, registered, given a Hydra option ``method=<name>`` (its ``Config``
fields become ``method.<field>`` keys) and covered by the contract tests automatically.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.contract import Method
from mlo_bench.suite.engine.implicit import hessian_matvec, mixed_vjp  # noqa: F401 - the shared implicit-function rule
from mlo_bench.suite.plugins.registry import register  # noqa: F401


# @register("method")   # uncomment in the copy
class TemplateMethod(Method):
    name = "template"
    # Capabilities, where the method has them (defaults and meaning: mlo_bench.suite.contract.Method): unrolls,
    # computes_hypergradient, materialises, gradients(cfg, unroll_steps), init / update (method state),
    # init_reads_upper, steps_lower (the method moves the lower level itself), init_reads_batches.

    @dataclass
    class Config:
        iterations: int = 5

        def validate(self) -> None:
            if self.iterations < 1:
                raise ValueError(f"method.iterations must be >= 1 (got {self.iterations})")

    def response_vjp(self, backend, r, v, cfg):
        """Return ≈ (dθ*/dλ)ᵀ v, shaped like ``r.upper``. See :class:`mlo_bench.suite.contract.method.Response`.

        Use only ``backend`` (grad/vjp/jvp/hvp/solve) and ``backend.ops`` so the method runs on every backend.
        """
        raise NotImplementedError
