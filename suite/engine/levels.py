"""The shape of a task's levels — the chain their ``parent`` fields form, each level's steps per outer step — and one
optimizer step of a level (:func:`level_step`), the one builder of it: the inner phase's rounds
(:func:`mlo_bench.suite.engine.step_phases.round_fn`), what a method differentiates through
(``Response.step``, :func:`mlo_bench.suite.engine.hypergradient.response`) and the gradient the floor times
(:mod:`mlo_bench.suite.measure.floor`) are all built here.

Hypergradients are pushed down one chain (:func:`mlo_bench.suite.engine.hypergradient.hypergradient`), so a task's
levels must form one: exactly one top level (``parent=None``), every other level's parent a level of the task, no cycle,
at most one child per level. Anything else is rejected before any work, in one line naming the level
(:class:`LevelError`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mlo_bench.suite.engine import precision

Tree = Any


class LevelError(ValueError):
    """The task's levels do not form a chain the suite can differentiate; the message names the level."""


def chain(levels: list[Any]) -> list[Any]:
    """``levels`` ordered from the top down the chain of ``parent`` links. Raises :class:`LevelError`."""
    if not levels:
        raise LevelError("the task has no levels")
    by_name: dict[str, Any] = {}
    for level in levels:
        if level.name in by_name:
            raise LevelError(f"level {level.name!r} is declared twice")
        by_name[level.name] = level
    tops = [lv.name for lv in levels if lv.parent is None]
    if len(tops) != 1:
        raise LevelError(f"the task needs exactly one top level (parent=None); found {len(tops)}: "
                         f"{', '.join(map(repr, tops)) or 'none'}")
    children: dict[str, str] = {}
    for level in levels:
        if level.parent is None:
            continue
        if level.parent not in by_name:
            raise LevelError(f"level {level.name!r}: parent {level.parent!r} is not a level of the task "
                             f"(levels: {', '.join(by_name)})")
        if level.parent == level.name:
            raise LevelError(f"level {level.name!r} is its own parent")
        if level.parent in children:
            raise LevelError(f"level {level.name!r}: level {level.parent!r} already has a child "
                             f"({children[level.parent]!r}); only chains are supported, not trees")
        children[level.parent] = level.name
    order = [by_name[tops[0]]]
    while order[-1].name in children:
        order.append(by_name[children[order[-1].name]])
    if len(order) != len(levels):
        stray = next(lv.name for lv in levels if lv not in order)
        raise LevelError(f"level {stray!r} is on a cycle of parents that never reaches the top level {tops[0]!r}")
    return order


def steps_per_level(levels: list[Any], inner_steps: int, overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """Optimizer steps per outer step of every lower level: ``level_steps.<name>`` if given, else the level's own
    ``steps``, else the run's ``inner_steps``. Raises :class:`LevelError` for an override naming no lower level."""
    overrides = dict(overrides or {})
    lower = [lv.name for lv in levels if lv.parent is not None]
    unknown = sorted(set(overrides) - set(lower))
    if unknown:
        raise LevelError(f"level_steps.{unknown[0]}: no lower level is named {unknown[0]!r} "
                         f"(lower levels: {', '.join(lower)})")
    out = {}
    for level in levels:
        if level.parent is None:
            continue
        steps = overrides.get(level.name, level.steps if level.steps is not None else inner_steps)
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise LevelError(f"level_steps.{level.name} must be an integer >= 1 (got {steps!r})")
        out[level.name] = steps
    return out


def level_loss(ops: Any, level: Any, params: dict[str, Tree], batch: Any, parent: str) -> Callable:
    """``f(θ, λ)``: ``level``'s loss as a function of its own and its parent's parameters (others held fixed)."""

    def loss(lower: Tree, upper: Tree) -> Any:
        return level.loss(ops, {**params, level.name: lower, parent: upper}, batch)

    return loss


def level_gradient(ops: Any, level: Any, params: dict[str, Tree], batch: Any, parent: str, grad: Callable) -> Callable:
    """``g(θ, λ) = ∂f/∂θ``: the gradient ``level``'s own optimizer steps along, ``grad`` being the backend's (the
    parent's parameters an argument, so a backend sees when they carry a graph)."""
    return grad(level_loss(ops, level, params, batch, parent))


def level_step(ops: Any, level: Any, params: dict[str, Tree], batch: Any, parent: str, grad: Callable) -> Callable:
    """``step(θ, state, λ) -> (θ', state')``: one differentiable step of ``level``'s own optimizer; where ``state``
    holds a loss scale (fp16, :mod:`mlo_bench.suite.engine.precision`) the gradient is taken through the scaled loss,
    unscaled, and a non-finite one skips the step."""
    loss = level_loss(ops, level, params, batch, parent)

    def step(lower: Tree, state: Tree, upper: Tree) -> tuple[Tree, Tree]:
        g = precision.scaled_gradient(grad, loss, state)
        return precision.update(ops, level.optimizer, g(lower, upper), state, lower)

    return step


def lower_step_refusal(method: Any, levels: list[Any], steps: Mapping[str, int], plan: Any) -> str | None:
    """Why a run cannot use ``method`` as it moves or reads the lower level (``Method.steps_lower``,
    ``Method.init_reads_batches``), or ``None``: ``levels`` in chain order, ``steps`` the lower levels' steps per outer
    step, ``plan`` the run's (``world_size``, ``ordering``, ``precision``)."""
    name = method.name
    if getattr(method, "init_reads_batches", False) and any(lv.batches is None for lv in levels):
        return (f"{name} keeps per-minibatch state: it needs each level's data split into fixed minibatches, which "
                "this task does not declare (Level.batches; task.sampler=epoch on benchopt's problems)")
    if not getattr(method, "steps_lower", False):
        return None
    if len(levels) != 2:
        return f"{name} moves the lower level itself: it runs on a task of two levels (this one has {len(levels)})"
    (lower, count), = steps.items()
    opt = levels[1].optimizer
    if opt.name != "sgd" or opt.momentum or opt.weight_decay or opt.milestones:
        return (f"{name} steps the lower level by plain SGD at its optimizer's lr: the task's lower optimizer is "
                f"{opt.name} (momentum {opt.momentum}, weight decay {opt.weight_decay}, milestones {opt.milestones})")
    if count != 1:
        return f"{name} takes one step of the lower level per outer step: inner_steps must be 1 (got {count})"
    if getattr(plan, "world_size", 1) != 1:
        return f"{name} moves the lower level itself: one rank only (parallel.world_size={plan.world_size})"
    if getattr(plan, "ordering", "inner_first") != "inner_first":
        return f"{name} moves the lower level itself: ordering must be inner_first (got {plan.ordering})"
    prec = getattr(plan, "precision", None)
    if prec is not None and getattr(prec, "name", "fp32") == "fp16":
        return f"{name}'s own lower step is not loss-scaled: precision=fp16 is not supported (fp32 and bf16 are)"
    return None


def task_refusal(plan: Any, task: Any) -> str | None:
    """:func:`lower_step_refusal` for ``plan``'s method on ``task``'s levels, before any run (``mlo-bench verify``
    skips such a method as it skips one the task does not support)."""
    levels = chain(task.levels())
    return lower_step_refusal(plan.method, levels, steps_per_level(levels, plan.inner_steps, plan.level_steps), plan)
