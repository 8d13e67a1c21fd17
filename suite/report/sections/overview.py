"""The report's opening: the answer first. Per task (name order) one figure — its headline quality metric against
time per outer step, memory as marker area, the Pareto front drawn (:mod:`mlo_bench.suite.report.render.frontier`) —
and under it the computed "which one should I use" sentences of its settings (:func:`choice.choices`: time to a
result with compile counted, and from which step count a compiled engine overtakes an eager one).

A task's figure holds the settings the ``choice`` part ranks (its largest, up to ``choice.MAX_SETTINGS``), except
those at another size than the first (the task's declared size knob, ``Task.paper.size``): one size, one panel.
With more than one setting, each point's label names its setting (``cg [B]``).
"""

from __future__ import annotations

import math

import pandas as pd

from mlo_bench.suite.report import specs
from mlo_bench.suite.report.render import figures, frontier
from mlo_bench.suite.report.render.doc import Bullets, Cards, Para, Section, slug
from mlo_bench.suite.report.sections import Context, Rendered, choice, rendered


def points(task_choices: list[choice.Choice]) -> tuple[pd.DataFrame, str, str, str] | None:
    """One task's points (:data:`frontier.COLUMNS`), its quality metric, direction and memory metric; ``None``
    without a ranked quality metric."""
    first = task_choices[0]
    if first.quality is None or first.direction is None:
        return None
    size = specs.paper(first.setting.task).size
    same = [c for c in task_choices if c.quality == first.quality
            and (size is None or c.setting.flat.get(size) == first.setting.flat.get(size))]
    memory = first.memory if all(c.memory == first.memory for c in same) else "peak_memory_bytes"
    many = len(same) > 1
    rows = []
    for c in same:
        for r in c.rows:
            rows.append({"backend": r.backend, "label": r.label + (f" [{c.setting.name}]" if many else ""),
                         "time": r.values.get("time", math.nan), "time_sd": r.spread.get("time", math.nan),
                         "quality": r.values.get("quality", math.nan),
                         "quality_sd": r.spread.get("quality", math.nan),
                         "memory": r.values.get("memory", math.nan) if memory == c.memory else math.nan,
                         "n": r.n, "row": r, "pick": r is c.pick})
    if not rows:
        return None
    on = {id(r) for r in choice.front([p["row"] for p in rows], first.direction)}
    frame = pd.DataFrame(rows)
    frame["front"] = [id(p["row"]) in on for p in rows]
    return frame.drop(columns="row"), first.quality, first.direction, memory


def part(ctx: Context) -> Rendered:
    """The opening section: per task a card with its figure and its sentences."""
    found = choice.choices(ctx.settings)
    sec = Section("Which one to use: quality against cost", anchor_id="answer")
    by_task: dict[str, list[choice.Choice]] = {}
    for c in found:
        by_task.setdefault(c.setting.task, []).append(c)
    cards = []
    folder = ctx.figures
    for task, task_choices in by_task.items():
        card: list = []
        got = points(task_choices) if folder is not None else None
        if got is not None:
            frame, quality, direction, memory = got
            names = ", ".join(c.setting.name for c in task_choices if c.quality == quality)
            fig = figures.safe(frontier.frontier, frame, folder / f"overview-{slug(task)}.png",
                               f"{task} · setting{'s' if ',' in names else ''} {names}", quality, direction, memory)
            if fig is not None:
                card.append(fig)
        lines = [c.sentence[0].upper() + c.sentence[1:] + "." for c in task_choices if c.sentence]
        card.append(Bullets(lines) if lines else Para(f"**{task}**: no quality metric and time to rank on."))
        cards.append(card)
    if not cards:
        sec.add(Para("No setting has two combinations that ended ok: nothing to choose between."))
        return rendered(sec)
    sec.add(Cards(cards))
    sec.add(Para("Per task, the headline quality metric (the task's first declared) against time per outer step; "
                 "marker area = memory; dashed = the quality–time Pareto front; ringed = the recommendation: the "
                 f"soonest to a result (compile + steps × time per step) within {choice.WITHIN:.0%} of the best "
                 "quality. Every combination's numbers: [Which one should I use?](#choice)."))
    return rendered(sec)
