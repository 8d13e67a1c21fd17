"""The ``threads`` run key: how many threads one run's numerical work may use.

``threads=N`` (N ≥ 1) is applied in the process that runs (the isolated worker, or the CLI process with
``isolate=false``) before the backend is set up:

- torch's intra-op threads (``torch.set_num_threads``);
- every BLAS / OpenMP pool loaded in the process (numpy's OpenBLAS, MKL, libgomp; ``threadpoolctl.threadpool_limits``);
- ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` in the environment, for libraries loaded later
  and for child processes (an isolated worker gets them from its parent before it starts);
- XLA (jax on CPU): only through ``XLA_FLAGS`` read when jax is first imported, so only when jax is not imported
  yet. For N = 1 the flag is ``--xla_cpu_multi_thread_eigen=false`` (XLA's CPU kernels run on the calling thread;
  the often-copied companion ``intra_op_parallelism_threads=1`` is not an XLA flag, and a token without ``--`` makes
  XLA stop reading the flags after it: checked with ``--xla_dump_to`` placed after it, which then dumped nothing);
  for N > 1 XLA keeps its own pool (one thread per core), which no flag of this jaxlib sizes. What was applied is
  returned and recorded (``provenance.threads``), ``xla`` included.

``threads=0`` leaves every library at its own default (torch: one thread per core) and records it. A plain-dict
config without the key runs at 0, as configs written before the key existed did (``RunKey.absent``,
:mod:`mlo_bench.suite.conf.keys`).

Why the default is 1 (measured on a 2-core machine shared with other jobs, ``python -m mlo_bench.suite.measure.stepbench
--threads 1,2``, table in docs/floor.md): with 2 threads every torch and naive step was 3–24×
slower than with 1, on the Betty-sized Meta-Weight-Net step (darts: 20 → 330 ms on naive, load 7–11) and on one with
a 1000-wide MLP and batches of 500 (darts: 84 → 272 ms, load 12–17) — OpenMP threads spinning while they wait for
each other on cores that other processes hold. At the suite's sizes a second thread buys little even on a quiet
machine. A large model on a machine of its own gains from more threads: set ``threads=0`` or N.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from mlo_bench.suite.conf.keys import run_key

#: the ``threads`` key's default (declared in :mod:`mlo_bench.suite.conf.keys`)
DEFAULT = run_key("threads").default
ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
XLA_ONE = ("--xla_cpu_multi_thread_eigen=false",)

_limits: Any = None  # the threadpoolctl controller: kept so the limits stay in force


def validate(value: Any) -> str | None:
    """The one-line problem with a ``threads`` value, or ``None``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"threads must be an integer >= 0 (0: each library's default; got {value!r})"
    return None


def env_for(n: int) -> dict[str, str]:
    """Environment variables that carry ``threads=n`` into a process started later (before its imports)."""
    if n < 1:
        return {}
    out = {k: str(n) for k in ENV}
    if n == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        extra = [f for f in XLA_ONE if f.split("=")[0] not in flags]
        out["XLA_FLAGS"] = " ".join([flags, *extra]).strip()
    return out


def apply(n: int) -> dict[str, Any]:
    """Limit this process to ``n`` threads (see the module docstring); returns what was applied, for provenance."""
    global _limits
    if n < 1:
        return {"requested": 0, **current()}
    jax_loaded = "jax" in sys.modules
    for key, value in env_for(n).items():
        if key != "XLA_FLAGS" or not jax_loaded:
            os.environ[key] = value
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        _limits = threadpool_limits(limits=n)
    except ImportError:  # a dependency, but a broken install should not stop a run
        _limits = None
    out = {"requested": n, **current()}
    if n > 1:
        out["xla"] = "default pool (not settable)"
    elif jax_loaded and not all(f.split("=")[0] in os.environ.get("XLA_FLAGS", "") for f in XLA_ONE):
        out["xla"] = "not applied: jax was imported first"
    return out


def current() -> dict[str, Any]:
    """The thread settings in force: torch's intra-op threads, the BLAS / OpenMP pools, XLA's flags."""
    out: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        out["torch"] = int(torch.get_num_threads())
    try:
        from threadpoolctl import threadpool_info

        pools = {}
        for info in threadpool_info():
            pools[str(info.get("internal_api") or info.get("user_api"))] = int(info.get("num_threads", 0))
        out["blas"] = pools
    except Exception:  # noqa: BLE001 - informational
        pass
    flags = os.environ.get("XLA_FLAGS", "")
    out["xla"] = 1 if all(f.split("=")[0] in flags for f in XLA_ONE) else "default pool"
    return out
