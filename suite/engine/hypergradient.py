"""Reverse-mode hypergradients of the top level: one vector pushed down the dependency chain.

For levels x_0 (top) … x_{L-1} (bottom), following each level's ``parent``
(:func:`mlo_bench.suite.engine.levels.chain`),
each x_k = x_k*(x_{k-1}) for k ≥ 1, and the top loss g(x_0, …, x_{L-1}):

    dg/dx_0 = ∂g/∂x_0 + J_1ᵀ (∂g/∂x_1 + J_2ᵀ (∂g/∂x_2 + … + J_{L-1}ᵀ ∂g/∂x_{L-1}))

where J_kᵀ u is the method's ``response_vjp`` at edge k. No Jacobian is ever materialised here: the cost is one VJP per
edge (O(d²) per level on dense problems), which is the reverse-mode claim of the Betty paper.

A stateful method (``init`` / ``update``, see :class:`mlo_bench.suite.contract.Method`) gets its state per edge and
hands back the next one (:func:`stateful_hypergradient_fn`). A level's loss and its optimizer step, as a method sees
them (:func:`response`), are :mod:`mlo_bench.suite.engine.levels`' ``level_loss`` and ``level_step``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mlo_bench.suite.contract.method import Response
from mlo_bench.suite.contract.task import Level
from mlo_bench.suite.engine import optim, precision
from mlo_bench.suite.engine.levels import chain as chain_order
from mlo_bench.suite.engine.levels import level_loss, level_step
from mlo_bench.suite.engine.trees import tree_add
from mlo_bench.suite.models.batch import BATCH_ID, WHOLE

Tree = Any
ResponseVJP = Callable[[Any, Response, Tree, Any], Tree]
Steps = int | Mapping[str, int]


def steps_of(steps: Steps, level: str) -> int:
    """A level's steps per outer step from an int (every level) or a ``{level: steps}`` mapping."""
    return steps if isinstance(steps, int) else int(steps[level])


def response(backend: Any, level: Level, params: dict[str, Tree], opt_states: dict[str, Tree], batch: Any,
             steps: Steps, method_state: Tree = None, top: Level | None = None, top_batch: Any = None,
             whole: Any = None) -> Response:
    """What a method sees of ``level`` (its edge to ``level.parent``) at this state; ``top`` (the top level, with its
    batch ``top_batch``) gives ``Response.outer_loss`` when it is ``level``'s parent; ``whole`` (the whole data,
    where the run puts it among the batches: :data:`~mlo_bench.suite.models.batch.WHOLE`) the ``whole_*`` losses."""
    ops, parent = backend.ops, level.parent
    return Response(
        loss=level_loss(ops, level, params, batch, parent),
        lower=params[level.name],
        upper=params[parent],
        step=level_step(ops, level, params, batch, parent, backend.grad),
        state=opt_states[level.name],
        unroll_steps=steps_of(steps, level.name),
        level=level.name,
        method_state=method_state,
        optimizer=level.optimizer,
        outer_loss=_outer_loss(ops, level, params, top, top_batch),
        batch_id=_batch_id(batch),
        outer_batch_id=_batch_id(top_batch),
        whole_loss=None if whole is None else level_loss(ops, level, params, whole, parent),
        whole_outer_loss=None if whole is None else _outer_loss(ops, level, params, top, whole),
    )


def _batch_id(batch: Any) -> Any:
    return batch.get(BATCH_ID) if isinstance(batch, Mapping) else None


def _outer_loss(ops: Any, level: Level, params: dict[str, Tree], top: Level | None, top_batch: Any) -> Callable | None:
    """``g(lower, upper)``: the top loss as a function of ``level`` and its parent, when the parent is the top."""
    if top is None or top.name != level.parent:
        return None
    parent = level.parent

    def outer(lower: Tree, upper: Tree) -> Any:
        return top.loss(ops, {**params, level.name: lower, parent: upper}, top_batch)

    return outer


def hypergradient(
    backend: Any,
    response_vjp: ResponseVJP,
    method_cfg: Any,
    levels: list[Level],
    params: dict[str, Tree],
    opt_states: dict[str, Tree],
    batches: dict[str, Any],
    unroll_steps: Steps,
    method_states: Mapping[str, Tree] | None = None,
) -> Tree:
    """The top level's hypergradient (a pytree shaped like its parameters)."""
    ops = backend.ops
    levels = chain_order(levels)
    top = levels[0]
    direct = backend.grad(lambda p: top.loss(ops, p, batches.get(top.name)))(params)
    v = direct[levels[-1].name]
    for level in reversed(levels[1:]):
        state = (method_states or {}).get(level.name)
        r = response(backend, level, params, opt_states, batches.get(level.name), unroll_steps, state, top,
                     batches.get(top.name), batches.get(WHOLE))
        v = tree_add(direct[level.parent], response_vjp(backend, r, v, method_cfg))
    return v


def _chain_and_vjp(backend: Any, method: Any) -> tuple[Callable, ResponseVJP]:
    return backend.chain() or hypergradient, backend.override(method.name) or method.response_vjp


def is_stateful(backend: Any, method: Any) -> bool:
    """Whether ``method`` keeps state across outer steps on ``backend`` (a backend override is stateless)."""
    return method.init is not None and method.update is not None and backend.override(method.name) is None


def init_method_state(backend: Any, method: Any, method_cfg: Any, levels: list[Level],
                      params: dict[str, Tree]) -> dict[str, Tree]:
    """``{level: state}`` for a stateful method (from each lower level's parameters), ``{}`` otherwise."""
    if not is_stateful(backend, method):
        return {}
    by_name = {lv.name: lv for lv in levels}

    def init(lv: Level) -> Tree:
        extra = {"upper": params[lv.parent]} if getattr(method, "init_reads_upper", False) else {}
        if getattr(method, "init_reads_batches", False):
            extra["batches"] = {"lower": lv.batches, "upper": by_name[lv.parent].batches}
        return method.init(backend, params[lv.name], method_cfg, **extra)

    return {lv.name: init(lv) for lv in levels if lv.parent is not None}


def hypergradient_fn(backend: Any, method: Any, method_cfg: Any, levels: list[Level], unroll_steps: Steps) -> Callable:
    """``fn(params, states, batches)`` → the top level's hypergradient, as every run computes it: the backend's own
    chain (``Backend.chain()``) or the reverse-mode one, with the backend's override of the method's response VJP
    (``Backend.override``) or the method's generic ``response_vjp``. ``method`` is a Method instance; a stateful
    method starts from its ``init`` state (cold). Where the top level's optimizer state holds a loss scale S (fp16,
    :mod:`mlo_bench.suite.engine.precision`) the top loss is S·g and the hypergradient divided by S before it is
    returned."""
    chain, response_vjp = _chain_and_vjp(backend, method)

    def fn(params: dict[str, Tree], states: dict[str, Tree], batches: dict[str, Any]) -> Tree:
        scaled, scale = precision.scaled_top(chain_order(levels), states)  # fp16: S·g, the result divided by S
        hg = chain(backend, response_vjp, method_cfg, scaled, params, states, batches, unroll_steps)
        return precision.unscale(hg, scale)

    return fn


def stateful_hypergradient_fn(backend: Any, method: Any, method_cfg: Any, levels: list[Level],
                              unroll_steps: Steps) -> Callable:
    """``fn(params, states, batches, method_state)`` → ``(hypergradient, next method_state)``; for a stateless
    method the state is ``{}`` in and out, and the hypergradient is :func:`hypergradient_fn`'s."""
    if not is_stateful(backend, method):
        plain = hypergradient_fn(backend, method, method_cfg, levels, unroll_steps)
        return lambda params, states, batches, method_state: (plain(params, states, batches), method_state)
    chain, _ = _chain_and_vjp(backend, method)

    def fn(params, states, batches, method_state):
        new: dict[str, Tree] = {}

        def response_vjp(backend_, r: Response, v: Tree, cfg: Any) -> Tree:
            out, new[r.level] = method.update(backend_, r, v, cfg)
            return out

        scaled, scale = precision.scaled_top(chain_order(levels), states)
        hg = chain(backend, response_vjp, method_cfg, scaled, params, states, batches, unroll_steps, method_state)
        return precision.unscale(hg, scale), new

    return fn


def oracle_state(backend: Any, task: Any, top: Any = None) -> tuple[dict[str, Tree], dict[str, Tree], dict[str, Any]]:
    """``(params, states, batches)`` where ``hypergrad_rel_error`` is measured: the top level at ``top`` (default: its
    initial value from the task's seed), every lower level at its exact best response (the task's oracle), fresh
    optimizer states, and the task's whole data as every level's batch."""
    levels = task.levels()
    top_name = chain_order(levels)[0].name
    if top is None:
        import numpy as np

        top = task.init_params(np.random.default_rng(task.seed))[top_name]
    params = backend.tree_asarray(task.oracle().best_response(top))
    states = {lv.name: optim.init(backend.ops, lv.optimizer, params[lv.name]) for lv in levels}
    data = backend.tree_asarray(task.data())
    return params, states, {lv.name: data for lv in levels}
