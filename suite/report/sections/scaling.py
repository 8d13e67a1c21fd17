"""Scaling: throughput against the data-parallel world size (``parallel.world_size``), per backend × method.

Each row compares runs of one setting that differ only in their world size: ``examples_per_s`` (examples of every
level's batches per outer step over the median step time), the speed-up over the same setting at one rank and the
efficiency (speed-up / N), the time inside collectives per outer step (``time_comm_s``, measured by ranks that are
processes; a mesh's collectives are inside its compiled program) and its share of the mean step (waiting for the
slowest rank included), and the largest per-rank peak memory. Medians over seeds, quiet runs where there are any (⚠:
every run of the row was timed under load). A speed-up is the method's scaling only where each rank had cores of its
own: on a machine whose cores are shared (the load column) the ranks compete for them, and the figure then measures
that contention.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mlo_bench.suite.report.render.doc import Cell, Figure, Para, Section, Table, cell, slug
from mlo_bench.suite.report.sections import Context, Rendered
from mlo_bench.suite.report.tidy import COMPARED_KEYS, setting_key


def _group_keys(records: list[dict]) -> dict[str, str]:
    """run_id → the setting without its world size (the factor this section compares)."""
    return {r.get("run_id"): setting_key(r.get("config") or {}, COMPARED_KEYS + ("parallel",)) for r in records}


def rows(w: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    if "examples_per_s" not in w or "world_size" not in w:
        return pd.DataFrame()
    ok = w[(w["status"] == "ok") & w["examples_per_s"].notna() & w["world_size"].notna()].copy()
    ok["scaling_key"] = ok["run_id"].map(_group_keys(records))
    out = []
    for (task, key, backend, method), g in ok.groupby(["task", "scaling_key", "backend", "method"], sort=True):
        per = {}
        for n, gn in g.groupby("world_size"):
            quiet = gn[~gn["loaded"].fillna(False).astype(bool)]
            use = quiet if len(quiet) else gn
            peaks = [c for c in use.columns if c.startswith("peak_memory_bytes_per_rank.")]
            peak = use[peaks].max(axis=1) if peaks else pd.Series(math.nan, index=use.index)
            if "peak_memory_bytes" in use:
                peak = peak.fillna(use["peak_memory_bytes"])
            # the comm share's denominator is the mean step (as time_comm_s is a mean over the loop's steps)
            mean_step = use["time_total_s"] / use["steps_done"] if {"time_total_s", "steps_done"} <= set(use) \
                else pd.Series(math.nan, index=use.index)
            per[int(n)] = {"eps": float(use["examples_per_s"].median()),
                           "comm": float(use["time_comm_s"].median()) if "time_comm_s" in use else math.nan,
                           "step": float(mean_step.median()), "peak": float(peak.median()),
                           "load": float(use["load"].max()) if "load" in use else math.nan,
                           "loaded_only": quiet.empty, "runs": len(use)}
        if 1 not in per or len(per) < 2:
            continue
        for n, v in sorted(per.items()):
            speed = v["eps"] / per[1]["eps"] if per[1]["eps"] > 0 else math.nan
            out.append({"task": task, "setting": key, "backend": backend, "method": method, "world_size": n, **v,
                        "speedup": speed, "efficiency": speed / n})
    return pd.DataFrame(out)


def _f(x: float, spec: str) -> str:
    return format(x, spec) if isinstance(x, float) and math.isfinite(x) else "–"


def explain(table: pd.DataFrame) -> str:
    """Sentences computed from the table: the best efficiency above one rank, and the load the runs saw."""
    above = table[table["world_size"] > 1]
    if above.empty:
        return ""
    best = above.loc[above["efficiency"].idxmax()]
    parts = [f"Best efficiency above one rank: {best['efficiency']:.2f} ({best['backend']} × {best['method']}, "
             f"N = {int(best['world_size'])})."]
    loaded = table[table["loaded_only"]]
    if len(loaded):
        parts.append(f"{len(loaded)} of {len(table)} rows were timed under load only (max load "
                     f"{table['load'].max():.2f} per core): their speed-ups measure the cores' contention.")
    return " ".join(parts)


def figure(table: pd.DataFrame, path: Path) -> Figure | None:
    """Speed-up and efficiency against the world size, one line per backend × method."""
    from mlo_bench.suite.report.render import figures

    if table.empty:
        return None
    plt, _ = figures.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.8, 3.6))
    colors = figures.palette(sorted(set(table["backend"])))
    styles = dict(zip(sorted(set(table["method"])), ["-", "--", ":", "-."] * 4, strict=False))
    for (task, _key, backend, method), g in table.groupby(["task", "setting", "backend", "method"], sort=True):
        g = g.sort_values("world_size")
        label = f"{task} · {backend} × {method}"
        a.plot(g["world_size"], g["speedup"], marker="o", color=colors[backend], ls=styles[method], label=label)
        b.plot(g["world_size"], g["efficiency"], marker="o", color=colors[backend], ls=styles[method])
    top = int(table["world_size"].max())
    a.plot([1, top], [1, top], color="0.5", lw=1)
    b.axhline(1.0, color="0.5", lw=1)
    a.set_xlabel("world size N")
    b.set_xlabel("world size N")
    a.set_ylabel("speed-up (examples/s over N = 1)")
    b.set_ylabel("efficiency (speed-up / N)")
    fig.legend(*a.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8,
               frameon=False)
    fig.tight_layout()
    return Figure(figures.save(fig, path), "Speed-up and efficiency against the data-parallel world size; the grey "
                                           "lines are ideal scaling.")


def section(ctx: Context) -> tuple[Section, list[Path]] | None:
    table = rows(ctx.wide, ctx.records)
    if table.empty:
        return None
    sec = Section("Scaling", anchor_id="scaling")
    sec.add(Para(__doc__.replace("\n", " ").replace("``", "`").strip()))
    body = [[cell(f"{r['task']} · {r['setting']}"), cell(r["backend"]), cell(r["method"]), cell(int(r["world_size"])),
             cell(_f(r["eps"], ".4g")), cell(_f(r["speedup"], ".2f")),
             Cell(_f(r["efficiency"], ".2f"), tone="warn" if r["efficiency"] < 0.5 else ""),
             cell(_f(1e3 * r["comm"], ".3g")), cell(_f(r["comm"] / r["step"], ".0%") if r["step"] else "–"),
             cell(_f(r["peak"] / 2**20, ".3g")), cell(_f(r["load"], ".2f") + (" ⚠" if r["loaded_only"] else "")),
             cell(int(r["runs"]))] for _, r in table.iterrows()]
    sec.add(Table(["setting", "backend", "method", "N", "examples/s", "speed-up", "efficiency", "comm ms/step",
                   "comm share", "peak MiB/rank", "load/core", "runs"], body,
                  align=["l", "l", "l", "r", "r", "r", "r", "r", "r", "r", "r", "r"]))
    text = explain(table)
    if text:
        sec.add(Para(text))
    written = []
    if ctx.figures is not None:
        from mlo_bench.suite.report.render.figures import safe

        fig = safe(figure, table, ctx.figures / f"{slug('scaling')}.png")
        if fig is not None:
            sec.add(fig)
            written.append(fig.path)
    return sec, written


def part(ctx: Context) -> Rendered:
    """The "Scaling" section and its figure (nothing without runs at two world sizes of one setting)."""
    got = section(ctx)
    return Rendered() if got is None else Rendered([got[0]], got[1])
