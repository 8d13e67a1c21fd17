"""pytest-benchmark JSON (``pytest benchmarks --benchmark-json=FILE``) → a table and a scaling figure.

Each benchmark's ``extra_info`` carries ``backend``, ``method`` and ``d`` (benchmarks/test_hypergrad_bench.py sets
them); a benchmark without them is listed by name. Ratios are against the ``torch`` backend with the same method and d
(> 1: slower than torch)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from mlo_bench.suite.report.render import figures, fmt
from mlo_bench.suite.report.render.doc import Cell, Para, Section, Table, cell
from mlo_bench.suite.report.sections import Context, Facts, Rendered, rendered
from mlo_bench.suite.run.records import write_atomic

REFERENCE_BACKEND = "torch"
COLUMNS = ["file", "name", "backend", "method", "d", "median", "q1", "q3", "iqr", "mean", "stddev", "min", "rounds",
           "iterations", "machine", "datetime"]


class BenchError(ValueError):
    """A --bench file that is not pytest-benchmark JSON; the message names the file."""


def load(path: Path) -> pd.DataFrame:
    """One row per benchmark of one pytest-benchmark JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot read benchmark file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BenchError(f"{path} is not pytest-benchmark JSON (no 'benchmarks' list; "
                         "write one with pytest --benchmark-json=FILE)")
    machine = data.get("machine_info") or {}
    cpu = (machine.get("cpu") or {}).get("brand_raw") or machine.get("processor") or ""
    rows = []
    for b in data["benchmarks"]:
        stats: dict[str, Any] = b.get("stats") or {}
        extra: dict[str, Any] = b.get("extra_info") or {}
        params: dict[str, Any] = b.get("params") or {}
        d = extra.get("d", params.get("d"))
        rows.append({
            "file": str(path), "name": b.get("name") or b.get("fullname"),
            "backend": extra.get("backend", params.get("backend")), "method": extra.get("method", params.get("method")),
            "d": float(d) if isinstance(d, (int, float)) else math.nan,
            "median": stats.get("median"), "q1": stats.get("q1"), "q3": stats.get("q3"), "iqr": stats.get("iqr"),
            "mean": stats.get("mean"), "stddev": stats.get("stddev"), "min": stats.get("min"),
            "rounds": stats.get("rounds"), "iterations": stats.get("iterations"),
            "machine": cpu, "datetime": data.get("datetime"),
        })
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("median", "q1", "q3", "iqr", "mean", "stddev", "min"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def load_all(paths: list[Path]) -> pd.DataFrame:
    frames = [load(p) for p in paths]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out["ratio_vs_torch"] = ratios(out)
    return out


def ratios(frame: pd.DataFrame) -> pd.Series:
    """median / median of the torch backend with the same method and d (NaN without one)."""
    ref = frame[frame["backend"] == REFERENCE_BACKEND].groupby(["method", "d"])["median"].median()
    out = []
    for _, r in frame.iterrows():
        key = (r["method"], r["d"])
        out.append(r["median"] / ref[key] if key in ref.index and ref[key] > 0 else math.nan)
    return pd.Series(out, index=frame.index, dtype=float)


def section(frame: pd.DataFrame, files: list[Path], figure=None) -> Section:
    sec = Section("Micro-benchmarks (pytest-benchmark)")
    machines = sorted({m for m in frame["machine"].dropna() if m})
    sec.add(Para(f"{len(frame)} benchmarks from " + ", ".join(f"`{f}`" for f in files)
                 + (f" — measured on {', '.join(machines)}" if machines else "")
                 + ". One hypergradient per call; median and interquartile range over rounds. "
                 f"The ratio is against the `{REFERENCE_BACKEND}` backend with the same method and d "
                 "(> 1: slower than torch); compare within one machine only."))
    header = ["method", "d", "backend", "median", "IQR", "rounds", f"× {REFERENCE_BACKEND}"]
    rows = []
    ordered = frame.assign(_m=frame["method"].fillna(""), _b=frame["backend"].fillna(""))
    for _, r in ordered.sort_values(["_m", "d", "_b", "name"], na_position="last").iterrows():
        ratio = r["ratio_vs_torch"]
        tone = "" if not math.isfinite(ratio) or r["backend"] == REFERENCE_BACKEND else (
            "good" if ratio < 0.9 else "bad" if ratio > 1.1 else "")
        d = "" if not math.isfinite(r["d"]) else f"{r['d']:.0f}"
        rows.append([cell(r["method"] if isinstance(r["method"], str) else r["name"]), cell(d),
                     cell(r["backend"] if isinstance(r["backend"], str) else "–"),
                     cell(fmt.value("time_s", r["median"])), cell(fmt.value("time_s", r["iqr"])),
                     cell(r["rounds"] if r["rounds"] is not None else "–"),
                     Cell(fmt.ratio(ratio), tone=tone)])
    sec.add(Table(header, rows, align=["l", "r", "l", "r", "r", "r", "r"]))
    if figure is not None:
        sec.add(figure)
    return sec


def part(ctx: Context) -> Rendered:
    """With --bench: the section and its scaling figure, and ``bench.csv`` (the table, with the ratios) beside the
    report; nothing without."""
    frame = ctx.bench
    if frame is None:
        return Rendered()
    folder = ctx.figures
    fig = figures.safe(figures.bench_scaling, frame, folder / "bench-scaling.png") if folder is not None else None
    sec = section(frame, ctx.bench_files, fig)
    write_atomic(ctx.out / "bench.csv", lambda tmp: frame.to_csv(tmp, index=False))
    return rendered(sec, facts=Facts(bench=len(frame)))
