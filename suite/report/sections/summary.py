"""The report's summary: how many runs and how they ended (per task × backend, folded), the corrupt record files
skipped, how many runs were timed under load, the partial sweeps (settings with gaps, each linked; folded), why
figures were skipped, and the provenance: the machines, code and software the records came from (folded). The
"which one should I use" sentences lead the report, in the ``overview`` part before this one."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mlo_bench.suite.report.render.doc import Bullets, Details, Para, Section
from mlo_bench.suite.report.sections import Context, Rendered, tables, tasks, timing


def provenance(records: list[dict[str, Any]]) -> list[str]:
    """One line each for the machines, the code (git commits) and the software versions, with run counts; a warning
    line when the timings come from more than one machine."""
    machines: Counter = Counter()
    commits: Counter = Counter()
    versions: Counter = Counter()
    for r in records:
        p = r.get("provenance") or {}
        gpu = f", GPU {p['gpu']}" if p.get("gpu") else ""
        machines[f"{p.get('hostname', '?')}: {p.get('cpu', '?')} ({p.get('cpu_count', '?')} CPUs{gpu})"] += 1
        commits[str(p.get("git_commit", "?"))] += 1
        versions[", ".join(f"{k} {p[k]}" for k in ("python", "torch", "jax") if p.get(k))] += 1
    lines = ["machines: " + "; ".join(f"`{m}` ({n} runs)" for m, n in machines.most_common()),
             "code: " + "; ".join(f"git `{c}` ({n} runs)" for c, n in commits.most_common()),
             "software: " + "; ".join(f"{v or '?'} ({n} runs)" for v, n in versions.most_common())]
    if len(machines) > 1:
        lines.append("**timings come from more than one machine: compare them within a machine only**")
    return lines


def part(ctx: Context) -> Rendered:
    """The "Summary" section."""
    w = ctx.wide
    not_ok = int((w["status"] != "ok").sum())
    sec = Section("Summary")
    sec.add(Para(f"**{len(w)} runs**: {tables.status_text(tables.status_counts(w))}"
                 + (f" — {'the run' if not_ok == 1 else f'the {not_ok} runs'} that did not end ok "
                    f"{'is' if not_ok == 1 else 'are'} listed under "
                    "[Runs that did not end ok](#runs-that-did-not-end-ok)" if not_ok else "")
                 + (f"; **{len(ctx.corrupt)} corrupt record file(s) skipped** (listed below)"
                    if ctx.corrupt else "") + "."))
    sec.add(Details("runs per task × backend, by status", [tables.counts_table(w)]))
    sec.add(*tables.corrupt_block(ctx.corrupt))
    sec.add(Para(timing.summary_line(w)))
    partial = tasks.partial_lines(ctx.settings)
    if partial:
        sec.add(Details(f"partial sweeps: {len(partial)} setting(s) with combinations with fewer seeds than others, "
                        "absent or failed", [Bullets(partial)]))
    else:
        sec.add(Para("Every combination of every setting ran the same seeds and ended ok."))
    if ctx.why_no_figures:
        sec.add(Para(f"Figures skipped: {ctx.why_no_figures}."))
    sec.add(Details("provenance: machines, code, software", [Bullets(provenance(ctx.records))]))
    return Rendered([sec])
