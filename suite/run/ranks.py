"""A data-parallel run whose ranks are processes (``parallel.world_size=N`` on a backend with ``parallel =
"processes"``: torch, naive): N processes started with ``torch.multiprocessing`` (spawn) from the run's own process
(the isolated worker, or the CLI with ``isolate=false``), joined into one process group through a ``file://``
rendezvous in a temporary directory, each training on its shard of every batch; rank 0's measurements make the one
record, with every rank's peak memory and time in collectives beside them.

Faults end as results, within a bounded time, never a hang: a rank that dies (its exit code or signal) or that does
not answer within ``parallel.timeout_s`` after another rank finished (hung: every collective also times out after
``parallel.timeout_s``, so the ranks waiting on it end too) makes the run ``error`` naming the rank; the other ranks
are then killed and exactly one record is written, by the caller (:func:`mlo_bench.suite.run.execute.execute`).
A rank whose parent died stops at once (a watchdog thread), so no rank outlives a killed worker. A stop asked of the
process that started the ranks (Ctrl-C, SIGTERM; :mod:`mlo_bench.suite.run.interrupt`) is forwarded to them once:
they agree on it at the next step boundary and end ``interrupted`` together, rank 0's measurements so far kept.

Beyond one machine: the processes here are one node's. torch's own launcher spans nodes — ``torchrun --nnodes=M
--nproc-per-node=K --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT`` sets ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR``
for ``init_method="env://"``, the rendezvous :func:`train_rank` accepts (docs/parallel.md); jax spans nodes with
``jax.distributed.initialize`` before the backend's mesh is laid out.
"""

from __future__ import annotations

import os
import queue as queue_mod
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from mlo_bench.suite.run import interrupt

GRACE_S = 5.0  #: seconds added to ``parallel.timeout_s`` before a silent rank is called hung


class RankFailure(RuntimeError):
    """A rank died, hung or raised; the message names it."""


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="mlo-bench-parent-watch").start()


def _entry(target: Callable, rank: int, world: int, init_method: str, timeout_s: float, args: tuple,
           out: Any, parent: int) -> None:
    _watch_parent(parent)
    try:  # a stop signal is only noted here (a terminal's Ctrl-C and the parent's forwarded one are one stop)
        with interrupt.handling(), interrupt.forwarding():
            result = target(rank, world, init_method, timeout_s, *args)
        out.put((rank, True, result))
    except BaseException:  # noqa: BLE001 - reported to the parent, which names the rank
        out.put((rank, False, traceback.format_exc()))


def _signal_name(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def launch(world_size: int, target: Callable, args: tuple, timeout_s: float) -> list[Any]:
    """``[target(rank, world_size, init_method, timeout_s, *args) for each rank]``, each in a process of its own
    (``target`` importable by name: spawn). Raises :class:`RankFailure` naming the rank that died, hung or raised,
    within ``timeout_s`` + :data:`GRACE_S` of the first rank to end."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    tmp = tempfile.mkdtemp(prefix=f"mlo-bench-ranks-{os.getpid()}-")
    init_method = f"file://{os.path.join(tmp, 'rendezvous')}"
    procs = [ctx.Process(target=_entry, args=(target, r, world_size, init_method, timeout_s, args, out, os.getpid()),
                         name=f"mlo-bench-rank-{r}", daemon=True) for r in range(world_size)]
    done: dict[int, tuple[bool, Any]] = {}
    dead: dict[int, int | None] = {}
    first_end: float | None = None
    forwarded = False
    try:
        for p in procs:
            p.start()
        while len(done) + len(dead) < world_size:
            if not forwarded and interrupt.requested():  # asked to stop: the ranks stop at a boundary, together
                forwarded = True
                for p in procs:
                    if p.is_alive():
                        os.kill(p.pid, signal.SIGINT)
            try:
                rank, ok, payload = out.get(timeout=0.2)
                done[rank] = (ok, payload)
            except queue_mod.Empty:
                pass
            for r, p in enumerate(procs):
                if r not in done and r not in dead and not p.is_alive() and p.exitcode not in (0, None):
                    dead[r] = p.exitcode
            if (done or dead) and first_end is None:
                first_end = time.monotonic()
            if first_end is not None and time.monotonic() - first_end > timeout_s + GRACE_S:
                break
    finally:
        started = [p for p in procs if p.pid is not None]
        for p in started:
            if p.is_alive():
                p.kill()
        for p in started:
            p.join(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    hung = [r for r in range(world_size) if r not in done and r not in dead]
    problems = [f"rank {r} died ({_signal_name(code)})" for r, code in sorted(dead.items())]
    problems += [f"rank {r} hung (no answer within parallel.timeout_s={timeout_s:g} s + {GRACE_S:g} s after another "
                 "rank ended)" for r in hung]
    problems += [f"rank {r} raised: {payload.strip().splitlines()[-1]}" for r, (ok, payload) in sorted(done.items())
                 if not ok]
    if problems:
        raise RankFailure("; ".join(problems))
    return [done[r][1] for r in range(world_size)]


class RanksBackend:
    """What a record's provenance reads of the backend (``versions()``, ``device``), from rank 0."""

    ops = None

    def __init__(self, device: str | None, versions: dict[str, str]) -> None:
        self.device, self._versions = device, versions

    def versions(self) -> dict[str, str]:
        return self._versions


def torchrun_rank() -> int | None:
    """This process's rank when torch's launcher started it (``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and
    ``MASTER_ADDR`` for the ``env://`` rendezvous), else ``None``."""
    if all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR")):
        return int(os.environ["RANK"])
    return None


def compose(plan: Any, record: dict[str, Any], trace: list, capture: dict[str, Any], results: list[Any]
            ) -> RanksBackend:
    """The one record of a data-parallel run from its ranks' results (rank 0's measurements, every rank's figures)."""
    first = results[0]
    metrics = record["metrics"]
    metrics.update(first["metrics"])
    trace.extend(first["trace"])
    capture.update(first["capture"])
    steps = max(1, int(metrics.get("steps_done") or 1))
    metrics["world_size"] = plan.world_size
    metrics["time_comm_s"] = first.get("comm_s", 0.0) / steps
    metrics["comm_calls_per_step"] = first.get("comm_calls", 0) / steps
    metrics["time_comm_s_per_rank"] = [r.get("comm_s", 0.0) / steps for r in results]
    metrics["peak_memory_bytes_per_rank"] = [r["metrics"].get("peak_memory_bytes") for r in results]
    bad = next((r for r in results if r["status"] != "ok"), None)
    if bad is not None:
        record["status"] = bad["status"]
        record["reason"] = bad["reason"] if bad["rank"] == 0 else f"rank {bad['rank']}: {bad['reason']}"
        if bad["traceback"]:
            record["traceback"] = bad["traceback"]
    return RanksBackend(first.get("device"), first.get("versions", {}))
