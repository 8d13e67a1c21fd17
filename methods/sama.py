"""``sama`` (Choe et al., NeurIPS 2023, "Making Scalable Meta Learning Practical"; Betty's ``sama``): identity base
Jacobian, an Adam-preconditioned vector, and a central finite difference.

With the lower level trained by Adam, the best response's sensitivity is taken through the optimizer's update, not
through H⁻¹: the vector v is multiplied by lr · ∂(m/√s)/∂g, the diagonal derivative of Adam's direction (moments m, s
without bias correction) with respect to the last gradient g,

    u = lr · v · ((1−β₁)β₂ s_old − β₁(1−β₂) g m_old) / (√s + ε)³,
    m_old = (m − (1−β₁)g)/β₁,  s_old = (s − (1−β₂)g²)/β₂,

then, as ``darts``: eps = alpha / (‖u‖ + 1e-15), result (∇_λ f(θ − eps·u) − ∇_λ f(θ + eps·u)) / (2·eps). With SGD the
preconditioner is the identity and ``sama`` is ``darts`` with radius ``alpha`` (Betty's ``sama_adam_alpha``, default
1.0). Before the lower level's first step (Adam ``count`` 0) there is no last gradient: Betty's optimizer state is empty
then, its preconditioner is zero and so is the result; the same here.

One difference from Betty, by construction: Betty keeps the gradient of the last optimizer step (``last_grad``, taken
at θ before that step); a method here sees the state, not the step history, so g is ∇_θ f at the current θ on the
current batch. ``backends/betty.py`` hands Betty that same g, so the two are compared on the same state
(tests/test_peers.py: agreement to 1e-10 in float64 with Adam moments from real steps).

Data parallel (``parallel.world_size``; where each reduction goes, backends/_torch_dist.py): its Adam-preconditioned
vector is built from the replicated optimizer moments (no collective); the two perturbed gradients are averaged as
in darts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlo_bench.suite.contract import Method
from mlo_bench.suite.engine import optim
from mlo_bench.suite.engine.trees import tree_axpy, tree_map, tree_norm, tree_scale, tree_sub
from mlo_bench.suite.plugins.registry import register

Tree = Any


def last_gradient(backend: Any, r: Any) -> Tree:
    """g for the preconditioner: ∇_θ f at the current state, zero before the lower level's first Adam step."""
    ops = backend.ops
    g = backend.grad(lambda th: r.loss(th, r.upper))(r.lower)
    count = r.state["count"]
    started = ops.where(count > 0, count * 0.0 + 1.0, count * 0.0)
    return tree_map(lambda x: x * started, g)


def precondition(backend: Any, r: Any, v: Tree, g: Tree | None = None) -> Tree:
    """SAMA's vector u (the module docstring); ``v`` itself when the lower level's optimizer is not Adam."""
    opt = r.optimizer
    if opt is None or opt.name != "adam":
        return v
    ops = backend.ops
    g = last_gradient(backend, r) if g is None else g
    b1, b2, lr = opt.beta1, opt.beta2, optim.learning_rate(opt, r.state["count"])

    def leaf(vec, grad, m, s):
        m_old = (m - (1.0 - b1) * grad) / b1 if b1 else m * 0.0
        s_old = (s - (1.0 - b2) * grad * grad) / b2
        scale = ((1.0 - b1) * b2 * s_old - b1 * (1.0 - b2) * grad * m_old) / (ops.sqrt(s) + opt.eps) ** 3
        return vec * scale * lr

    return tree_map(leaf, v, g, r.state["m"], r.state["v"])


@register("method")
class Sama(Method):
    name = "sama"

    @dataclass
    class Config:
        alpha: float = 1.0

        def validate(self) -> None:
            if not self.alpha > 0:
                raise ValueError(f"method.alpha must be > 0 (got {self.alpha})")

    def response_vjp(self, backend, r, v, cfg):
        u = precondition(backend, r, v)
        eps = cfg.alpha / (tree_norm(backend.ops, u) + 1e-15)
        grad_upper = backend.grad(lambda lam, th: r.loss(th, lam))
        plus = grad_upper(r.upper, tree_axpy(eps, u, r.lower))
        minus = grad_upper(r.upper, tree_axpy(-eps, u, r.lower))
        return tree_scale(1.0 / (2.0 * eps), tree_sub(minus, plus))
