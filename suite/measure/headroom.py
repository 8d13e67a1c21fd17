"""A run whose counted peak cannot fit in the memory its device has free is refused before its first step, as
``oom`` with both figures, instead of being killed by the kernel mid-sweep (``memory_guard``, default true).

The loop counts ``peak_live_bytes`` (the bytes alive at one outer step's peak beyond its inputs: torch at allocator
level, on fake tensors at scale; jax from XLA's memory analysis) before it trains. That count needs no memory of its
size, so it can be compared with what is free now: the device's free bytes where the backend says
(``Backend.free_memory_bytes``: torch's ``cuda.mem_get_info``, jax's ``bytes_limit − bytes_in_use``), else, on CPU,
the host's ``MemAvailable`` (/proc/meminfo: free memory plus what the kernel can reclaim). The inputs (parameters and
optimizer states) are already allocated at that point, so they are not counted twice. A peak above the free memory
raises :class:`PredictedOOM`, a ``MemoryError``: the status is ``oom`` (suite/run/execute.py), the record keeps the
counted figures, and an in-process sweep (``isolate=false``) goes on to its next point.

Why: ``+experiment=memory_scaling`` runs in one process, and a run the kernel's OOM killer ends takes the whole
sweep with it (at BERT-base × unroll-4 in fp32 it lost 26 points, 2026-12-07). That case the guard did not catch:
its count, 13.4 GiB, was under the 20.8 GiB free, and the process outgrew it because glibc kept freed memory
(fixed by :mod:`mlo_bench.suite.measure.host_malloc`). The guard catches only what the count predicts; a peak under
the free memory can still fail on fragmentation or on another process's growth. ``memory_guard=false`` turns it
off (to watch a run swap, say).
"""

from __future__ import annotations

from typing import Any

MEMINFO = "/proc/meminfo"


class PredictedOOM(MemoryError):
    """The counted peak of one outer step exceeds the memory free on the run's device."""


def host_available_bytes(path: str | None = None) -> int | None:
    """The host's ``MemAvailable`` in bytes (from ``path``, default :data:`MEMINFO`); ``None`` where the OS does not
    report it."""
    try:
        with open(path or MEMINFO) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def free_bytes(backend: Any) -> tuple[int | None, str]:
    """The bytes free for the run now and where that figure comes from."""
    free = backend.free_memory_bytes()
    if free is not None:
        return int(free), f"free on {getattr(backend, 'device', 'the device')}"
    if getattr(backend, "device", "cpu") == "cpu":
        return host_available_bytes(), "MemAvailable on this host"
    return None, ""


def early_peak(run: Any, backend: Any, state: tuple[Any, Any, Any], metrics: dict[str, Any],
               enabled: bool = True) -> int | None:
    """Before a run compiles (a compile that warms up on real arguments allocates the step's memory): one outer
    step's peak where the backend counts it on fake tensors (``fake_peak_bytes``: torch, arguments over 512 MiB),
    checked against the free memory (:func:`check`; the figure goes into ``metrics`` first, so an ``oom`` record
    keeps it); ``None`` where it cannot be counted so early (or a level selects its examples) — the count after
    compiling, and the check, stand."""
    if not enabled or run.batches.selects:  # a selecting level scores its candidates with what compile builds
        return None
    params, states, mstate = state
    with run.stages("count_bytes"):
        rounds0, _ = run.batches.rounds(0, params)
        peak = backend.fake_peak_bytes(run.one_step, (params, states, rounds0, run.batches.top(0), mstate))
    if peak is not None:
        metrics["peak_live_bytes"] = peak
        check(backend, peak, enabled)
    return peak


def check(backend: Any, peak_live_bytes: int | None, enabled: bool = True) -> None:
    """Raise :class:`PredictedOOM` when ``peak_live_bytes`` exceeds the memory free for ``backend``'s device."""
    if not enabled or not peak_live_bytes:
        return
    free, where = free_bytes(backend)
    if free is not None and peak_live_bytes > free:
        raise PredictedOOM(f"predicted out of memory: one outer step's counted peak of {peak_live_bytes / 2**30:.2f} "
                           f"GiB exceeds the {free / 2**30:.2f} GiB {where} (not run; memory_guard=false runs it)")
