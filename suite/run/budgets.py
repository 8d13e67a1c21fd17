"""Run budgets: points of a sweep that would cost too much here are recorded with status ``skipped`` and the reason,
never run (``mlo-bench run`` applies them before starting a run; see :mod:`mlo_bench.suite.run.job`).
Both keys apply to tasks that
declare an integer size knob (``Task.paper.size``: the dimension d of each level) — the chain length is the task's
first declared group knob (``paper.groups``); other tasks are not limited. null: no limit.

- ``budget.max_d_materialised``: a *materialised* path — a method that forms the lower level's Hessian (``exact``) or
  a backend that materialises best-response Jacobians and multiplies them (``naive``, unless
  ``backend.chain=reverse``), i.e. a method class or a configured backend whose ``materialises`` is true — costs
  O(d³) time per hypergradient; such a run with ``task.d`` above this is skipped.
- ``budget.max_dense_gb``: skip a run whose estimated d×d matrices exceed this many GiB: per edge of the chain
  (the chain length − 1, 1 without that knob) two for the task's data (e.g. a quadratic's A_k and B_k) and, on a
  materialised path, three more (Hessian, mixed second derivative, Jacobian), at 8 bytes an entry (the data is
  generated in float64). Time grows with it too: generating d×d data takes O(d³).

The budget is not part of the config hash (it changes no number): a run skipped under one budget is run by the same
command under a larger one, and a run already recorded is never redone.
"""

from __future__ import annotations

from typing import Any

KEYS = ("max_d_materialised", "max_dense_gb")
DEFAULT = {key: None for key in KEYS}


def validate(budget: Any) -> str | None:
    """One line naming the bad key or value of the ``budget`` config node, or ``None``."""
    if budget is None:
        return None
    if not isinstance(budget, dict):
        return f"budget must be a mapping of {', '.join(KEYS)} (got {budget!r})"
    extra = sorted(set(budget) - set(KEYS))
    if extra:
        return f"unknown budget key(s) {extra}; valid: {', '.join('budget.' + k for k in KEYS)}"
    value = budget.get("max_d_materialised")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        return f"budget.max_d_materialised must be a positive integer or null (got {value!r})"
    value = budget.get("max_dense_gb")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not value > 0):
        return f"budget.max_dense_gb must be a positive number or null (got {value!r})"
    return None


def _knob(plan: Any, flat_key: str | None) -> Any:
    """The value of a declared ``task.<knob>`` key in the plan's task config (``None`` when absent)."""
    if not flat_key or not flat_key.startswith("task."):
        return None
    node = plan.task_cfg
    for part in flat_key.split(".")[1:]:
        node = getattr(node, part, None)
    return node


def size(plan: Any) -> int | None:
    """The task's declared size knob's value when it is an integer, else ``None``."""
    paper = getattr(plan.task_cls, "paper", None)
    d = _knob(plan, getattr(paper, "size", None))
    return d if isinstance(d, int) and not isinstance(d, bool) else None


def _chain(plan: Any) -> int:
    groups = getattr(getattr(plan.task_cls, "paper", None), "groups", ()) or ()
    levels = _knob(plan, groups[0]) if groups else None
    return int(levels) if isinstance(levels, int) else 2


def materialised(plan: Any) -> bool:
    """Whether the plan's path forms dense d×d matrices: its method or its configured backend ``materialises``."""
    return bool(plan.method.materialises or plan.backend_cls(plan.backend_cfg).materialises)


def dense_bytes(plan: Any) -> int | None:
    """Estimated bytes of the run's d×d matrices (see the module docstring); ``None`` without a ``d`` knob."""
    d = size(plan)
    if d is None:
        return None
    edges = max(1, _chain(plan) - 1)
    return edges * (2 + (3 if materialised(plan) else 0)) * d * d * 8


def over_budget(plan: Any) -> str | None:
    """The reason the plan exceeds the config's ``budget`` (the run is then recorded as ``skipped``), or ``None``."""
    budget = plan.config.get("budget") or {}
    d = size(plan)
    if d is None:
        return None
    limit = budget.get("max_d_materialised")
    if limit is not None and d > limit and materialised(plan):
        what = plan.method.name if plan.method.materialises else f"backend {plan.backend_cls.name}"
        return (f"over budget: task.d={d} > budget.max_d_materialised={limit} for a materialised path ({what} "
                "forms d×d matrices: O(d³) time per hypergradient)")
    gib = budget.get("max_dense_gb")
    estimate = dense_bytes(plan)
    if gib is not None and estimate is not None and estimate > gib * 2**30:
        return (f"over budget: an estimated {estimate / 2**30:.2f} GiB of d×d matrices (task.d={d}) > "
                f"budget.max_dense_gb={gib:g}")
    return None
