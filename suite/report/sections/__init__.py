"""The report's sections, and what a section is.

A **part** of the report is one function ``part(ctx: Context) -> Rendered`` (:data:`Part`): it reads the
:class:`Context` — the records, the runs as one wide table and their settings, where the report goes, whether figures
are drawn, the --bench results — and returns the document sections it contributes, in order (zero, one or several
:class:`~mlo_bench.suite.report.render.doc.Section`), the figure files it wrote, and :class:`Facts` for the command's
closing line. A part reads the context only, never another part's result, so each can be called alone; it never
changes the context (copy a table before adding to it). It may write its own files into ``ctx.out`` (a CSV beside the
report) and its figures into ``ctx.figures``, and draws none when that is ``None``.
:mod:`mlo_bench.suite.report.build` makes the context and assembles the report from its ordered list of parts
(``build.PARTS``): the report is their sections, in that order.

Parts, in report order: ``overview`` (the answer first: per task its quality-versus-cost figure and the choice
sentences), ``summary``, ``choice`` ("which one should I use": every combination's numbers), ``tasks`` (each task's
settings and size scaling), ``bench`` (pytest-benchmark), ``complexity`` (the O(d²)/O(d³) size sweep), ``engines``
(peer engines side by side), ``floor``, ``precision`` (each method's hypergradient in bf16 / fp16 against fp32),
``memory`` (counted bytes against model size, a fitted model per method and precision, the largest model per GPU),
``papers`` (declared paper tables), ``curves`` (trace metrics), ``convergence`` (solvers' trace metrics against time
and oracle calls, ranked), ``claims``, ``timing``, ``failures`` (runs that did not end ok) and ``about`` (how to read
the report). The
other modules here are their helpers: ``tables`` (settings, comparison tables, coverage), ``complexity_fit`` and
``complexity_gap`` (the fit and the wall-time/FLOP gap) and ``paper_figures`` (a paper table's figure).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from mlo_bench.suite.report.render.doc import Cards, Details, Figure, Section

if TYPE_CHECKING:
    import pandas as pd

    from mlo_bench.suite.report.sections.tables import Setting

#: the figures' folder under the report's
FIGURE_DIR = "figures"


@dataclass(frozen=True)
class Context:
    """What every part reads; made once per report by :func:`mlo_bench.suite.report.build.context`."""

    #: every readable record, as read (``_path``: the record.json it came from; a run's trace.csv sits beside it)
    records: list[dict[str, Any]]
    #: one row per run (the tidy table widened): ids, status, metrics, ``task.<key>`` knobs, ``loaded``,
    #: ``task_variant`` and ``setting_name``; ``attrs["metrics"]``: every metric name of the tidy table
    wide: pd.DataFrame
    #: per task (in name order), its settings, largest first
    settings: list[Setting]
    #: the report's folder
    out: Path
    #: unreadable record files (``path: reason``), skipped
    corrupt: list[str] = field(default_factory=list)
    #: why figures are not drawn (``None``: they are)
    why_no_figures: str | None = None
    #: the --bench results, one row per benchmark (``None`` without --bench) and the files they came from
    bench: pd.DataFrame | None = None
    bench_files: list[Path] = field(default_factory=list)

    @property
    def figures(self) -> Path | None:
        """Where figures go (``out/figures``), or ``None`` when they are not drawn."""
        return None if self.why_no_figures else self.out / FIGURE_DIR


class Facts(TypedDict, total=False):
    """What a part tells the command's closing line (each key from at most one part)."""

    choices: list[str]  # the "which one should I use" sentences
    claims: Counter[str]  # paper claims by verdict
    complexity: str | None  # the O(d³) → O(d²) claim's verdict (the records hold a size sweep)
    bench: int  # benchmarks read from --bench
    loaded: int  # runs timed under load


@dataclass
class Rendered:
    """A part's contribution: its document sections in order, the figure files it wrote, its facts."""

    sections: list[Section] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    facts: Facts = field(default_factory=Facts)


#: a part of the report (the contract above)
Part = Callable[[Context], Rendered]


def rendered(*sections: Section | None, facts: Facts | None = None) -> Rendered:
    """The usual result: ``sections`` (``None`` left out) and, as the figures written, the ones they show."""
    kept = [s for s in sections if s is not None]
    shown = [f.path for s in kept for f in figures_in(s.blocks)]
    return Rendered(kept, shown, facts or Facts())


def figures_in(blocks: list) -> list[Figure]:
    """Every figure among ``blocks``, folded (:class:`Details`) or in :class:`Cards` included, in order."""
    out = []
    for b in blocks:
        if isinstance(b, Figure):
            out.append(b)
        elif isinstance(b, Details):
            out += figures_in(b.blocks)
        elif isinstance(b, Cards):
            out += [f for card in b.cards for f in figures_in(card)]
    return out
