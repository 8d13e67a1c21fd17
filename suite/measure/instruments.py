"""Measurement primitives: synchronised timers and the run's own peak memory.

CPU memory is the peak resident set size above the run's baseline: on Linux the kernel's high-water mark
(``VmHWM``) is reset by writing ``5`` to ``/proc/self/clear_refs``, so the window starts at ``reset()`` and earlier
allocations of the same process do not inflate it. Where that reset is not possible the figure is reported as
``None`` rather than a number that includes other work.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_STATUS = "/proc/self/status"


def _status_kib(field: str) -> int | None:
    try:
        with open(_STATUS) as fh:
            match = re.search(rf"^{field}:\s+(\d+)\s+kB", fh.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


class CpuPeakRSS:
    """Peak RSS above the baseline taken at :meth:`reset`, in bytes."""

    kind = "cpu_rss_delta"

    def __init__(self) -> None:
        self._baseline: int | None = None
        self._resettable = False

    def reset(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self._resettable = True
        except OSError:
            self._resettable = False
        self._baseline = _status_kib("VmRSS")

    def peak_bytes(self) -> int | None:
        peak = _status_kib("VmHWM")
        if not self._resettable or peak is None or self._baseline is None:
            return None
        return max(0, peak - self._baseline) * 1024


class PhaseTimer:
    """Wall-clock seconds per named phase and per step; the caller synchronises before reading (``block``)."""

    def __init__(self, block: Callable[[Any], Any]) -> None:
        self._block = block
        self.samples: dict[str, list[float]] = {}

    def time(self, phase: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        out = self._block(fn(*args))
        self.samples.setdefault(phase, []).append(time.perf_counter() - start)
        return out

    def median(self, phase: str, skip_warmup: bool = True) -> float | None:
        """Median seconds per call, leaving out the first (warm-up) call when there are later ones."""
        xs = self.samples.get(phase, [])
        if skip_warmup and len(xs) > 1:
            xs = xs[1:]
        return statistics.median(xs) if xs else None

    def summarise(self, metrics: dict[str, Any]) -> None:
        """Into ``metrics``: ``time_<phase>_s`` (medians after warm-up), ``steps_done``, ``steps_per_s`` over
        ``time_total_s``, and ``examples_per_s`` (``examples_per_step`` over the global batch, whatever the
        data-parallel split, per median step)."""
        for phase in ("select", "inner", "hypergrad", "outer", "step"):
            if phase in self.samples:
                metrics[f"time_{phase}_s"] = self.median(phase)
        metrics["steps_done"] = len(self.samples.get("step", []))
        if metrics["steps_done"] and metrics["time_total_s"] > 0:
            metrics["steps_per_s"] = metrics["steps_done"] / metrics["time_total_s"]
        if metrics.get("time_step_s") and metrics.get("examples_per_step") is not None:
            metrics["examples_per_s"] = metrics["examples_per_step"] / metrics["time_step_s"]


class Stages:
    """Wall seconds per stage of one run (set-up, compile, training, each measurement after it, the record's
    commit), accumulated by ``with stages("floor"): ...``; ``seconds`` is the ``{stage: s}`` dict a record keeps
    in ``provenance.stages_s`` and the main job's profile (``benchmarks/profile_main_job.py``) reads. Stages may
    nest (``count_flops`` inside ``compile``; ``count_bytes`` comes after it); nothing is synchronised here: a
    stage that ends in a backend call blocks on its result itself."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        tick = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - tick)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
