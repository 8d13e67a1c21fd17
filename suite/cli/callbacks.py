"""Hydra callbacks for sweeps: a ledger per sweep, progress after each job, and a closing summary by status.

``on_multirun_start`` (main process) counts the sweep's jobs, creates ``<results_dir>/multirun/<sweep_id>/`` and
exports its path, so every job — in this process or a launcher's worker — appends its outcome to ``ledger.jsonl``
there (see :mod:`mlo_bench.suite.run.job`).
``on_multirun_end`` prints one line counting each status and writes ``summary.json``.
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


def count_jobs(task_overrides: list[str], sweeper_params: dict[str, Any] | None) -> int:
    """Number of jobs of a basic-sweeper multirun: the product of the sizes of its sweep overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    merged: dict[str, str] = {}
    for key, value in (sweeper_params or {}).items():
        merged[str(key)] = f"{key}={value}"
    for item in task_overrides:
        merged[item.split("=", 1)[0].lstrip("+~")] = item
    parser = OverridesParser.create()
    total = 1
    for override in parser.parse_overrides(list(merged.values())):
        if override.is_sweep_override():
            total *= sum(1 for _ in override.sweep_string_iterator())
    return total


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        params = config.hydra.sweeper.get("params") or {}
        if isinstance(params, DictConfig):
            params = OmegaConf.to_container(params, resolve=True)
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
        meta, rows = read(Path(sweep))
        missing = meta["total"] - len(rows)
        line = f"sweep finished: {len(rows)}/{meta['total']} runs — {status_counts(rows)}"
        if missing:
            line += f"; {missing} jobs did not report (launcher failure?)"
        print(line, flush=True)
        write_json_atomic(Path(sweep) / "summary.json", {
            "total": meta["total"], "reported": len(rows), "missing": missing,
            "by_status": dict(Counter(r["status"] for r in rows)), "elapsed_s": time.time() - meta["start"],
        })


__all__ = ["SweepCallback", "count_jobs"]
