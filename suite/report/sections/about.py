"""How to read the report: the files beside it, what a value means (mean ± std over seeds), how times and memory are
measured, what the hypergradient error is measured against, which metrics are ranked, the load mark."""

from __future__ import annotations

from mlo_bench.suite.report.render.doc import Bullets, Section
from mlo_bench.suite.report.sections import Context, Rendered

NOTES = [
    "Files beside this report: `results.parquet` and `results.csv` (the tidy table: one row per run × metric, "
    "with the task's knobs as `task.<key>` columns), `report.md` (this content in Markdown), `figures/*.png`.",
    "Values are mean ± sample standard deviation over seeds (n = ok seeds); a combination's failed seeds are "
    "counted in its `runs` column and listed, never averaged in.",
    "Timings are medians per run after a warm-up step, compile time apart (`compile_s`); compare them as ratios "
    "within one machine. Peak memory is the run's own (`memory_kind`: `cpu_rss_delta` is page-granular and "
    "noisy for small problems; `cuda_allocated` / `jax_device` are exact).",
    "`hypergrad_rel_error` is measured against the task's closed-form oracle at the exact lower-level "
    "solution (or, without one, against `exact` at the final state), so it isolates the method's error.",
    "Which metrics are results (ranked, plotted), costs or diagnostics (recorded, never ranked) is declared by "
    "each task (`Task.paper.metrics`); ↑ / ↓ say which way is better.",
    "Times marked ⚠ were taken while the machine's load average exceeded its core count; they are left out of "
    "time verdicts.",
    "Metric definitions: `results/README.md`.",
]


def part(ctx: Context) -> Rendered:
    """The closing "How to read this report" section (the same for every report)."""
    return Rendered([Section("How to read this report").add(Bullets(list(NOTES)))])
