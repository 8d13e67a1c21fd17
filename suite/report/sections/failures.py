"""The runs that did not end ok, by status, one row each with its reason (and the corrupt record files skipped)."""

from __future__ import annotations

from collections import Counter

from mlo_bench.suite.report.render.doc import Para, Section
from mlo_bench.suite.report.sections import Context, Rendered, tables


def part(ctx: Context) -> Rendered:
    """The "Runs that did not end ok" section (the summary links it)."""
    w = ctx.wide
    not_ok = int((w["status"] != "ok").sum())
    sec = Section("Runs that did not end ok")
    if not_ok:
        counts = tables.status_counts(w)
        sec.add(Para(f"{not_ok} run(s), by status: "
                     + tables.status_text(Counter({k: v for k, v in counts.items() if k != "ok"})) + "."),
                tables.failures_table(w))
    else:
        sec.add(Para("None: every run ended ok."))
    sec.add(*tables.corrupt_block(ctx.corrupt))
    return Rendered([sec])
