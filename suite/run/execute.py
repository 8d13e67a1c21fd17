"""One run: a task × backend × method from a seed → one record.

The measured work is :func:`mlo_bench.suite.engine.loop.train` (phases, timing and checks are described there). A run,
the step benchmark (:mod:`mlo_bench.suite.measure.stepbench`) and ``mlo-bench verify`` set a run up the same way:
:func:`admission` (asked once per plan, kept on it), :func:`set_up` (the backend admitted and set up) and
:func:`mlo_bench.suite.engine.loop.start` (the task, taken from the plan, and everything compiled). A failure is a
result: it is recorded with its status and the run's record is still written, atomically — a stop asked by SIGINT or
SIGTERM too (status ``interrupted``, :mod:`mlo_bench.suite.run.interrupt`). ``execute`` can
also hand back, through a ``capture`` dict, the first hypergradient, every level's parameters and the method's state
after the last outer step, as numpy (``mlo-bench verify`` compares them across backends); the first hypergradient is
also saved beside the record (``first_hypergrad.npz``, one array per ``<level>/<name>``) for comparisons outside the
suite.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlo_bench.suite.contract import Unavailable
from mlo_bench.suite.engine.loop import Diverged, Unsupported, train
from mlo_bench.suite.measure import host_malloc, provenance, threads
from mlo_bench.suite.measure.instruments import Stages
from mlo_bench.suite.run import interrupt, ranks
from mlo_bench.suite.run.interrupt import Interrupted
from mlo_bench.suite.run.plan import Plan
from mlo_bench.suite.run.records import SCHEMA_VERSION, commit_run, config_hash

__all__ = ["Admission", "Diverged", "Unsupported", "admission", "commit", "execute", "new_record", "refusal", "set_up",
           "train"]


@dataclass(frozen=True)
class Admission:
    """Whether a plan's backend can run its method here: ``unavailable`` (the backend is not installed here) or else
    ``refused`` (the configured backend refuses the method with its knobs, ``Backend.refusal``), ``None`` each when
    not."""

    unavailable: str | None = None
    refused: str | None = None


def admission(plan: Plan, backend: Any = None) -> Admission:
    """The plan's :class:`Admission`, asked once and kept on the plan (``backend``: an instance to ask, not set up;
    default a new one)."""
    if plan.admission is None:
        unavailable = refused = None
        try:
            plan.backend_cls.check_available()
        except Exception as exc:  # noqa: BLE001
            unavailable = f"backend {plan.backend_cls.name} is not installed here ({type(exc).__name__}: {exc})"
        if unavailable is None:
            backend = backend if backend is not None else plan.backend_cls(plan.backend_cfg)
            refused = backend.refusal(plan.method.name, plan.method_cfg)
            if refused is None and plan.precision is not None and plan.precision.low:
                refused = backend.precision_refusal(plan.precision.name, plan.method.name)
        plan.admission = Admission(unavailable, refused)
    return plan.admission


def refusal(plan: Plan, backend: Any = None) -> str | None:
    """Why this run cannot run here, or ``None``: its backend not installed, or refusing a method that computes a
    hypergradient (a method that computes none, ``none``, trains the lower levels alone: any installed backend runs it
    here — unlike the check before a job of ``mlo-bench run`` (:mod:`mlo_bench.suite.run.job`), which takes the
    backend's refusal of any method, so the demos record naive × none as unsupported)."""
    adm = admission(plan, backend)
    return adm.unavailable or (adm.refused if plan.method.computes_hypergradient else None)


def set_up(plan: Plan, backend: Any) -> None:
    """Admit the plan (:func:`refusal`, then the backend's ``parallel_refusal`` of ``parallel.world_size``;
    :class:`Unsupported` with the reason) and set ``backend`` up for it (a mesh backend's device mesh laid out too)."""
    reason = refusal(plan, backend) or backend.parallel_refusal(plan.world_size)
    if reason:
        raise Unsupported(reason)
    backend.setup(plan.dtype, plan.device, plan.seed)
    if plan.world_size > 1 and backend.parallel == "mesh":
        backend.setup_parallel(plan.world_size)


def outcome(exc: BaseException, metrics: dict[str, Any]) -> tuple[str, str, str | None]:
    """A run's failure as ``(status, reason, traceback or None)`` (``diverged_step`` into ``metrics``): the one
    mapping of exceptions to statuses, for a run in this process and for each rank of a data-parallel one."""
    if isinstance(exc, Unsupported | Unavailable):
        return "unsupported", str(exc), None
    if isinstance(exc, Interrupted):  # at a step boundary: the record keeps the steps done and the metrics so far
        return "interrupted", str(exc), None
    if isinstance(exc, KeyboardInterrupt):  # a second signal, mid-step (run/interrupt.py)
        done = metrics.get("steps_done", 0)
        return "interrupted", f"interrupted mid-step after {done} outer steps ({exc or 'SIGINT'})", None
    if isinstance(exc, Diverged):
        metrics["diverged_step"] = exc.step
        return "diverged", str(exc), None
    if _is_oom(exc):
        return "oom", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}", None
    return "error", f"{type(exc).__name__}: {exc}", traceback.format_exc()


def _is_oom(exc: BaseException) -> bool:
    """MemoryError, torch's CUDA ``OutOfMemoryError`` or XLA's ``RESOURCE_EXHAUSTED``."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def new_record(plan: Plan) -> dict[str, Any]:
    """The record of ``plan`` before it runs (status ``ok`` until something says otherwise)."""
    return {
        "schema": SCHEMA_VERSION,
        "run_id": None,
        "task": plan.task_cls.name,
        "backend": plan.backend_cls.name,
        "method": plan.method.name,
        "seed": plan.seed,
        "status": "ok",
        "reason": None,
        "config": plan.config,
        "config_hash": config_hash(plan.config),
        "metrics": {},
        "provenance": {},
    }


def trace_csv(trace: list[dict[str, Any]]) -> str:
    """``step, outer_loss, elapsed_s`` and one column per curve metric (``eval_every``); blank where not measured."""
    columns = ["step", "outer_loss", "elapsed_s"]
    columns += sorted({k for row in trace for k in row} - set(columns))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in trace:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return out.getvalue()


def npz_bytes(tree: dict[str, Any]) -> bytes:
    """A pytree of numpy arrays as ``.npz`` bytes, one array per ``/``-joined key path."""
    flat: dict[str, np.ndarray] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k in sorted(node):
                walk(f"{prefix}/{k}" if prefix else str(k), node[k])
        else:
            flat[prefix] = np.asarray(node)

    walk("", tree)
    buf = io.BytesIO()
    np.savez(buf, **flat)
    return buf.getvalue()


def commit(plan: Plan, record: dict[str, Any], started: str, backend: Any = None, trace: list[dict] = (),
           first_hypergrad: dict[str, Any] | None = None, stages: Stages | None = None) -> dict:
    """Fill provenance (with ``stages_s``, the run's wall seconds per stage, when ``stages`` is given), drop
    non-finite numbers, and write the record atomically; returns it with ``_path``."""
    tick = time.perf_counter()
    metrics = record["metrics"]
    metrics.setdefault("outer_loss", None)
    for key, value in list(metrics.items()):
        if isinstance(value, float) and not math.isfinite(value):
            metrics[key] = None  # JSON has no NaN; the status says what happened
    record["provenance"] = provenance.collect(backend.versions() if backend and hasattr(backend, "ops") else {})
    record["provenance"].update({"start": started, "end": provenance.now(), "device": getattr(backend, "device", None)})
    if stages is not None:
        stages.add("commit", time.perf_counter() - tick)  # all of it but the write itself
        record["provenance"]["stages_s"] = {k: round(v, 4) for k, v in stages.seconds.items()}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_id = f"{stamp}-{record['task']}-{record['backend']}-{record['method']}-s{plan.seed}-{record['config_hash'][:8]}"
    files: dict[str, str | bytes] = {"trace.csv": trace_csv(trace)}
    if first_hypergrad is not None:
        files["first_hypergrad.npz"] = npz_bytes(first_hypergrad)
    path = commit_run(Path(plan.results_dir), run_id, record, files)
    record["_path"] = str(path / "record.json")
    return record


def execute(plan: Plan, capture: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the plan, write its record, return the record. Run failures become statuses, never exceptions.
    ``capture``, when given, is filled as :func:`train` describes."""
    started = provenance.now()
    provenance.start_snapshot()  # load average at the start, merged into the provenance by commit
    stages = Stages()
    if plan.world_size > 1 and hasattr(plan.backend_cls, "prepare_parallel"):  # before threads imports jax
        plan.backend_cls.prepare_parallel(plan.world_size)
    with stages("setup"):  # threads first: it imports the frameworks it pins, before the backend is set up
        provenance.set_threads(threads.apply(plan.threads))
        provenance.set_malloc(host_malloc.apply(plan.config.get("malloc_mmap_threshold")))
    backend_cls = plan.backend_cls
    record = new_record(plan)
    metrics: dict[str, Any] = record["metrics"]
    trace: list[dict[str, Any]] = []
    capture = {} if capture is None else capture
    backend = None
    launched = ranks.torchrun_rank() if plan.world_size > 1 else None
    try:
        interrupt.check(0)  # asked to stop before the run began
        if plan.world_size > 1 and getattr(backend_cls, "parallel", None) == "processes":
            with stages("ranks"):
                backend = (execute_ranks if launched is None else execute_torchrun)(plan, record, trace, capture)
        else:
            with stages("setup"):
                backend = backend_cls(plan.backend_cfg)
                set_up(plan, backend)
            try:
                train(plan, backend, metrics, trace, capture, stages)
            finally:
                backend.teardown()
            metrics["world_size"] = plan.world_size
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure is a result
        record["status"], record["reason"], tb = outcome(exc, metrics)
        if tb is not None:
            record["traceback"] = tb
    if launched not in (None, 0):  # a torchrun rank other than 0: rank 0 alone writes the run's record
        return record
    return commit(plan, record, started, backend, trace, capture.get("first_hypergrad"), stages)


# ---- data parallel with processes (suite/run/ranks.py starts them; docs/parallel.md) --------------------------------
def train_configs(rank: int, world_size: int, init_method: str, timeout_s: float, configs: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """:func:`train_rank` for each config in turn, in one process group (agreement checks over many runs pay for
    one start of the ranks)."""
    import torch.distributed as dist

    try:
        return [train_rank(rank, world_size, init_method, timeout_s, c, keep_group=True) for c in configs]
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def train_rank(rank: int, world_size: int, init_method: str, timeout_s: float, config: dict[str, Any],
               keep_group: bool = False) -> dict[str, Any]:
    """One rank of a run: the plan prepared from ``config``, the backend as this rank (``Backend.for_rank``), trained
    as :func:`mlo_bench.suite.engine.loop.train` does; returns this rank's status, metrics, time in collectives (over
    the training loop) and, on rank 0, its trace, capture and provenance."""
    from mlo_bench.suite.run.plan import prepare

    plan = prepare(config)
    plan.progress = plan.progress and rank == 0
    threads.apply(plan.threads)
    host_malloc.apply(plan.config.get("malloc_mmap_threshold"))
    backend = plan.backend_cls.for_rank(plan.backend_cfg, rank, world_size, init_method, timeout_s)
    metrics: dict[str, Any] = {}
    trace: list[dict[str, Any]] = []
    capture: dict[str, Any] = {}
    status, reason, tb = "ok", None, None
    try:  # a stop signal is noted, and the ranks agree on it at each step boundary (suite/run/interrupt.py)
        with interrupt.handling():
            set_up(plan, backend)
            interrupt.agreeing(getattr(backend, "any_rank", None))
            try:
                train(plan, backend, metrics, trace, capture)
            finally:
                interrupt.agreeing(None)
                backend.teardown()
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure is a result
        status, reason, tb = outcome(exc, metrics)
    result = {"rank": rank, "status": status, "reason": reason, "traceback": tb, "metrics": metrics,
              **(backend.comm_metrics() if hasattr(backend, "comm") else {})}
    if rank == 0:
        result.update(trace=trace, capture=capture, device=getattr(backend, "device", None),
                      versions=backend.versions() if hasattr(backend, "ops") else {})
    import torch.distributed as dist

    if dist.is_initialized() and not keep_group:
        dist.destroy_process_group()
    return result


def execute_torchrun(plan: Any, record: dict[str, Any], trace: list, capture: dict[str, Any]) -> ranks.RanksBackend:
    """This process as the rank torchrun made it (``env://``; several nodes: torchrun's rendezvous), the ranks'
    summaries gathered onto every rank; rank 0's record is filled as :func:`execute_ranks` fills it (only rank 0
    writes it: :func:`mlo_bench.suite.run.execute.execute`)."""
    import torch.distributed as dist

    world = int(os.environ["WORLD_SIZE"])
    if world != plan.world_size:
        raise ranks.RankFailure(f"torchrun started WORLD_SIZE={world} ranks; parallel.world_size={plan.world_size}")
    rank = ranks.torchrun_rank() or 0
    result = train_rank(rank, world, "env://", plan.parallel_timeout_s, plan.config, keep_group=True)
    summary = {k: v for k, v in result.items() if k not in ("trace", "capture", "versions", "device")}
    results: list[Any] = [None] * world
    try:
        dist.all_gather_object(results, summary)
    finally:
        dist.destroy_process_group()
    if rank != 0:
        return ranks.RanksBackend(None, {})
    results[0] = result
    return ranks.compose(plan, record, trace, capture, results)


def execute_ranks(plan: Any, record: dict[str, Any], trace: list, capture: dict[str, Any]) -> ranks.RanksBackend:
    """Run ``plan`` on ``plan.world_size`` rank processes; fill ``record`` (status, reason, metrics), ``trace`` and
    ``capture`` from rank 0, with ``world_size``, ``time_comm_s`` (rank 0's seconds in collectives per outer step
    of the training loop), ``comm_calls_per_step``, ``time_comm_s_per_rank``, ``peak_memory_bytes_per_rank`` and
    ``examples_per_s``. Raises :class:`RankFailure` when a rank died, hung or raised."""
    results = ranks.launch(plan.world_size, train_rank, (plan.config,), plan.parallel_timeout_s)
    return ranks.compose(plan, record, trace, capture, results)



