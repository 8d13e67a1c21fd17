"""The ``malloc_mmap_threshold`` run key: glibc's mmap threshold pinned, so a run's resident memory follows the bytes
it holds alive (null, the default: glibc's own dynamic threshold).

glibc serves an allocation above its mmap threshold with a mapping of its own, returned to the system when freed;
below it, from the heap, whose freed memory it keeps. The threshold starts at 128 KiB and *rises* to the size of each
mapped block freed (up to 32 MiB on 64-bit), so after the first few frees a large model's tensors of a few MiB come
from the heap and the process keeps what they leave. Measured (2026-12-07, this 2-core CPU, 24 GiB, load ≈ 1):
``mlo-bench run +experiment=memory_scaling +memory_point=base variant=unroll-4`` (110M parameters, fp32, torch)
counts a peak of 13.4 GiB live beyond 1.25 GiB of inputs, yet its process grew past 23 GiB during its first step and
the kernel killed it, every time (three tries); with the threshold pinned at 1 MiB its peak RSS above the baseline
was 12.9 GiB and the run finished (108 s for 2 steps).

``malloc_mmap_threshold=BYTES`` calls ``mallopt(M_MMAP_THRESHOLD, BYTES)`` in the process that runs (the isolated
worker, or the CLI process with ``isolate=false``) before the backend is set up; glibc then keeps that threshold (a
fixed value turns its adjustment off). It changes no number a run computes, only how memory comes back to the
system (and each mapped allocation pays its page faults: time figures move, so it is recorded,
``provenance.malloc_mmap_threshold``). Off Linux/glibc it is refused in one line. The memory experiments set it;
the rest of the suite leaves glibc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

#: ``M_MMAP_THRESHOLD`` of glibc's ``<malloc.h>``
M_MMAP_THRESHOLD = -3
#: glibc's largest mmap threshold on 64-bit (``HEAP_MAX_SIZE / 2``)
MAX_BYTES = 32 * 2**20


def validate(value: Any) -> str | None:
    """One line naming the bad value of ``malloc_mmap_threshold`` (or a C library without ``mallopt``), or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BYTES:
        return f"malloc_mmap_threshold must be null or bytes in [0, {MAX_BYTES}] (got {value!r})"
    if _libc() is None:
        return f"malloc_mmap_threshold={value}: this C library has no mallopt (glibc only); set it to null"
    return None


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return libc if libc is not None and hasattr(libc, "mallopt") else None


def apply(value: int | None) -> int | None:
    """Pin glibc's mmap threshold at ``value`` bytes (``None``: leave it); returns what was applied. Raises
    ``OSError`` in one line where there is no glibc ``mallopt`` or it refuses the value."""
    if value is None:
        return None
    libc = _libc()
    if libc is None:
        raise OSError(f"malloc_mmap_threshold={value}: this C library has no mallopt (glibc only); set it to null")
    if libc.mallopt(M_MMAP_THRESHOLD, int(value)) != 1:
        raise OSError(f"malloc_mmap_threshold={value}: mallopt(M_MMAP_THRESHOLD) refused it")
    return int(value)
