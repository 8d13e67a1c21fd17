"""Provenance for a record: where and with what the numbers were produced, and how busy the machine was.

Timing fields (read by the report to flag time figures taken on a loaded machine):

- ``loadavg_start`` / ``loadavg_end``: the 1-minute load average when the run started (:func:`start_snapshot`, taken
  first thing in ``runner.execute``) and when its record was written; ``cpu_count``: the logical CPUs.
- ``loadavg_max``: the largest 1-minute load average seen during the run (sampled every :data:`SAMPLE_S` seconds by
  a daemon thread from :func:`start_snapshot` to :func:`collect`); ``loaded``: whether any of the three exceeded
  ``cpu_count`` — a run on a machine busier than its cores (its time figures are not comparable; a warning is printed
  when the record is written).
- ``threads``: the thread settings the numbers depend on — what the run's ``threads`` key applied
  (:mod:`mlo_bench.suite.measure.threads`: ``requested``, ``torch``, ``blas`` pools, ``xla``), ``torch``
  (``torch.get_num_threads()`` when torch is imported), and the environment variables of :data:`THREAD_ENV` that are
  set (OMP / MKL / OpenBLAS threads, XLA and JAX flags).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

_SOURCE = Path(__file__).resolve().parents[2]


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


#: the CPU's instruction-set extensions that decide low-precision speed: where a CPU has ``avx512_bf16`` or
#: ``amx_bf16``, torch's bf16 matmul runs at or above fp32 speed; without, ~50x slower, and fp16 needs
#: ``avx512_fp16`` / ``amx_fp16`` (docs/precision.md measures both kinds of machine)
CPU_FLAGS = ("avx2", "f16c", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")


@functools.lru_cache(maxsize=4)  # read once per process: every record asks
def cpu_flags(path: str = "/proc/cpuinfo") -> tuple[str, ...] | None:
    """Which of :data:`CPU_FLAGS` the CPU has (their order), from the first ``flags`` line; ``None`` where the OS
    does not list them."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return tuple(f for f in CPU_FLAGS if f in have)
    except OSError:
        pass
    return None


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

#: seconds between two samples of the load average while a run is under way
SAMPLE_S = 5.0


class LoadWatch:
    """The largest 1-minute load average seen from ``start()`` to ``stop()``, sampled by a daemon thread (it wakes
    every :data:`SAMPLE_S` seconds for one ``os.getloadavg``: nothing a run's timing notices)."""

    def __init__(self) -> None:
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        value = loadavg()
        if value is not None:
            self.peak = value if self.peak is None else max(self.peak, value)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    def start(self) -> LoadWatch:
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="mlo-bench-loadwatch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self._sample()
        return self.peak


_WATCH: list[LoadWatch] = []
_WARNED: list[bool] = []


def start_snapshot() -> dict[str, Any]:
    """What to know about the machine when a run starts (``{"loadavg_start": …}``); kept for the next
    :func:`collect` in this process, which merges it into the provenance and forgets it. Starts the sampler of
    ``loadavg_max`` (stopped by :func:`collect`)."""
    _START.clear()
    _START["loadavg_start"] = loadavg()
    while _WATCH:
        _WATCH.pop().stop()
    _WATCH.append(LoadWatch().start())
    return dict(_START)


def set_threads(applied: dict[str, Any]) -> None:
    """What the run's ``threads`` key applied (:func:`mlo_bench.suite.measure.threads.apply`), for the next
    :func:`collect`."""
    _START["threads_applied"] = dict(applied)


def set_malloc(applied: int | None) -> None:
    """The glibc mmap threshold the run pinned (:mod:`mlo_bench.suite.measure.host_malloc`; ``None``: left alone),
    for the next :func:`collect` (recorded only when pinned)."""
    if applied is not None:
        _START["malloc_mmap_threshold"] = int(applied)


def busy(p: dict[str, Any]) -> bool | None:
    """Whether a provenance's load average (start, end or the sampled maximum) exceeded its CPU count."""
    loads = [x for x in (p.get("loadavg_start"), p.get("loadavg_end"), p.get("loadavg_max"))
             if isinstance(x, int | float) and not isinstance(x, bool)]
    cpus = p.get("cpu_count")
    if not loads or not isinstance(cpus, int) or cpus < 1:
        return None
    return max(loads) > cpus


def collect(backend_versions: dict[str, str], start: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record's provenance; ``start`` (default: the last :func:`start_snapshot` of this process, consumed)."""
    if start is None:
        start = dict(_START)
        _START.clear()
    start = dict(start)
    applied = start.pop("threads_applied", None)
    peak = _WATCH.pop().stop() if _WATCH else None
    out = {
        **start,
        "loadavg_end": loadavg(),
        "threads": {**threads(), **({"applied": applied} if applied else {})},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": None if cpu_flags() is None else list(cpu_flags()),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        **backend_versions,
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
        "hostname": platform.node(),
    }
    if peak is not None:
        out["loadavg_max"] = max(peak, out["loadavg_end"] or peak)
    out["loaded"] = busy(out)
    if out["loaded"] and not _WARNED:  # once per process (verify and in-process sweeps run many)
        _WARNED.append(True)
        worst = max(x for x in (out.get("loadavg_start"), out["loadavg_end"], out.get("loadavg_max")) if x is not None)
        print(f"warning: load average {worst} exceeded the {out['cpu_count']} CPUs during this run: its time figures "
              "are flagged (provenance.loaded) and left out of time verdicts", file=sys.stderr)
    return out
