"""Timing you can trust: which runs were timed on a loaded machine, and how much repeated runs' times spread.

A run is *loaded* when its 1-minute load average at start or end exceeded the CPU count (``provenance.loadavg_*``,
``cpu_count``; column ``loaded`` of the tidy table): other processes competed for the cores, so its wall times say
more about the machine than about the method. Such runs are marked ⚠ wherever times are shown and left out of time
verdicts (paper tables, claims). The spread table gives, per task × backend × method, the coefficient of variation
(std / mean) of ``time_hypergrad_s`` over repeated runs of one setting (seeds), quiet runs only where there are any.
"""

from __future__ import annotations

import math

import pandas as pd

from mlo_bench.suite.report import stats
from mlo_bench.suite.report.render import fmt
from mlo_bench.suite.report.render.doc import Bullets, Cell, Para, Section, Table, cell
from mlo_bench.suite.report.sections import Context, Facts, Rendered

METRIC = "time_hypergrad_s"
#: a spread above this coefficient of variation is flagged
NOISY_CV = 0.25


def flagged(w: pd.DataFrame) -> pd.DataFrame:
    return w[w["loaded"].fillna(False).astype(bool)]


def summary_line(w: pd.DataFrame) -> str:
    """One line for the report's summary: how many runs were timed under load, how many did not record it."""
    busy, unknown = len(flagged(w)), int(w["loaded"].isna().sum())
    parts = [f"**{busy} of {len(w)} runs were timed under load** (load average above the core count; ⚠ in tables, "
             "left out of time verdicts — see [Timing](#timing))" if busy else
             f"no run was timed under load ({len(w) - unknown} measured)"]
    if unknown:
        parts.append(f"{unknown} record(s) predate load measurement (their times are used, unflagged)")
    return "; ".join(parts) + "."


def section(w: pd.DataFrame) -> Section:
    sec = Section("Timing", anchor_id="timing")
    sec.add(Para(__doc__.split("\n\n", 1)[1].replace("\n", " ").replace("``", "`")))
    busy = flagged(w)
    if len(busy):
        items = [f"`{r['run_id']}` ({r['task']} · {r['backend']} × {r['method']}, seed {r['seed']}): load "
                 f"{r['load']:.2f} per core" for _, r in busy.sort_values("load", ascending=False).head(30).iterrows()]
        if len(busy) > 30:
            items.append(f"… and {len(busy) - 30} more")
        sec.add(Para(f"**{len(busy)} run(s) timed under load:**"), Bullets(items))
    rows = []
    ok = w[(w["status"] == "ok")] if METRIC in w else w.iloc[0:0]
    for (task, setting, backend, method, _variant), g in ok.groupby(
            ["task", "setting_name", "backend", "method", "variant"], sort=True, dropna=False):
        quiet = g[~g["loaded"].fillna(False).astype(bool)]
        use = quiet if len(quiet) >= 2 else g
        mean, std, n = stats.mean_std(use[METRIC].tolist())
        if n < 2:
            continue
        cv = std / mean if mean > 0 else math.nan
        rows.append([cell(task), cell(setting), cell(backend), cell(method), cell(n),
                     cell(fmt.mean_std(METRIC, mean, std, n)),
                     Cell(f"{cv:.0%}" if math.isfinite(cv) else "–", tone="warn" if cv > NOISY_CV else ""),
                     cell(f"{len(g) - len(quiet)}" if len(g) > len(quiet) else "")])
    if rows:
        sec.add(Para(f"Spread of `{METRIC}` over repeated runs (seeds) of each combination; CV above "
                     f"{NOISY_CV:.0%} is highlighted:"),
                Table(["task", "setting", "backend", "method", "runs", "mean ± std", "CV", "loaded (left out)"],
                      rows, align=["l", "l", "l", "l", "r", "r", "r", "r"]))
    return sec


def part(ctx: Context) -> Rendered:
    """The "Timing" section; how many runs were timed under load goes to the command's closing line."""
    return Rendered([section(ctx.wide)], facts=Facts(loaded=len(flagged(ctx.wide))))
