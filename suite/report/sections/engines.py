"""Engines side by side: the same task, seed and batches on every engine — the suite's own backends and the libraries'
(peer engines, whose runs record which code path of their library ran: ``provenance.peer_path``).

Per setting that has a peer run, one row per engine × method (means over seeds): the hypergradient's error against
the task's reference (``hypergrad_rel_error``; ``–`` where the task has none), the time per outer step (the medians of
the inner, hypergradient and outer phases added up), the hypergradient phase alone and its ratio to the fastest of the
suite's engines running the same method, the peak bytes alive during one outer step (counted by the framework, not
the machine's noise) and the worker's peak memory. Runs timed under load are marked ⚠ (see Timing). Every engine ×
method that did not run is listed with its reason (a method a library lacks, a library not installed, a known
failure). Where a peer engine measured a property of its library that differs from the suite (``provenance.peer_notes``,
e.g. a computation done in lower precision and how the adapter handles it) it is listed beside the code paths.
Nothing here names a task or a library: the rows are whatever the records hold.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mlo_bench.suite.report.render import fmt
from mlo_bench.suite.report.render.doc import Bullets, Para, Section, Table, cell
from mlo_bench.suite.report.sections import Context, Rendered

PHASES = ("time_inner_s", "time_hypergrad_s", "time_outer_s")


def peer_paths(records: list[dict[str, Any]]) -> dict[str, str]:
    """``{run_id: the library path that ran}`` for every peer engine's run."""
    out = {}
    for r in records:
        path = (r.get("provenance") or {}).get("peer_path")
        if path:
            out[str(r.get("run_id"))] = str(path)
    return out


def peer_notes(records: list[dict[str, Any]]) -> dict[str, set[str]]:
    """``{engine: the library properties its runs recorded}`` (``provenance.peer_notes``)."""
    out: dict[str, set[str]] = {}
    for r in records:
        note = (r.get("provenance") or {}).get("peer_notes")
        if note:
            out.setdefault(str(r.get("backend")), set()).add(str(note))
    return out


def _mean(g: pd.DataFrame, col: str) -> float:
    if col not in g:
        return math.nan
    vals = pd.to_numeric(g[col], errors="coerce").dropna()
    return float(vals.mean()) if len(vals) else math.nan


def _step_time(g: pd.DataFrame) -> float:
    parts = [_mean(g, c) for c in PHASES]
    parts = [p for p in parts if math.isfinite(p)]
    return sum(parts) if parts else math.nan


def rows(runs: pd.DataFrame, paths: dict[str, str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The measured rows of one setting (dicts) and one line per engine × method that did not run."""
    runs = runs.assign(peer=runs["run_id"].astype(str).map(paths))
    out, missing = [], []
    for (method, backend), g in runs.groupby(["method", "backend"], sort=True):
        ok = g[g["status"] == "ok"]
        if ok.empty:
            first = g.iloc[0]
            missing.append(f"{backend} × {method}: {first['status']} — {fmt.short(str(first.get('reason') or ''))}")
            continue
        out.append({"method": method, "backend": backend, "peer": ok["peer"].dropna().iloc[0]
                    if ok["peer"].notna().any() else None, "n": len(ok),
                    "loaded": bool(ok["loaded"].fillna(False).astype(bool).any()) if "loaded" in ok else False,
                    "error": _mean(ok, "hypergrad_rel_error"), "step": _step_time(ok),
                    "hypergrad": _mean(ok, "time_hypergrad_s"), "compile": _mean(ok, "compile_s"),
                    "live": _mean(ok, "peak_live_bytes"),
                    "memory": _mean(ok, "peak_memory_bytes")})
    fastest: dict[str, float] = {}
    for r in out:
        if r["peer"] is None and math.isfinite(r["hypergrad"]):
            fastest[r["method"]] = min(fastest.get(r["method"], math.inf), r["hypergrad"])
    for r in out:
        base = fastest.get(r["method"], math.nan)
        r["ratio"] = r["hypergrad"] / base if math.isfinite(base) and base > 0 else math.nan
    return out, missing


def table(measured: list[dict[str, Any]]) -> Table:
    header = ["method", "engine", "kind", "runs", "hypergrad_rel_error", "time / outer step", "hypergradient",
              "× suite's fastest", "compile", "peak live / step", "peak memory"]
    body = []
    for r in measured:
        warn = " ⚠" if r["loaded"] else ""
        body.append([cell(r["method"]), cell(r["backend"], bold=r["peer"] is not None),
                     cell("library" if r["peer"] else "suite", tone="" if r["peer"] else "muted"), cell(r["n"]),
                     cell(fmt.value("hypergrad_rel_error", r["error"])),
                     cell(fmt.value("time_total_s", r["step"]) + warn),
                     cell(fmt.value("time_hypergrad_s", r["hypergrad"]) + warn),
                     cell(fmt.ratio(r["ratio"]) if math.isfinite(r["ratio"]) else "–"),
                     cell(fmt.value("compile_s", r["compile"])),
                     cell(fmt.value("peak_live_bytes", r["live"])), cell(fmt.value("peak_memory_bytes", r["memory"]))])
    return Table(header, body, align=["l", "l", "l", "r", "r", "r", "r", "r", "r", "r", "r"])


def sections(settings: list[Any], records: list[dict[str, Any]]) -> list[Section]:
    """The section and one subsection per setting with a peer run; ``[]`` when no record comes from a peer engine."""
    paths = peer_paths(records)
    if not paths:
        return []
    sec = Section("Engines side by side", anchor_id="engines")
    sec.add(Para(" ".join(__doc__.split("\n\n", 1)[1].split()).replace("``", "`")))
    subs, used = [], {}
    for setting in settings:
        runs = setting.runs
        if not runs["run_id"].astype(str).isin(paths).any():
            continue
        measured, missing = rows(runs, paths)
        sub = Section(f"{setting.title} · engines", level=3, anchor_id=f"engines-{setting.anchor}")
        if setting.description:
            sub.add(Para(f"{setting.description}."))
        sub.add(table(measured))
        if missing:
            sub.add(Para("**Not run:**"), Bullets(missing))
        subs.append(sub)
        used.update({r["backend"]: r["peer"] for r in measured if r["peer"]})
    if used:
        sec.add(Para("Library code paths that ran:"), Bullets([f"`{b}`: {p}" for b, p in sorted(used.items())]))
    notes = peer_notes(records)
    if notes:
        sec.add(Para("Library properties the peer engines measured:"),
                Bullets([f"`{b}`: {n}" for b, ns in sorted(notes.items()) for n in sorted(ns)]))
    return [sec, *subs]


def part(ctx: Context) -> Rendered:
    """The engines section and its subsections (nothing when no record comes from a peer engine)."""
    return Rendered(sections(ctx.settings, ctx.records))
