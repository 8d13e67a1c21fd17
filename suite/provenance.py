"""Provenance for a record: where and with what the numbers were produced, and how busy the machine was.

Timing fields (read by the report to flag time figures taken on a loaded machine):

- ``loadavg_start`` / ``loadavg_end``: the 1-minute load average when the run started (:func:`start_snapshot`, taken
  first thing in ``runner.execute``) and when its record was written; ``cpu_count``: the logical CPUs.
- ``threads``: the thread settings the numbers depend on — ``torch`` (``torch.get_num_threads()`` when torch is
  imported), and the environment variables of :data:`THREAD_ENV` that are set (OMP / MKL / OpenBLAS threads, XLA
  and JAX flags).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

_SOURCE = Path(__file__).resolve().parent.parent


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The source tree's commit, with ``+dirty`` when it has uncommitted changes; ``None`` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_SOURCE, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_SOURCE, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


#: environment variables that change how many threads a run uses (recorded when set)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS", "JAX_PLATFORMS",
              "JAX_ENABLE_X64")


def loadavg() -> float | None:
    """The 1-minute load average (``None`` where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def threads() -> dict[str, Any]:
    """The thread settings of this process: torch's intra-op threads (when torch is imported) and :data:`THREAD_ENV`."""
    out: dict[str, Any] = {k: os.environ[k] for k in THREAD_ENV if k in os.environ}
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        out["torch"] = int(torch.get_num_threads())
    return out


_START: dict[str, Any] = {}


def start_snapshot() -> dict[str, Any]:
    """What to know about the machine when a run starts (``{"loadavg_start": …}``); kept for the next
    :func:`collect` in this process, which merges it into the provenance and forgets it."""
    _START.clear()
    _START["loadavg_start"] = loadavg()
    return dict(_START)


def collect(backend_versions: dict[str, str], start: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record's provenance; ``start`` (default: the last :func:`start_snapshot` of this process, consumed)."""
    if start is None:
        start = dict(_START)
        _START.clear()
    return {
        **start,
        "loadavg_end": loadavg(),
        "threads": threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        **backend_versions,
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
        "hostname": platform.node(),
    }
