"""What the report knows about each task, read from the task's own declarations (``Task.paper``): metric specs,
variants, paper tables, size knob, claims. Nothing here names a task.

A metric no task declares and the runner does not define is *undeclared*: shown in tables without an arrow, never
ranked, plotted or compared.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from mlo_bench.suite.contract.paper import STANDARD_METRICS, MetricSpec, Paper

_STANDARD = {m.name: m for m in STANDARD_METRICS}


def tasks() -> dict[str, type]:
    """Every registered task class by name."""
    from mlo_bench.suite.plugins import registry

    return {name: registry.get("task", name) for name in registry.names("task")}


def paper(task: str) -> Paper:
    """The task's declared :class:`Paper` (an empty one for a task without, or one not registered here)."""
    cls = tasks().get(task)
    return getattr(cls, "paper", None) or Paper()


def default_steps(task: str, task_config: dict) -> int | None:
    """The task's ``default_steps`` for a record's task config (a namespace of it: the classmethods read plain
    knobs such as ``levels``), ``None`` for a task not registered here or a config it cannot read."""
    import types

    cls = tasks().get(task)
    if cls is None:
        return None
    try:
        return int(cls.default_steps(types.SimpleNamespace(**(task_config or {}))))
    except Exception:  # noqa: BLE001 - an old or foreign record: no guard rather than no report
        return None


def spec(task: str | None, metric: str) -> MetricSpec | None:
    """The task's spec of ``metric``, else the runner's standard one, else ``None`` (undeclared)."""
    if task is not None:
        for m in paper(task).metrics:
            if m.name == metric:
                return m
    return _STANDARD.get(metric)


def direction(task: str | None, metric: str) -> str | None:
    """``higher``, ``lower`` or ``None`` (a diagnostic or undeclared metric: never ranked)."""
    s = spec(task, metric)
    return s.direction if s is not None and s.kind == "scalar" else None


def higher_is_better(task: str | None, metric: str) -> bool:
    return direction(task, metric) == "higher"


def arrow(task: str | None, metric: str) -> str:
    return {"higher": "↑", "lower": "↓"}.get(direction(task, metric) or "", "")


def unit(task: str | None, metric: str) -> str:
    s = spec(task, metric)
    return s.unit if s is not None else ""


#: units of metrics read off a clock: a run timed under load makes them untrustworthy (seconds, and rates per second
#: such as ``steps_per_s``)
TIMED_UNITS = ("s", "1/s")


def timed(task: str | None, metric: str) -> bool:
    """Whether ``metric`` is read off a clock (its unit is a time or a rate per second): load distorts it."""
    return unit(task, metric) in TIMED_UNITS


def quality(task: str | None, metrics: list[str]) -> list[str]:
    """The ranked result metrics among ``metrics`` (the task's declared quality metrics first, then outer_loss)."""
    own = [m.name for m in paper(task).metrics if m.quality and m.ranked] if task else []
    ordered = [m for m in own if m in metrics] + [m for m in metrics if m not in own]
    return [m for m in ordered if (s := spec(task, m)) is not None and s.quality and s.ranked]


def ranked(task: str | None, metric: str) -> bool:
    s = spec(task, metric)
    return s is not None and s.ranked


def claims_file(task: str) -> Path | None:
    """The task's claims CSV (``paper.claims``: a file in the ``claims/`` folder beside the task's module)."""
    cls = tasks().get(task)
    name = paper(task).claims
    if cls is None or not name:
        return None
    return Path(inspect.getfile(cls)).resolve().parent / "claims" / name

