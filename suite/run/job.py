"""One job of ``mlo-bench run`` (a single run or one point of a sweep): resume, lock, isolate, record, summarise.

Two processes given the same config (same hash) for one ``results_dir`` never both run it: the job holds the config's
lock (``<results_dir>/locks/<hash>.lock``, :func:`mlo_bench.suite.run.records.config_lock`) while it runs, and looks for
a finished record again once it holds it. The one that finds the lock taken prints one line naming the holder and
returns a ``busy`` result (no record is written; ``mlo-bench run`` exits 3; a sweep counts it and goes on). A
deliberate repeat of a config is ``repeat=N``, which enters the hash.

A job asked to stop (SIGINT / SIGTERM, :mod:`mlo_bench.suite.run.interrupt`) before it starts is not run and raises
:class:`~mlo_bench.suite.run.interrupt.Interrupted` (nothing is written); a run stopped while it trains is recorded
``interrupted`` and reported in one line (``mlo-bench run`` then exits 130 and a sweep stops; the same command again
runs it anew: an ``interrupted`` record is not a finished one).
"""

from __future__ import annotations

import sys
from typing import Any

from mlo_bench.suite.run import interrupt, ledger
from mlo_bench.suite.run.budgets import over_budget
from mlo_bench.suite.run.plan import Plan
from mlo_bench.suite.run.records import BUSY, Busy, config_hash, config_lock, find_completed
from mlo_bench.suite.run.summary import print_summary


def run_job(plan: Plan) -> dict[str, Any]:
    """Run ``plan`` unless ``resume`` finds a finished record with the same config hash, or another process holds the
    config's lock (then a ``busy`` result, not written); returns the record. A torchrun rank other than 0
    (:func:`mlo_bench.suite.run.ranks.torchrun_rank`) trains in this process and writes nothing: rank 0 is the job."""
    interrupt.check(0)
    if plan.world_size > 1:
        from mlo_bench.suite.run import ranks
        from mlo_bench.suite.run.execute import execute

        if ranks.torchrun_rank() not in (None, 0):
            return execute(plan)
    try:
        with config_lock(plan.results_dir, config_hash(plan.config)):
            return _run_locked(plan)
    except Busy as exc:
        print(f"busy: {exc}; not run here (repeat=N runs a config again deliberately)", flush=True)
        record = {"status": BUSY, "reason": str(exc), "run_id": None, "task": plan.task_cls.name,
                  "backend": plan.backend_cls.name, "method": plan.method.name, "seed": plan.seed}
        ledger.append(record, skipped=True)
        return record


def _run_locked(plan: Plan) -> dict[str, Any]:
    over = over_budget(plan)
    # a run skipped under a smaller budget is run once the budget admits it
    done = find_completed(plan.results_dir, config_hash(plan.config), ignore=() if over else ("skipped",)) \
        if plan.resume else None
    if done is not None:
        print(f"skipped: same config already recorded ({done['status']}) at {done['_path']}", flush=True)
        record = done
        skipped = True
    elif (reason := _cannot_run(plan)) is not None or over is not None:
        from mlo_bench.suite.measure import provenance
        from mlo_bench.suite.run.execute import commit, new_record

        record = new_record(plan)
        record["status"], record["reason"] = ("unsupported", reason) if reason is not None else ("skipped", over)
        record = commit(plan, record, provenance.now())
        print_summary(record)
        skipped = False
    else:
        if plan.isolate:
            from mlo_bench.suite.run.isolate import run_isolated

            record = run_isolated(plan)
        else:
            from mlo_bench.suite.run.execute import execute

            record = execute(plan)
        if record["status"] == "interrupted":
            print(interrupted_line(record), file=sys.stderr, flush=True)
        else:
            print_summary(record)
        skipped = False
    ledger.append(record, skipped)
    return record


def interrupted_line(record: dict[str, Any]) -> str:
    """The one line an interrupted run prints: what stopped, after how many steps, where its record is."""
    m = record.get("metrics") or {}
    loss = m.get("outer_loss")
    return (f"interrupted: {record['task']} × {record['backend']} × {record['method']} (seed {record['seed']}): "
            f"{record.get('reason')} (of {record.get('config', {}).get('steps')})"
            + (f", outer_loss {loss:.6g}" if isinstance(loss, int | float) else "")
            + f"; recorded at {record.get('_path')}; the same command again runs it anew")


def _cannot_run(plan: Plan) -> str | None:
    """Why the backend cannot run this method, found without starting a worker (no backend set up): the plan's
    admission (:func:`mlo_bench.suite.run.execute.admission`, asked once: the run that follows does not ask again),
    with the backend's refusal of any method by name — also of one that computes no hypergradient, which a run called
    in-process (:func:`mlo_bench.suite.run.execute.refusal`) would let through."""
    from mlo_bench.suite.run.execute import admission

    adm = admission(plan)
    return adm.unavailable or adm.refused
