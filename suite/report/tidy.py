"""Run records → one tidy pandas table: a row per run × metric.

Columns, in order: ``run_id, task, backend, method, seed, status, config_hash, dtype`` (the identity of the run),
``reason`` (one line for a run that did not end ok), ``steps, inner_steps, device, memory_kind``, ``setting`` and
``variant`` (see below), the task's knobs flattened as ``task.<key>`` (nested keys joined by dots, e.g.
``task.outer.lr``), the method's and backend's knobs as ``method.<key>`` / ``backend.<key>``, then ``metric`` and
``value`` (float; ``NaN`` where the record holds ``null``).

- ``setting``: the first 10 hex digits of the config hash without the keys a comparison varies (seed, backend,
  method and their knobs) — runs with the same ``setting`` are the same experiment and can be compared side by side.
- ``variant``: the method's knobs as canonical JSON (``{}`` without knobs), so two configurations of one method in a
  setting are never pooled.
- ``ordering``: the run's step order (a record without the key ran ``inner_first``).
- ``precision``: ``fp32`` | ``bf16`` | ``fp16``, ``/full`` added where the hypergradient ran in full precision
  (:func:`precision_label`); ``precision_setting``: ``setting`` without the precision, so the runs of one experiment
  in several precisions share it.
- ``load``: the larger 1-minute load average (run start, end) over the CPU count (NaN when not recorded);
  ``loaded``: ``load`` > 1 — other work competed for the cores, so the run's times are not comparable.

A run that measured nothing (e.g. ``unsupported`` before any work) keeps one row with ``metric`` and ``value`` empty,
so every record is in the table. Non-numeric metrics are not rows: ``memory_kind`` is a column; lists are spread as
``<key>.<index>``, mappings as ``<key>.<sub>``; text metrics (e.g. a genotype) stay in the record only.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pandas as pd

from mlo_bench.suite.run.records import NON_NUMERIC_KEYS

ID_COLUMNS = ["run_id", "task", "backend", "method", "seed", "status", "config_hash", "dtype"]
RUN_COLUMNS = ["reason", "steps", "inner_steps", "device", "memory_kind", "setting", "variant", "ordering", "load",
               "loaded", "precision", "precision_setting"]
#: config keys that are the compared factors or the repetition, left out of ``setting``
COMPARED_KEYS = ("seed", "backend", "method", "hypergrad_check")


def flatten(obj: Any, prefix: str) -> dict[str, Any]:
    """Nested mappings/lists → ``{prefix.key.sub: scalar}`` (lists of scalars kept as one JSON string)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(obj, (list, tuple)):
        out[prefix] = json.dumps(list(obj), default=str)
    else:
        out[prefix] = obj
    return out


def setting_key(config: dict[str, Any], drop: tuple[str, ...] = COMPARED_KEYS) -> str:
    """Short hash of ``config`` without the compared factors, the seed and keys that change no number."""
    rest = {k: v for k, v in config.items() if k not in drop and k not in NON_NUMERIC_KEYS}
    blob = json.dumps(rest, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def precision_label(value: Any) -> str:
    """A record's ``precision`` as one label: ``fp32`` (also a record written before the key), ``bf16``, ``fp16``,
    with ``/full`` where the hypergradient was computed in full precision."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or value.get("name", "fp32") == "fp32":
        return "fp32"
    return value["name"] + ("/full" if value.get("hypergrad") == "full" else "")


def load_of(provenance: Any) -> float | None:
    """Load per core: the largest 1-minute load average (``loadavg_start``, ``loadavg_end``, the sampled
    ``loadavg_max``) over ``cpu_count``; ``None`` when the record did not measure it."""
    p = provenance if isinstance(provenance, dict) else {}
    loads = [x for x in (p.get("loadavg_start"), p.get("loadavg_end"), p.get("loadavg_max"))
             if isinstance(x, (int, float)) and not isinstance(x, bool)]
    cpus = p.get("cpu_count")
    if not loads or not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        return None
    return max(loads) / cpus


def _mapping(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _knobs(config: dict[str, Any], role: str) -> dict[str, Any]:
    node = config.get(role)
    if not isinstance(node, dict):
        return {}
    return {k: v for k, v in node.items() if k != "name"}


def _numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Metric name → float (None → NaN); strings are left out, lists and mappings spread."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if value is None:
            out[key] = math.nan
        elif isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, (int, float)):
            out[key] = float(value)
        elif isinstance(value, dict):
            out.update(_numeric_metrics({f"{key}.{k}": v for k, v in value.items()}))
        elif isinstance(value, (list, tuple)):
            out.update(_numeric_metrics({f"{key}.{i}": v for i, v in enumerate(value)}))
    return out


def run_row(record: dict[str, Any]) -> dict[str, Any]:
    """The per-run columns (everything but metric/value) of one record."""
    config, metrics = _mapping(record.get("config")), _mapping(record.get("metrics"))
    load = load_of(record.get("provenance"))
    row: dict[str, Any] = {
        "run_id": record.get("run_id"),
        "task": record.get("task"),
        "backend": record.get("backend"),
        "method": record.get("method"),
        "seed": record.get("seed"),
        "status": record.get("status"),
        "config_hash": record.get("config_hash"),
        "dtype": config.get("dtype"),
        "reason": record.get("reason"),
        "steps": config.get("steps"),
        "inner_steps": config.get("inner_steps"),
        "device": _mapping(record.get("provenance")).get("device") or config.get("device"),
        "memory_kind": metrics.get("memory_kind") if isinstance(metrics.get("memory_kind"), str) else None,
        "setting": setting_key(config),
        "variant": json.dumps(_knobs(config, "method"), sort_keys=True, default=str),
        "ordering": str(config.get("ordering", "inner_first")),
        "load": math.nan if load is None else load,
        "loaded": None if load is None else load > 1.0,
        "precision": precision_label(config.get("precision")),
        "precision_setting": setting_key(config, (*COMPARED_KEYS, "precision")),
    }
    for role in ("task", "method", "backend"):
        row.update(flatten(_knobs(config, role), role))
    return row


def tidy(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records → the tidy table described in this module's docstring (sorted by run, then metric)."""
    rows: list[dict[str, Any]] = []
    knob_columns: set[str] = set()
    for record in records:
        base = run_row(record)
        knob_columns.update(k for k in base if k.startswith(("task.", "method.", "backend.")))
        metrics = _numeric_metrics(_mapping(record.get("metrics")))
        if not metrics:
            rows.append({**base, "metric": None, "value": math.nan})
        for metric, value in sorted(metrics.items()):
            rows.append({**base, "metric": metric, "value": value})
    knobs = sorted(c for c in knob_columns if c.startswith("task.")) + sorted(
        c for c in knob_columns if c.startswith("method.")) + sorted(
        c for c in knob_columns if c.startswith("backend."))
    columns = [*ID_COLUMNS, *RUN_COLUMNS, *knobs, "metric", "value"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce").astype("Int64")
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    for col in ("steps", "inner_steps"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    frame["load"] = pd.to_numeric(frame["load"], errors="coerce").astype(float)
    frame["loaded"] = frame["loaded"].astype("boolean")
    for col in knobs:
        frame[col] = _uniform(frame[col])
    return frame.sort_values(["task", "run_id", "metric"], na_position="last", kind="stable").reset_index(drop=True)


def _uniform(col: pd.Series) -> pd.Series:
    """A knob column with one type (Parquet needs it): numeric when every value is, else strings."""
    values = col.dropna()
    if values.empty:
        return col.astype(object)
    if values.map(lambda v: isinstance(v, bool)).all():
        return col.astype("boolean")
    if values.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all():
        return pd.to_numeric(col)
    return col.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)).astype(
        object)


def runs(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run (the tidy table without metric/value)."""
    cols = [c for c in frame.columns if c not in ("metric", "value")]
    return frame.drop_duplicates("run_id")[cols].reset_index(drop=True)


def wide(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run, one column per metric (NaN where not measured)."""
    base = runs(frame).set_index("run_id")
    measured = frame.dropna(subset=["metric"])
    values = measured.pivot_table(index="run_id", columns="metric", values="value", aggfunc="first", dropna=False)
    # one concat, then a copy: a frame built column by column is "highly fragmented" (a pandas PerformanceWarning
    # on every report, and on each column the report adds later)
    out = pd.concat([base.copy(), values.reindex(base.index).copy()], axis=1).copy()
    out.index.name = "run_id"
    return out.reset_index()
