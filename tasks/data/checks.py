"""The loaders' pre-check helpers: what a task's ``Config.validate()`` uses to read its files' *content* before any
work, so that a bad file is one line naming the key, the file and the problem (the CLI exits 2, no record).

- :func:`precheck` — run a loader inside ``validate()``: its ``ValueError`` becomes one line prefixed with the key
  (``task.data_root: <path>: <problem>``); an ``ImportError`` (an optional package missing) is left to the run, which
  records the task unavailable.
- :func:`stamp` — a cache key for files (path, modification time, size), so a loader that the pre-check and then the
  task's constructor call reads its files once per process and again when they change.
- :func:`enough_per_class` — "class c has n examples; k are needed", naming the file.
- :func:`finite` — no NaN or Inf in an array, naming the file and the first bad row.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np


def precheck(key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, its ``ValueError`` re-raised as one line starting with ``key`` (once); ``None`` on an
    ``ImportError`` (the run itself reports the missing package)."""
    try:
        return fn(*args, **kwargs)
    except ImportError:
        return None
    except ValueError as exc:
        lines = str(exc).splitlines()
        msg = lines[0] if lines else type(exc).__name__
        raise ValueError(msg if msg.startswith(key) else f"{key}: {msg}") from None


def stamp(paths: Iterable[str | os.PathLike]) -> tuple:
    """``((path, mtime_ns, size), …)`` of the existing files among ``paths`` (missing ones are left out)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def enough_per_class(labels: np.ndarray, n_classes: int, need: int, where: str = "", why: str = "") -> None:
    """Raise ``ValueError`` unless every class 0..n_classes−1 has at least ``need`` examples among ``labels``: one
    line, ``where`` (the file) first, then ``why`` the number is needed."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)[:n_classes]
    for c, n in enumerate(counts):
        if n < need:
            raise ValueError(f"{where + ': ' if where else ''}class {c} has {int(n)} examples; {need} are needed"
                             + (f" ({why})" if why else ""))


def finite(x: np.ndarray, where: str, name: str) -> None:
    """Raise ``ValueError`` if ``x`` holds a NaN or an Inf, naming the first row that does."""
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{where}: {name!r} holds non-finite values (NaN or Inf; first in row {row}), "
                         f"{int(bad.sum())} in all")
