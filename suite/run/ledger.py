"""A sweep's ledger: one JSON line per finished job, appended by the job itself (a single ``O_APPEND`` write, so
jobs in parallel processes never interleave), and the progress line read back from it.

The sweep's directory travels to every job in the environment (:data:`SWEEP_ENV`, set by the sweep callback in
:mod:`mlo_bench.suite.cli.callbacks`); a job run outside a sweep writes nothing here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mlo_bench.suite.run.records import STATUSES

SWEEP_ENV = "MLO_BENCH_SWEEP_DIR"


def read(sweep: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sweep's ``sweep.json`` (total and start time) and the ledger's rows so far."""
    meta = json.loads((sweep / "sweep.json").read_text())
    ledger = sweep / "ledger.jsonl"
    rows = [json.loads(ln) for ln in ledger.read_text().splitlines() if ln.strip()] if ledger.exists() else []
    return meta, rows


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def status_counts(rows: list[dict[str, Any]]) -> str:
    counts = Counter(r["status"] for r in rows)
    parts = [f"{s} {counts[s]}" for s in STATUSES if counts[s]]
    skipped = sum(1 for r in rows if r.get("skipped"))
    return ", ".join(parts) + (f" ({skipped} resumed from earlier records)" if skipped else "")


def print_progress(sweep: Path) -> None:
    meta, rows = read(sweep)
    done, total = len(rows), meta["total"]
    elapsed = time.time() - meta["start"]
    ran = [r for r in rows if not r.get("skipped")]
    eta = elapsed / len(ran) * (total - done) if ran and done < total else 0.0
    print(f"[sweep] {done}/{total} done — {status_counts(rows)} — elapsed {fmt_duration(elapsed)}, "
          f"ETA {fmt_duration(eta)}", file=sys.stderr, flush=True)


def append(record: dict[str, Any], skipped: bool) -> None:
    """Inside a sweep, append this job's outcome to the sweep's ledger and print the sweep's progress."""
    sweep = os.environ.get(SWEEP_ENV)
    if not sweep:
        return
    line = json.dumps({"run_id": record.get("run_id"), "status": record["status"], "skipped": skipped,
                       "task": record["task"], "backend": record["backend"], "method": record["method"],
                       "seed": record["seed"]}) + "\n"
    path = Path(sweep) / "ledger.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    print_progress(Path(sweep))
