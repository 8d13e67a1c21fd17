"""Tables of the report: run counts, the per-task comparison (backend × method, mean ± std over seeds, best in
bold), what a partial sweep is missing, and the runs that did not end ok."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlo_bench.suite.report import specs, stats
from mlo_bench.suite.report.render import fmt
from mlo_bench.suite.report.render.doc import Bullets, Cell, Para, Table, cell, slug
from mlo_bench.suite.report.tidy import COMPARED_KEYS, flatten
from mlo_bench.suite.run.records import NON_NUMERIC_KEYS, STATUSES

#: the comparison table's standard columns after the task's quality metrics (each shown when some ok run measured it)
TRAILING = ("outer_loss", "hypergrad_rel_error", "time_hypergrad_s", "time_total_s", "peak_memory_bytes",
            "peak_live_bytes")
#: shown only when some run measured a non-zero value
OPTIONAL = ("compile_s", "flops_hypergrad")


@dataclass
class Combo:
    backend: str
    method: str
    variant: str  # method knobs as JSON
    label: str = ""
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # wide rows (one per run)


@dataclass
class Setting:
    task: str
    key: str
    name: str  # "A", "B", …
    runs: pd.DataFrame  # wide rows of every run in this setting
    description: str = ""
    short: str = ""
    flat: dict = field(default_factory=dict)  # the flattened config without the compared keys
    combos: list[Combo] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.task} · setting {self.name}" + (f": {self.short}" if self.short else "")

    @property
    def anchor(self) -> str:
        return slug(f"{self.task}-setting-{self.name}")


def metric_columns(wide: pd.DataFrame) -> list[str]:
    return list(wide.attrs.get("metrics", []))


def key_metrics(wide: pd.DataFrame, task: str | None = None) -> list[str]:
    """The columns of a comparison table, in order, restricted to metrics some ok run measured: the task's declared
    quality metrics, the standard ones (:data:`TRAILING`), the task's other declared ranked metrics, then
    :data:`OPTIONAL` where non-zero. Diagnostics (no direction), lists, text and undeclared metrics are left out."""
    if task is None and len(wide):
        task = str(wide["task"].iloc[0])
    ok = wide[wide["status"] == "ok"]
    present = [m for m in metric_columns(wide) if m in ok and ok[m].notna().any()]
    cols = [m for m in specs.quality(task, present) if m not in TRAILING]
    cols += [m for m in TRAILING if m in present]
    own = [m.name for m in specs.paper(task).metrics if m.ranked] if task else []
    cols += [m for m in own if m in present and m not in cols]
    cols += [m for m in OPTIONAL if m in present and (ok[m].fillna(0) != 0).any()]
    return cols


def status_counts(runs: pd.DataFrame) -> Counter:
    return Counter(runs["status"].fillna("?"))


def status_text(counts: Counter) -> str:
    order = [s for s in STATUSES if counts.get(s)] + sorted(s for s in counts if s not in STATUSES)
    return ", ".join(f"{counts[s]} {s}" for s in order) or "none"


# --------------------------------------------------------------------------------------------------------------
# settings and combinations


def _config_of(path_config: Any) -> dict[str, Any]:
    return path_config if isinstance(path_config, dict) else {}


def split_settings(wide: pd.DataFrame, configs: dict[str, dict]) -> list[Setting]:
    """Per task, the settings (same config except the compared factors and the seed), largest first."""
    out: list[Setting] = []
    for task, task_runs in wide.groupby("task", sort=True, dropna=False):
        groups = sorted(task_runs.groupby("setting", sort=False), key=lambda kv: (-len(kv[1]), kv[0]))
        flat = {key: _setting_config(configs, runs) for key, runs in groups}
        varying = _varying_keys(list(flat.values()))
        for i, (key, runs) in enumerate(groups):
            name = _letters(i)
            setting = Setting(str(task), str(key), name, runs.copy(), flat=flat[key])
            setting.short = ", ".join(f"{k.removeprefix('task.')}={fmt.knob(flat[key].get(k))}"
                                      for k in varying[:4]) + (", …" if len(varying) > 4 else "")
            setting.description = describe(flat[key], varying)
            setting.combos = combos(runs)
            out.append(setting)
    return out


def _letters(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def _setting_config(configs: dict[str, dict], runs: pd.DataFrame) -> dict[str, Any]:
    config = _config_of(configs.get(runs["run_id"].iloc[0]))
    rest = {k: v for k, v in config.items() if k not in COMPARED_KEYS and k not in NON_NUMERIC_KEYS}
    return flatten(rest, "")


def _varying_keys(flats: list[dict[str, Any]]) -> list[str]:
    if len(flats) < 2:
        return []
    keys = sorted(set().union(*flats))
    return [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1 and k != "task.name"]


def describe(flat: dict[str, Any], varying: list[str]) -> str:
    """The setting's knobs a reader needs: the task's own scalar knobs, steps, dtype, and whatever varies."""
    head = [k for k in flat if k.startswith("task.") and k.count(".") == 1 and k != "task.name"]
    head += [k for k in ("steps", "inner_steps", "dtype", "device") if k in flat]
    head += [k for k in varying if k not in head]
    return ", ".join(f"`{k}={fmt.knob(flat[k])}`" for k in head if k in flat)


def combos(runs: pd.DataFrame) -> list[Combo]:
    out = []
    for (backend, method, variant), group in runs.groupby(["backend", "method", "variant"], sort=True, dropna=False):
        out.append(Combo(str(backend), str(method), str(variant), runs=group))
    by_method = Counter((c.backend, c.method) for c in out)
    for c in out:
        knobs = json.loads(c.variant) if c.variant and c.variant != "nan" else {}
        c.label = c.method
        if by_method[(c.backend, c.method)] > 1 and knobs:
            c.label += " (" + ", ".join(f"{k}={fmt.knob(v)}" for k, v in sorted(knobs.items())) + ")"
    return out


# --------------------------------------------------------------------------------------------------------------
# the comparison table


def comparison(setting: Setting, metrics: list[str]) -> Table:
    """Rows backend × method, columns the key metrics as mean ± std (n) over ok seeds; best per column in bold."""
    summary: dict[tuple[int, str], tuple[float, float, int]] = {}
    for i, combo in enumerate(setting.combos):
        ok = combo.runs[combo.runs["status"] == "ok"]
        for m in metrics:
            summary[(i, m)] = stats.mean_std(ok[m].tolist() if m in ok else [])
    best: dict[str, str] = {}  # metric -> the best mean as displayed (ties in display are all bold)
    task = setting.task
    for m in metrics:
        means = [summary[(i, m)][0] for i in range(len(setting.combos)) if summary[(i, m)][2]]
        if len(means) >= 2 and specs.direction(task, m):
            best[m] = fmt.value(m, max(means) if specs.higher_is_better(task, m) else min(means))
    header = ["backend", "method", "runs"] + [f"{m} {specs.arrow(task, m)}".rstrip() for m in metrics]
    rows = []
    for i, combo in enumerate(setting.combos):
        counts = status_counts(combo.runs)
        tone = "" if set(counts) == {"ok"} else ("bad" if not counts.get("ok") else "warn")
        row = [cell(combo.backend), cell(combo.label), cell(status_text(counts), tone=tone)]
        busy = bool(ok_loaded(combo.runs).any())
        for m in metrics:
            mean, std, n = summary[(i, m)]
            warn = busy and specs.timed(task, m)
            row.append(Cell(fmt.mean_std(m, mean, std, n) + (" ⚠" if warn and n else ""),
                            bold=bool(n) and fmt.value(m, mean) == best.get(m), tone="warn" if warn and n else ""))
        rows.append(row)
    caption = ("mean ± sample std (number of ok seeds) over the runs that ended ok; ↓ lower is better, "
               "↑ higher is better (no arrow: not ranked); the best mean per column is in bold; ⚠ = some of the "
               "times were taken while the load average exceeded the core count.")
    return Table(header, rows, align=["l", "l", "l"] + ["r"] * len(metrics), caption=caption)


def ok_loaded(runs: pd.DataFrame) -> pd.Series:
    """Per ok run: whether it was timed under load (False where not recorded)."""
    ok = runs[runs["status"] == "ok"]
    return ok["loaded"].fillna(False).astype(bool) if "loaded" in ok else pd.Series(False, index=ok.index)


def coverage(setting: Setting) -> list[str]:
    """What a partial sweep is missing: absent backend × method cells, seeds one combination lacks, failures."""
    notes = []
    seeds_all = sorted({int(s) for s in setting.runs["seed"].dropna()})
    backends = sorted({c.backend for c in setting.combos})
    labels = sorted({c.label for c in setting.combos})
    present = {(c.backend, c.label) for c in setting.combos}
    if len(backends) > 1:
        for b in backends:
            for m in labels:
                if (b, m) not in present:
                    notes.append(f"{b} × {m}: not run")
    for c in setting.combos:
        seeds = Counter(int(s) for s in c.runs["seed"].dropna())
        missing = [s for s in seeds_all if s not in seeds]
        if missing:
            notes.append(f"{c.backend} × {c.label}: {len(seeds)} of {len(seeds_all)} seeds — no run for seed "
                         + ", ".join(map(str, missing)))
        twice = [s for s, k in seeds.items() if k > 1]
        if twice:
            notes.append(f"{c.backend} × {c.label}: seed {', '.join(map(str, sorted(twice)))} ran more than once "
                         "(all runs are pooled)")
        bad = c.runs[c.runs["status"] != "ok"]
        for _, r in bad.iterrows():
            notes.append(f"{c.backend} × {c.label}, seed {r['seed']}: **{r['status']}** — {fmt.short(r['reason'], 90)}")
    return notes


# --------------------------------------------------------------------------------------------------------------
# counts and failures


def counts_table(runs: pd.DataFrame) -> Table:
    """Runs per task × backend by status."""
    statuses = [s for s in STATUSES if (runs["status"] == s).any()]
    statuses += sorted(set(runs["status"].dropna()) - set(STATUSES))
    header = ["task", "backend", "runs", *statuses]
    rows = []
    for (task, backend), g in runs.groupby(["task", "backend"], sort=True, dropna=False):
        counts = status_counts(g)
        row = [cell(task), cell(backend), cell(len(g))]
        for s in statuses:
            k = counts.get(s, 0)
            row.append(cell(k or "", tone="" if s == "ok" or not k else "bad"))
        rows.append(row)
    return Table(header, rows, align=["l", "l"] + ["r"] * (len(header) - 2))


def failures_table(runs: pd.DataFrame) -> Table:
    bad = runs[runs["status"] != "ok"].sort_values(["task", "backend", "method", "seed", "run_id"])
    header = ["status", "task", "backend", "method", "seed", "setting", "reason", "run_id"]
    rows = []
    for _, r in bad.iterrows():
        rows.append([cell(r["status"], tone="bad"), cell(r["task"]), cell(r["backend"]), cell(r["method"]),
                     cell(r["seed"]), cell(r.get("setting_name", "")), cell(fmt.short(r["reason"], 200)),
                     cell(f"`{r['run_id']}`")])
    return Table(header, rows)


def corrupt_block(corrupt: list[str]) -> list:
    if not corrupt:
        return []
    return [Para(f"**{len(corrupt)} record file(s) could not be read and were skipped:**"),
            Bullets([f"`{c}`" for c in corrupt])]


# --------------------------------------------------------------------------------------------------------------
# scaling with the problem size

def scaling_groups(settings: list[Setting]) -> list[list[Setting]]:
    """Settings of one task that differ only in the task's declared size knob (``paper.size``; at least two sizes),
    as groups."""
    groups: dict[tuple[str, str], list[Setting]] = {}
    for s in settings:
        key = specs.paper(s.task).size
        if key is None or key not in s.flat:
            continue
        rest = json.dumps({k: v for k, v in s.flat.items() if k != key}, sort_keys=True, default=str)
        groups.setdefault((s.task, rest), []).append(s)
    out = []
    for g in groups.values():
        key = specs.paper(g[0].task).size
        if len({s.flat[key] for s in g}) >= 2:
            out.append(sorted(g, key=lambda s: s.flat[key]))
    return out


def scaling_table(group: list[Setting], metric: str = "time_hypergrad_s") -> Table:
    """Per backend × method: the sizes run and the log–log slope of ``metric`` in the size knob, 95% interval."""
    key = str(specs.paper(group[0].task).size)
    runs = pd.concat([s.runs for s in group], ignore_index=True)
    ok = runs[(runs["status"] == "ok")] if metric in runs else runs.iloc[0:0]
    rows = []
    for (backend, method), g in ok.groupby(["backend", "method"], sort=True):
        g = g[g[metric].notna()]
        if g.empty:
            continue
        slope, lo, hi, n = stats.loglog_slope(g[key].astype(float).tolist(), g[metric].astype(float).tolist())
        sizes = sorted({int(v) for v in g[key]})
        interval = f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else ""
        rows.append([cell(backend), cell(method), cell(", ".join(map(str, sizes))),
                     cell(f"{slope:.2f}{interval}" if math.isfinite(slope) else "–"), cell(n)])
    return Table(["backend", "method", key, f"slope of log {metric} in log {key.removeprefix('task.')}", "runs"],
                 rows, align=["l", "l", "l", "r", "r"],
                 caption="Least-squares slope over every ok run (95% interval with at least three sizes): 1 = "
                         "linear, 2 = square, 3 = cubic growth. Small sizes are dominated by fixed overheads, "
                         "which pulls slopes down.")
