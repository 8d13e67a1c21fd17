"""How a task declares its paper — the companion of ``tasks/_template.py`` (copy the ``paper = ...`` block into your
task class; put its claims CSV at ``tasks/claims/<name>.csv``). Nothing outside the task's own files changes: the
report finds the metrics, variants, tables and claims through ``Task.paper`` (``tests/test_report_pages.py``
registers :class:`TemplateTaskWithPaper` and finds its table in the report).

- ``metrics``: every metric ``metrics()`` returns, with its direction (``None``: a diagnostic, never ranked or
  plotted) and unit; ``quality`` metrics lead the tables and the "which one should I use" section.
- ``variants``: the paper's rows as method + overrides (flat config keys), run with ``variant=NAME`` on any backend.
- ``tables``: rows = variants, columns = the values of one knob for the quality metric, then cost metrics; claims
  are comparisons between variants, judged per backend, paired by seed.
- ``size``: the knob the cost scales with (scaling figures, complexity fits), ``None`` without one; ``size_metrics``:
  the times fitted against it (default the hypergradient's).
- Optional: a table's ``figure`` (metrics drawn by row beside it) and ``references`` (a metric drawn as a dashed line
  on another's panel); ``curves``: columns of ``trace.csv`` (recorded with ``eval_every=N``) drawn against the step.
"""

from __future__ import annotations

from mlo_bench.suite.contract import Comparison, MetricSpec, Paper, PaperTable, TableClaim, Variant
from mlo_bench.tasks._template import TemplateTask

PAPER = Paper(
    metrics=(MetricSpec("val_mse", "lower", doc="validation mean squared error of the lower model"),),
    variants=(
        Variant("implicit", "cg", {"inner_steps": 1}, label="implicit differentiation (CG)"),
        Variant("unrolled", "unroll", {"inner_steps": 1}, label="1 unrolled step"),
    ),
    tables=(PaperTable(
        "Template paper table: implicit vs unrolled", ("implicit", "unrolled"), column="task.n", column_label="n",
        quality="val_mse", cost=("time_total_s",),
        claims=(TableClaim("implicit reaches a lower validation error than unrolled",
                           (Comparison("implicit", "unrolled", "val_mse", "lower", at="each"),)),),
        figure=("val_mse",)),),
    size="task.n", size_label="n", size_metrics=("time_hypergrad_s",),
    curves=("outer_loss",),
)


class TemplateTaskWithPaper(TemplateTask):
    """The template task with its paper declared (see the module docstring)."""

    paper = PAPER
