"""Hydra callbacks for sweeps: a ledger per sweep, progress after each job, and a closing summary by status.

``on_multirun_start`` (main process) counts the sweep's jobs, creates ``<results_dir>/multirun/<sweep_id>/`` and
exports its path, so every job — in this process or a launcher's worker — appends its outcome to ``ledger.jsonl``
there (see :mod:`mlo_bench.suite.run.job`).
``on_multirun_end`` prints one line counting each status and writes ``summary.json``.

Exit status of a sweep (:func:`sweep_exit_code`, the one ``mlo-bench run -m`` returns, as pytest and benchopt do: a
failure anywhere is non-zero): 1 when some run ended :data:`FAILED` (``diverged``, ``oom``, ``timeout``, ``error``) or
some job did not report; else 3 when some job was ``busy`` (another process runs that config); else 0 — ``ok``, and the
outcomes a sweep plans for, ``unsupported`` (the combination cannot run here, with its reason) and ``skipped`` (over
its ``budget``), like pytest's skips. A sweep with no runs (``seed=range(0)``) is bad input: one line, exit 2, before
any work. A sweep stopped by SIGINT / SIGTERM records the run it stopped (``interrupted``), prints one line
(:func:`stopped`) and exits 130; the same command again resumes it.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mlo_bench.suite.run.ledger import SWEEP_ENV, read, status_counts
from mlo_bench.suite.run.records import write_json_atomic

#: the statuses that make a sweep exit 1 (see the module docstring)
FAILED = ("diverged", "oom", "timeout", "error", "interrupted")
#: what the last sweep of this process ended with (``on_multirun_end``): read by ``mlo-bench run -m``
LAST: dict[str, Any] = {}


def sweep_exit_code(by_status: dict[str, int], missing: int = 0) -> int:
    """A finished sweep's exit status from its counts by status and its jobs that did not report."""
    if missing or any(by_status.get(s) for s in FAILED):
        return 1
    return 3 if by_status.get("busy") else 0


def _sweeps(task_overrides: list[str], sweeper_params: dict[str, Any] | None) -> list[tuple[str, int]]:
    """Each sweep override of a basic-sweeper multirun (as given) with its number of values."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    merged: dict[str, str] = {}
    for key, value in (sweeper_params or {}).items():  # an experiment's ``+bilevel_problem``: the same key as a
        merged[str(key).lstrip("+~")] = f"{key}={value}"  # command line's, which replaces it
    for item in task_overrides:
        merged[item.split("=", 1)[0].lstrip("+~")] = item
    parser = OverridesParser.create()
    given = list(merged.values())
    return [(text, sum(1 for _ in override.sweep_string_iterator()))
            for text, override in zip(given, parser.parse_overrides(given), strict=True)
            if override.is_sweep_override()]


def count_jobs(task_overrides: list[str], sweeper_params: dict[str, Any] | None) -> int:
    """Number of jobs of a basic-sweeper multirun: the product of the sizes of its sweep overrides."""
    total = 1
    for _, size in _sweeps(task_overrides, sweeper_params):
        total *= size
    return total


def _finish(sweep: Path, head: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    meta, rows = read(sweep)
    missing = meta["total"] - len(rows)
    by_status = dict(Counter(r["status"] for r in rows))
    summary = {"total": meta["total"], "reported": len(rows), "missing": missing, "by_status": by_status,
               "start": meta["start"], "end": time.time(), **(extra or {})}
    summary["elapsed_s"] = summary["end"] - meta["start"]
    summary["exit_code"] = summary.get("exit_code", sweep_exit_code(by_status, missing))
    write_json_atomic(sweep / "summary.json", summary)
    LAST.clear()
    LAST.update(summary, line=f"{head}: {len(rows)}/{meta['total']} runs — {status_counts(rows)}")
    return summary


def stopped() -> str | None:
    """After a sweep stopped by a signal: its one line (runs done, counts by status, how to resume), with
    ``summary.json`` written (``interrupted: true``, exit code 130); ``None`` outside a sweep."""
    sweep = os.environ.pop(SWEEP_ENV, None)
    if not sweep:
        return None
    from mlo_bench.suite.run.interrupt import EXIT_CODE

    _finish(Path(sweep), "sweep interrupted", {"interrupted": True, "exit_code": EXIT_CODE})
    return LAST["line"] + "; the same command again resumes it (finished runs are skipped)"


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        params = config.hydra.sweeper.get("params") or {}
        if isinstance(params, DictConfig):
            params = OmegaConf.to_container(params, resolve=True)
        empty = [text for text, size in _sweeps(list(config.hydra.overrides.task), params) if size == 0]
        if empty:  # bad input, found before any work
            print(f"mlo-bench run: error: the sweep has no runs: {empty[0]} sweeps no value; nothing was run",
                  file=sys.stderr, flush=True)
            raise SystemExit(2)
        total = count_jobs(list(config.hydra.overrides.task), params)
        sweep = Path(str(config.hydra.sweep.dir))
        sweep.mkdir(parents=True, exist_ok=True)
        write_json_atomic(sweep / "sweep.json", {"total": total, "start": time.time(), "argv": sys.argv})
        os.environ[SWEEP_ENV] = str(sweep.resolve())
        print(f"[sweep] {total} runs → {config.results_dir}/runs (ledger: {sweep})", file=sys.stderr, flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = os.environ.pop(SWEEP_ENV, None)
        if not sweep:
            return
        summary = _finish(Path(sweep), "sweep finished")
        line = LAST["line"]
        if summary["missing"]:
            line += f"; {summary['missing']} jobs did not report (launcher failure?)"
        if summary["exit_code"] == 1:
            failed = sum(summary["by_status"].get(s, 0) for s in FAILED)
            line += f"; exit 1: {failed} run(s) failed" if failed else "; exit 1"
        LAST["line"] = line
        print(line, flush=True)


__all__ = ["FAILED", "LAST", "SweepCallback", "count_jobs", "stopped", "sweep_exit_code"]
