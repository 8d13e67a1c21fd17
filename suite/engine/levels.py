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
