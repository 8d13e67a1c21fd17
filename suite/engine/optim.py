"""Optimizers as pure functions of (ops, config, grads, state, params), written once for every backend.

Like optax's ``GradientTransformation``: ``init`` builds the state, ``update`` returns new parameters and state.
Both are differentiable, so ``unroll`` can differentiate through the lower level's own optimizer.
Semantics follow ``torch.optim``: coupled weight decay (``g + wd·p``), heavy-ball momentum without dampening
(``buf = μ·buf + g``, first step ``buf = g``), Adam with bias correction; learning rate divided by ``gamma`` at
each of ``milestones`` (counted in this level's own updates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlo_bench.suite.engine.trees import tree_leaves, tree_map, tree_zeros_like

OPTIMIZERS = ("sgd", "adam")


@dataclass
class OptimizerConfig:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    #: Adam: added to v̂ under the square root (optax's eps_root). 0 = plain Adam; > 0 keeps the step
    #: differentiable where a gradient entry is exactly 0 (sqrt′(0) = ∞ makes ``unroll``'s derivative NaN there)
    eps_root: float = 0.0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1

    def validate(self, key: str) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"{key}.name must be one of {', '.join(OPTIMIZERS)} (got {self.name!r})")
        if not self.lr > 0:
            raise ValueError(f"{key}.lr must be > 0 (got {self.lr})")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"{key}.momentum must be in [0, 1) (got {self.momentum})")
        if self.weight_decay < 0:
            raise ValueError(f"{key}.weight_decay must be >= 0 (got {self.weight_decay})")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"{key}.beta1 and {key}.beta2 must be in [0, 1)")
        if self.eps_root < 0:
            raise ValueError(f"{key}.eps_root must be >= 0 (got {self.eps_root})")


def init(ops: Any, cfg: OptimizerConfig, params: Any) -> dict[str, Any]:
    """The optimizer state for ``params``: an update counter plus momentum / Adam moments."""
    count = ops.sum(ops.zeros_like(tree_leaves(params)[0])) * 0.0
    if cfg.name == "sgd":
        return {"count": count, "momentum": tree_zeros_like(ops, params)}
    return {"count": count, "m": tree_zeros_like(ops, params), "v": tree_zeros_like(ops, params)}


def learning_rate(cfg: OptimizerConfig, count: Any) -> Any:
    """Learning rate at update ``count`` (an array), with the step schedule applied."""
    if not cfg.milestones:
        return cfg.lr
    one = count * 0.0 + 1.0  # in count's dtype: a bare ``bool * 1.0`` would be float32 in torch
    passed = sum((count >= m) * one for m in cfg.milestones)
    return cfg.lr * cfg.gamma**passed


def update(ops: Any, cfg: OptimizerConfig, grads: Any, state: dict[str, Any], params: Any) -> tuple[Any, dict]:
    """One optimizer step: returns ``(new_params, new_state)``. Where ``ops`` has ``optimizer_update`` (a peer
    engine whose library has its own differentiable optimizers: torchopt, higher) the step is that library's, with the
    same semantics and state."""
    custom = getattr(ops, "optimizer_update", None)
    if custom is not None:
        return custom(cfg, grads, state, params)
    if cfg.weight_decay:
        grads = tree_map(lambda g, p: g + cfg.weight_decay * p, grads, params)
    count = state["count"]
    lr = learning_rate(cfg, count)
    if cfg.name == "sgd":
        if cfg.momentum:
            buf = tree_map(lambda b, g: cfg.momentum * b + g, state["momentum"], grads)
        else:
            buf = grads
        new_params = tree_map(lambda p, b: p - lr * b, params, buf)
        return new_params, {"count": count + 1.0, "momentum": buf if cfg.momentum else state["momentum"]}
    t = count + 1.0
    m = tree_map(lambda m_, g: cfg.beta1 * m_ + (1.0 - cfg.beta1) * g, state["m"], grads)
    v = tree_map(lambda v_, g: cfg.beta2 * v_ + (1.0 - cfg.beta2) * g * g, state["v"], grads)
    c1 = 1.0 - cfg.beta1**t
    c2 = 1.0 - cfg.beta2**t
    new_params = tree_map(lambda p, m_, v_: p - lr * (m_ / c1) / (ops.sqrt(v_ / c2 + cfg.eps_root) + cfg.eps),
                          params, m, v)
    return new_params, {"count": t, "m": m, "v": v}
