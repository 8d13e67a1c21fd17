"""One run: a task × backend × method from a seed → one record.

Phases are timed separately per outer step (``inner``: the lower levels' ``inner_steps`` optimizer sweeps;
``hypergrad``: the top level's hypergradient; ``outer``: its optimizer update), each call synchronised before the clock
is read. Per-phase figures are medians over outer steps after the first (warm-up) one; JIT compile time is measured on
its own (``compile_s``) before the loop. Peak memory covers the training loop only, above the baseline that holds the
data and parameters. The hypergradient check (``hypergrad_rel_error``) runs after the loop, untimed: at the initial top
parameters with every lower level at its exact best response, so it isolates the method's error from the inner solver's;
a task without an oracle whose lower level is small (``Task.exact_reference()``) is checked instead against the
``exact`` method on the same backend at the final state (last parameters, optimizer states and batches).
A failure is a result: it is recorded with its status and the run's record is still written. ``execute`` can also hand
back, through a ``capture`` dict, the first hypergradient (at the initial state, before any inner step) and every
level's parameters after the last outer step, as numpy (``mlo-bench verify`` compares them across backends).
"""

from __future__ import annotations

import math
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from mlo_bench.suite import optim, provenance
from mlo_bench.suite.contract import Unavailable
from mlo_bench.suite.hypergrad import hypergradient_fn
from mlo_bench.suite.measure import PhaseTimer
from mlo_bench.suite.plan import Plan
from mlo_bench.suite.progress import RunProgress
from mlo_bench.suite.records import SCHEMA_VERSION, commit_run, config_hash
from mlo_bench.suite.trees import tree_leaves, tree_vdot


class Unsupported(Exception):
    """The combination cannot run; the message is the reason."""


class Diverged(Exception):
    def __init__(self, step: int, what: str) -> None:
        super().__init__(f"non-finite {what} at step {step}")
        self.step = step


def _is_oom(exc: BaseException) -> bool:
    """MemoryError, torch's CUDA ``OutOfMemoryError`` or XLA's ``RESOURCE_EXHAUSTED``."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def _finite(backend: Any, x: Any) -> bool:
    return bool(np.isfinite(backend.to_numpy(x)).all())


def _batches(task: Any, backend: Any, data: dict[str, Any], levels: list[Any], step: int) -> dict[str, Any]:
    out = {}
    for level in levels:
        extra = task.batch(level.name, step)
        out[level.name] = {**data, **(backend.tree_asarray(extra) if extra else {})}
    return out


def _compare(h: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    a = np.concatenate([np.ravel(x).astype(np.float64) for x in tree_leaves(h)])
    b = np.concatenate([np.ravel(x).astype(np.float64) for x in tree_leaves(ref)])
    ref_norm, a_norm = np.linalg.norm(b), np.linalg.norm(a)
    return {
        "hypergrad_rel_error": float(np.linalg.norm(a - b) / ref_norm) if ref_norm > 0 else float("nan"),
        "hypergrad_cosine": float(a @ b / (a_norm * ref_norm)) if a_norm > 0 and ref_norm > 0 else float("nan"),
    }


def _exact_reference(plan: Plan, backend: Any, levels: list[Any], hyper_c: Any, params: Any, states: Any,
                     batches: Any) -> dict[str, float]:
    """``hypergrad_rel_error`` / ``hypergrad_cosine`` of the run's method against the ``exact`` method on the same
    backend, chain and state: the final parameters and optimizer states, on the last step's batches (for a task
    without an oracle whose lower levels are small enough to materialise their Hessians)."""
    from mlo_bench.suite import registry

    cfg = registry.make_config("method", "exact", {})
    reference = hypergradient_fn(backend, registry.get("method", "exact")(), cfg, levels, plan.inner_steps)
    ref_c = backend.compile(reference, (params, states, batches))[0]
    ref = backend.tree_to_numpy(ref_c(params, states, batches))
    h = backend.tree_to_numpy(hyper_c(params, states, batches))
    return _compare(h, ref)


def train(
    plan: Plan, backend: Any, metrics: dict[str, Any], trace: list[tuple], capture: dict[str, Any] | None = None
) -> None:
    """The measured work. Fills ``metrics`` and ``trace`` as it goes (so a failure keeps what was measured), and
    ``capture`` (when given) with ``first_hypergrad`` and ``params`` as numpy."""
    ops = backend.ops
    task = plan.task_cls(plan.task_cfg, plan.seed)
    reason = task.supports(plan.method.name)
    if reason:
        raise Unsupported(reason)
    levels = task.levels()
    top = levels[0].name
    lower = levels[1:]

    rng = np.random.default_rng(plan.seed)
    init = task.init_params(rng)
    data = backend.tree_asarray(task.data())
    params = backend.tree_asarray(init)
    states = {lv.name: optim.init(ops, lv.optimizer, params[lv.name]) for lv in levels}

    def inner_fn(params, states, batches):
        params, states = dict(params), dict(states)
        for lv in lower:
            def loss(theta, lv=lv):
                return lv.loss(ops, {**params, lv.name: theta}, batches[lv.name])

            g = backend.grad(loss)(params[lv.name])
            params[lv.name], states[lv.name] = optim.update(ops, lv.optimizer, g, states[lv.name], params[lv.name])
        return params, states

    hyper_fn = hypergradient_fn(backend, plan.method, plan.method_cfg, levels, plan.inner_steps)

    def outer_fn(top_params, top_state, hg):
        return optim.update(ops, levels[0].optimizer, hg, top_state, top_params)

    def loss_fn(params, batches):
        return levels[0].loss(ops, params, batches[top])

    batches0 = _batches(task, backend, data, levels, 0)
    compile_s = 0.0
    inner_c, s = backend.compile(inner_fn, (params, states, batches0))
    compile_s += s
    hyper_c, s = backend.compile(hyper_fn, (params, states, batches0))
    compile_s += s
    hg0 = hyper_c(params, states, batches0)
    if capture is not None:
        capture["first_hypergrad"] = backend.tree_to_numpy(hg0)
    outer_c, s = backend.compile(outer_fn, (params[top], states[top], hg0))
    compile_s += s
    loss_c, s = backend.compile(loss_fn, (params, batches0))
    compile_s += s
    metrics["compile_s"] = compile_s

    # Counted, not timed, before the loop: FLOPs of one hypergradient at the initial state, and the peak bytes alive
    # during one outer step. Both get the uncompiled functions (a backend that counts by compiling, as jax does,
    # compiles them itself; an eager backend runs them once under its counter).
    metrics["flops_hypergrad"] = backend.count_flops(hyper_fn, (params, states, batches0))

    def one_step(params, states, batches):
        params, states = inner_fn(params, states, batches)
        return outer_fn(params[top], states[top], hyper_fn(params, states, batches))

    metrics["peak_live_bytes"] = backend.live_peak_bytes(one_step, (params, states, batches0))

    timer = PhaseTimer(backend.block)
    log_every = plan.log_every or max(1, plan.steps // 10)
    progress = RunProgress(f"{task.name}/{backend.name}/{plan.method.name}", plan.steps, plan.progress)
    backend.block(params)
    backend.reset_peak_memory()
    start = time.perf_counter()
    try:
        for step in range(plan.steps):
            inner_batches = [
                _batches(task, backend, data, levels, step * plan.inner_steps + i) for i in range(plan.inner_steps)
            ]

            def inner_all(params, states, inner_batches=inner_batches):
                for b in inner_batches:
                    params, states = inner_c(params, states, b)
                return params, states

            params, states = timer.time("inner", inner_all, params, states)
            hg = timer.time("hypergrad", hyper_c, params, states, inner_batches[-1])
            if not _finite(backend, tree_vdot(ops, hg, hg)):
                raise Diverged(step, "hypergradient")
            params[top], states[top] = timer.time("outer", outer_c, params[top], states[top], hg)
            if (step + 1) % log_every == 0 or step + 1 == plan.steps:
                loss = loss_c(params, inner_batches[-1])
                if not _finite(backend, loss):
                    raise Diverged(step, "outer loss")
                value = float(backend.to_numpy(loss))
                trace.append((step + 1, value, time.perf_counter() - start))
                progress.update(step + 1, value)
                metrics["outer_loss"] = value
    finally:
        backend.block(params)
        metrics["time_total_s"] = time.perf_counter() - start
        metrics["peak_memory_bytes"] = backend.peak_memory_bytes()
        metrics["memory_kind"] = backend.memory_kind
        for phase in ("inner", "hypergrad", "outer"):
            metrics[f"time_{phase}_s"] = timer.median(phase)
        metrics["steps_done"] = len(timer.samples.get("outer", []))
        progress.close()

    if capture is not None:
        capture["params"] = backend.tree_to_numpy(params)
    metrics.update(task.metrics(backend, params))
    oracle = task.oracle() if plan.hypergrad_check else None
    if oracle is not None:
        top0 = init[top]
        probe = backend.tree_asarray(oracle.best_response(top0))
        probe_states = {lv.name: optim.init(ops, lv.optimizer, probe[lv.name]) for lv in levels}
        h = backend.tree_to_numpy(hyper_c(probe, probe_states, batches0))
        metrics.update(_compare(h, oracle.hypergradient(top0)))
    elif plan.hypergrad_check and task.exact_reference():
        last = _batches(task, backend, data, levels, plan.steps * plan.inner_steps - 1)
        metrics.update(_exact_reference(plan, backend, levels, hyper_c, params, states, last))


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


def commit(plan: Plan, record: dict[str, Any], started: str, backend: Any = None, trace: list[tuple] = ()) -> dict:
    """Fill provenance, drop non-finite numbers, and write the record atomically; returns it with ``_path``."""
    metrics = record["metrics"]
    metrics.setdefault("outer_loss", None)
    for key, value in list(metrics.items()):
        if isinstance(value, float) and not math.isfinite(value):
            metrics[key] = None  # JSON has no NaN; the status says what happened
    record["provenance"] = provenance.collect(backend.versions() if backend and hasattr(backend, "ops") else {})
    record["provenance"].update({"start": started, "end": provenance.now(), "device": getattr(backend, "device", None)})
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_id = f"{stamp}-{record['task']}-{record['backend']}-{record['method']}-s{plan.seed}-{record['config_hash'][:8]}"
    files = {"trace.csv": "step,outer_loss,elapsed_s\n" + "".join(f"{s},{v!r},{t:.6f}\n" for s, v, t in trace)}
    path = commit_run(Path(plan.results_dir), run_id, record, files)
    record["_path"] = str(path / "record.json")
    return record


def execute(plan: Plan, capture: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the plan, write its record, return the record. Run failures become statuses, never exceptions.
    ``capture``, when given, is filled as :func:`train` describes."""
    started = provenance.now()
    backend_cls = plan.backend_cls
    record = new_record(plan)
    metrics: dict[str, Any] = record["metrics"]
    trace: list[tuple] = []
    backend = None
    try:
        backend = backend_cls(plan.backend_cfg)
        try:
            backend_cls.check_available()
        except Exception as exc:  # noqa: BLE001
            why = f"{type(exc).__name__}: {exc}"
            raise Unsupported(f"backend {backend_cls.name} is not installed here ({why})") from exc
        reason = backend.supports(plan.method.name)
        if reason:
            raise Unsupported(reason)
        backend.setup(plan.dtype, plan.device, plan.seed)
        try:
            train(plan, backend, metrics, trace, capture)
        finally:
            backend.teardown()
    except (Unsupported, Unavailable) as exc:
        record["status"], record["reason"] = "unsupported", str(exc)
    except Diverged as exc:
        record["status"], record["reason"] = "diverged", str(exc)
        metrics["diverged_step"] = exc.step
    except Exception as exc:  # noqa: BLE001 - every failure is a result
        if _is_oom(exc):
            record["status"], record["reason"] = "oom", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        else:
            record["status"], record["reason"] = "error", f"{type(exc).__name__}: {exc}"
            record["traceback"] = traceback.format_exc()
    return commit(plan, record, started, backend, trace)
