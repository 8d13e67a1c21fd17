"""``bome``: BOME — Bilevel Optimization Made Easy (Ye, Liu, Wright, Stone & Liu, "BOME! Bilevel Optimization Made
Easy: A Simple First-Order Approach", NeurIPS 2022). First order: gradients only, no Hessian-vector product.

With f the lower loss and g the top loss, BOME descends g subject to the value-function constraint
q(x, y) = f(x, y) − f(x, z) ≤ 0, where z ≈ y*(x) is the lower level after a few steps of its own optimizer. Its
own copy y of the lower level and the upper level x move together along one direction per outer step:

    ∇q = (∇_y f(x, y),  ∇_x f(x, y) − ∇_x f(x, z))          (z held fixed)
    φ  = η ‖∇q‖²   (``method.phi=grad_norm``)   or   η q(x, y)   (``method.phi=value``)
    λ  = max(φ − ⟨∇g, ∇q⟩, 0) / ‖∇q‖²                        (norms and products over y and x together)
    y ← y − α (∇_y g(x, y) + λ ∇_y q)                       (α = ``method.lr``)
    d = ∇_x g(x, y) + λ ∇_x q                                the top level's direction, its optimizer's step

z is the run's lower level, trained by its optimizer (the run's ``inner_steps``) and warm-started across outer
steps, as ``f2sa``'s z; benchmark_bilevel's BOME restarts those inner steps from y at each outer step (full batch,
its ``gd_inner``). y is the method state (it starts at the lower level's initial parameters). ``response_vjp``
returns d − ∇_x g(x, z): the chain adds the top loss's own gradient at the current lower level back. Defaults are
benchmark_bilevel's BOME: ``step_size`` 0.1 (α here; x's step is the upper optimizer's, its ``outer_ratio`` 1),
``eta`` 0.5, ``choice_phi`` ``grad_norm``, ``n_inner_steps`` 10 (``+bilevel_solver=bome``). Costs 4 gradients per
edge: (g, f) at (x, y) over both variables, ∇_x f and ∇_x g at (x, z). On an edge below the top one g is the chain's
linearisation (:func:`mlo_bench.suite.engine.implicit.edge_top_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlo_bench.suite.contract import Method
from mlo_bench.suite.engine.implicit import edge_top_loss
from mlo_bench.suite.engine.trees import tree_map, tree_sub, tree_vdot
from mlo_bench.suite.plugins.registry import register

PHI = ("grad_norm", "value")


@register("method")
class BOME(Method):
    name = "bome"

    @dataclass
    class Config:
        lr: float = 0.1
        eta: float = 0.5
        phi: str = "grad_norm"

        def validate(self) -> None:
            if not self.lr > 0:
                raise ValueError(f"method.lr must be > 0 (got {self.lr})")
            if not self.eta > 0:
                raise ValueError(f"method.eta must be > 0 (got {self.eta})")
            if self.phi not in PHI:
                raise ValueError(f"method.phi must be one of {', '.join(PHI)} (got {self.phi!r})")

    def gradients(self, cfg, unroll_steps):
        """(g, f) at (x, y) over both variables, ∇_x f and ∇_x g at (x, z)."""
        return 4

    def init(self, backend, lower, cfg):
        return {"y": tree_map(lambda a: a * 1.0, lower)}

    def _step(self, backend, r, v, cfg, state):
        ops, g, f = backend.ops, edge_top_loss(backend, r, v), r.loss
        y, x, z = state["y"], r.upper, r.lower
        grad_g = backend.grad(lambda p: g(p["y"], p["x"]))({"y": y, "x": x})
        grad_f = backend.grad(lambda p: f(p["y"], p["x"]))({"y": y, "x": x})
        fx_z = backend.grad(lambda lam: f(z, lam))(x)
        gx_z = backend.grad(lambda lam: g(z, lam))(x)
        q = {"y": grad_f["y"], "x": tree_sub(grad_f["x"], fx_z)}
        sq = tree_vdot(ops, q["y"], q["y"]) + tree_vdot(ops, q["x"], q["x"])
        phi = cfg.eta * (sq if cfg.phi == "grad_norm" else f(y, x) - f(z, x))
        dot = tree_vdot(ops, grad_g["y"], q["y"]) + tree_vdot(ops, grad_g["x"], q["x"])
        lmbda = ops.maximum(phi - dot, 0.0 * sq) / ops.maximum(sq, 0.0 * sq + 1e-30)
        y = tree_map(lambda a, gy, qy: a - cfg.lr * (gy + lmbda * qy), y, grad_g["y"], q["y"])
        direction = tree_map(lambda gx, qx, gz: gx + lmbda * qx - gz, grad_g["x"], q["x"], gx_z)
        return direction, {"y": y}

    def update(self, backend, r, v, cfg):
        return self._step(backend, r, v, cfg, r.method_state)

    def response_vjp(self, backend, r, v, cfg):
        return self._step(backend, r, v, cfg, self.init(backend, r.lower, cfg))[0]
