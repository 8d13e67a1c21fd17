"""Reverse-mode hypergradients of the top level: one vector pushed down the dependency chain.

For levels x_0 (top) … x_{L-1} (bottom), each x_k = x_k*(x_{k-1}) for k ≥ 1, and the top loss g(x_0, …, x_{L-1}):

    dg/dx_0 = ∂g/∂x_0 + J_1ᵀ (∂g/∂x_1 + J_2ᵀ (∂g/∂x_2 + … + J_{L-1}ᵀ ∂g/∂x_{L-1}))

where J_kᵀ u is the method's ``response_vjp`` at edge k. No Jacobian is ever materialised here: the cost is one VJP per
edge (O(d²) per level on dense problems), which is the reverse-mode claim of the Betty paper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlo_bench.suite import optim
from mlo_bench.suite.contract.method import Response
from mlo_bench.suite.contract.task import Level
from mlo_bench.suite.trees import tree_add

Tree = Any
ResponseVJP = Callable[[Any, Response, Tree, Any], Tree]


def level_loss(ops: Any, level: Level, params: dict[str, Tree], batch: Any, parent: str):
    """``f(θ, λ)``: ``level``'s loss as a function of its own and its parent's parameters (others held fixed)."""

    def loss(lower: Tree, upper: Tree) -> Any:
        return level.loss(ops, {**params, level.name: lower, parent: upper}, batch)

    return loss


def level_step(ops: Any, level: Level, params: dict[str, Tree], batch: Any, parent: str, grad: Callable):
    """One differentiable step of ``level``'s own optimizer, as a function of (θ, state, λ)."""
    loss = level_loss(ops, level, params, batch, parent)
    g = grad(loss)

    def step(lower: Tree, state: Tree, upper: Tree) -> tuple[Tree, Tree]:
        return optim.update(ops, level.optimizer, g(lower, upper), state, lower)

    return step


def hypergradient(
    backend: Any,
    response_vjp: ResponseVJP,
    method_cfg: Any,
    levels: list[Level],
    params: dict[str, Tree],
    opt_states: dict[str, Tree],
    batches: dict[str, Any],
    unroll_steps: int,
) -> Tree:
    """The top level's hypergradient (a pytree shaped like its parameters)."""
    ops = backend.ops
    top = levels[0]
    direct = backend.grad(lambda p: top.loss(ops, p, batches.get(top.name)))(params)
    v = direct[levels[-1].name]
    for k in range(len(levels) - 1, 0, -1):
        level, parent = levels[k], levels[k - 1].name
        batch = batches.get(level.name)
        response = Response(
            loss=level_loss(ops, level, params, batch, parent),
            lower=params[level.name],
            upper=params[parent],
            step=level_step(ops, level, params, batch, parent, backend.grad),
            state=opt_states[level.name],
            unroll_steps=unroll_steps,
        )
        v = tree_add(direct[parent], response_vjp(backend, response, v, method_cfg))
    return v


def hypergradient_fn(backend: Any, method: Any, method_cfg: Any, levels: list[Level], unroll_steps: int) -> Callable:
    """``fn(params, states, batches)`` → the top level's hypergradient, as every run computes it: the backend's own
    chain (``Backend.chain()``) or the reverse-mode one, with the backend's override of the method's response VJP
    (``Backend.override``) or the method's generic ``response_vjp``. ``method`` is a Method instance."""
    response_vjp = backend.override(method.name) or method.response_vjp
    chain = backend.chain() or hypergradient

    def fn(params: dict[str, Tree], states: dict[str, Tree], batches: dict[str, Any]) -> Tree:
        return chain(backend, response_vjp, method_cfg, levels, params, states, batches, unroll_steps)

    return fn


def oracle_state(backend: Any, task: Any, top: Any = None) -> tuple[dict[str, Tree], dict[str, Tree], dict[str, Any]]:
    """``(params, states, batches)`` where ``hypergrad_rel_error`` is measured: the top level at ``top`` (default: its
    initial value from the task's seed), every lower level at its exact best response (the task's oracle), fresh
    optimizer states, and the task's whole data as every level's batch."""
    levels = task.levels()
    if top is None:
        import numpy as np

        top = task.init_params(np.random.default_rng(task.seed))[levels[0].name]
    params = backend.tree_asarray(task.oracle().best_response(top))
    states = {lv.name: optim.init(backend.ops, lv.optimizer, params[lv.name]) for lv in levels}
    data = backend.tree_asarray(task.data())
    return params, states, {lv.name: data for lv in levels}
