"""Run one plan in a worker process of its own, under optional time and memory limits.

Isolation makes each run's memory figure its own (a fresh process: no allocator caches or compiled kernels of earlier
runs) and lets the parent turn a run that hangs or grows without bound into a result: past ``limits.time_s`` the worker
is killed and the record says ``timeout`` (counted from the moment the worker has imported everything and is about to
run, so a slow interpreter start-up on a loaded machine is not charged to the run); past ``limits.memory_gb`` of
resident memory (the whole worker: runtime,
data and the run; about 0.4–0.6 GiB is torch itself) it is killed and the record says ``oom``. A worker that dies on its
own (e.g. killed by the kernel's OOM killer) is recorded as ``oom`` when the signal was SIGKILL, otherwise ``error``.
The worker writes its own record when it finishes; the parent writes one only when the worker could not. Exactly one
record per run: once the parent has decided to stop a worker (time or memory) it kills it, waits for it, and then
looks for the worker's own outcome first — a worker that finished (its result file, or a record with this config's
hash published to ``results_dir`` after the run started, e.g. killed while shutting down) wins over the parent's
``timeout`` / ``oom``.

The worker prepares the plan again from its config, and builds its own task; the parent lets go of the one it
validated. When the parent has admitted the plan (:func:`mlo_bench.suite.run.execute.admission`: its backend is
installed and takes the method) it says so, and the worker does not ask again.

SIGINT / SIGTERM (:mod:`mlo_bench.suite.run.interrupt`): the worker runs in a process group of its own, so a terminal's
Ctrl-C reaches the parent only, which forwards each signal to the worker (SIGTERM) and waits for it: the worker stops at
its next step boundary and records itself ``interrupted``; one stopped before it could (still importing) is recorded
``interrupted`` by the parent. A worker whose parent died stops at its next step boundary as if signalled.

Each worker gets a temporary directory ``mlo-bench-worker-<parent pid>-*``; a parent killed by SIGKILL cannot remove
it, so every run first removes those whose parent process is gone (:func:`clean_stale_tmp`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mlo_bench.suite.measure import provenance, threads
from mlo_bench.suite.run.plan import Plan

POLL_S = 0.05
TMP_PREFIX = "mlo-bench-worker-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


TMP_PREFIXES = (TMP_PREFIX, "mlo-bench-verify-")


def clean_stale_tmp(root: str | None = None, prefixes: tuple[str, ...] = TMP_PREFIXES) -> list[str]:
    """Remove this user's ``<prefix><pid>-*`` temporary directories whose process ``pid`` is no longer alive (left
    behind by a sweep killed with SIGKILL); returns the removed paths."""
    import shutil

    root = root or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        prefix = next((p for p in prefixes if entry.name.startswith(p)), None)
        if prefix is None:
            continue
        pid, tagged, _ = entry.name[len(prefix):].partition("-")
        if not tagged:  # not named by this code (tempfile's random part has no "-"): not ours to judge
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def _published(results_dir: str, hash_: str, before: set[str]) -> dict[str, Any] | None:
    """A record with config hash ``hash_`` published to ``results_dir`` since ``before`` (the run dirs that existed
    when the worker started): the worker's own, when it committed before being stopped."""
    from mlo_bench.suite.run.records import read_records

    runs = Path(results_dir) / "runs"
    if not runs.is_dir():
        return None
    for path in sorted(runs.iterdir()):
        if path.name.startswith(".tmp-") or path.name in before:
            continue
        for rec in read_records([path / "record.json"]) if (path / "record.json").exists() else []:
            if rec.get("config_hash") == hash_:
                return rec
    return None


def _run_dirs(results_dir: str) -> set[str]:
    runs = Path(results_dir) / "runs"
    return {p.name for p in runs.iterdir()} if runs.is_dir() else set()


def _worker(config_path: str, result_path: str, admitted: bool = False) -> None:
    """Worker side: run the config in ``config_path``; write the record (or the failure) to ``result_path``.
    ``admitted``: the parent found the backend installed and taking the method."""
    from mlo_bench.suite.run import interrupt

    with interrupt.handling():
        interrupt.watch_parent(os.getppid())
        _work(config_path, result_path, admitted)


def _work(config_path: str, result_path: str, admitted: bool) -> None:
    from mlo_bench.suite.run.records import write_json_atomic

    try:
        from mlo_bench.suite.plugins import registry
        from mlo_bench.suite.run.execute import Admission, execute
        from mlo_bench.suite.run.plan import prepare

        registry.discover()
        plan = prepare(json.loads(Path(config_path).read_text()))
        if admitted:
            plan.admission = Admission()
        try:
            plan.backend_cls.check_available()  # imports the framework (seconds) before the clock starts
        except Exception:  # noqa: BLE001 - execute() records it as unsupported
            pass
        Path(result_path + ".started").touch()  # the time limit counts from here, not from interpreter start-up
        write_json_atomic(Path(result_path), {"record": execute(plan)})
    except KeyboardInterrupt:  # a second signal before the run began: the parent records it
        write_json_atomic(Path(result_path), {"interrupted": True})
    except BaseException:  # noqa: BLE001 - the parent records it
        import traceback

        write_json_atomic(Path(result_path), {"error": traceback.format_exc()})


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_isolated(plan: Plan) -> dict[str, Any]:
    """Execute ``plan`` in a fresh Python process (``python -m mlo_bench.suite.run.isolate``);
    always returns a committed record.

    A subprocess rather than ``multiprocessing``: launchers such as joblib/loky change the process start method, and a
    plain interpreter is the most isolated worker anyway.
    """
    from mlo_bench.suite.run import interrupt
    from mlo_bench.suite.run.execute import commit, new_record
    from mlo_bench.suite.run.records import config_hash

    clean_stale_tmp()
    plan.task = None  # the worker builds its own
    admitted = plan.admission is not None and plan.admission.unavailable is None and plan.admission.refused is None
    limits = plan.config.get("limits") or {}
    time_s, memory_gb = limits.get("time_s"), limits.get("memory_gb")
    started = provenance.now()
    provenance.start_snapshot()  # for a record this parent writes itself (timeout, oom, a worker that died)
    deadline = None
    cap = int(memory_gb * 2**30) if memory_gb else None
    status = reason = error = None
    before = _run_dirs(plan.results_dir)
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-") as tmp:
        config_path, result_path = Path(tmp) / "config.json", Path(tmp) / "result.json"
        config_path.write_text(json.dumps(plan.config))
        # the thread settings travel in the environment, read before the worker imports torch, BLAS or XLA
        env = {**os.environ, **threads.env_for(plan.threads)}
        if plan.world_size > 1 and hasattr(plan.backend_cls, "parallel_env"):  # e.g. jax's host devices, pre-import
            env.update(plan.backend_cls.parallel_env(plan.world_size, env))
        # a second signal is forwarded too, never raised here: the worker records itself
        with interrupt.forwarding():
            worker = subprocess.Popen([sys.executable, "-m", "mlo_bench.suite.run.isolate", str(config_path),
                                       str(result_path), *(["admitted"] if admitted else [])],
                                      env=env, process_group=0)  # Ctrl-C reaches the parent, which forwards it
            forwarded = interrupt.count()
            try:
                while True:
                    code = worker.poll()
                    if code is not None:
                        result = json.loads(result_path.read_text()) if result_path.exists() else {}
                        if "record" in result:
                            return result["record"]
                        if interrupt.count() > forwarded or "interrupted" in result or code == -signal.SIGTERM:
                            status = "interrupted"
                            reason = f"interrupted by {interrupt.requested() or 'SIGTERM'} before the run began"
                        elif "error" in result:
                            error = result["error"]
                            status, reason = "error", "worker failed: " + error.strip().splitlines()[-1]
                        elif code == -signal.SIGKILL:
                            status, reason = "oom", "worker killed by SIGKILL (the kernel's OOM killer, most likely)"
                        else:
                            status, reason = "error", f"worker exited with code {code} before writing its record"
                        break
                    if interrupt.count() > forwarded:  # the worker stops at its next step boundary and records itself
                        forwarded = interrupt.count()
                        # the signal itself once the worker has started (its handler is in place: the record names
                        # it); SIGTERM while it may still be importing (it then dies quietly, recorded here)
                        started_ = Path(str(result_path) + ".started").exists()
                        sig = signal.Signals.__members__.get(interrupt.requested() or "", signal.SIGTERM)
                        os.kill(worker.pid, sig if started_ else signal.SIGTERM)
                    if deadline is None and time_s and Path(str(result_path) + ".started").exists():
                        deadline = time.monotonic() + time_s
                    if deadline is not None and time.monotonic() > deadline:
                        status, reason = "timeout", f"exceeded limits.time_s={time_s}"
                        break
                    if cap is not None and _rss_bytes(worker.pid) > cap:
                        status, reason = "oom", f"worker resident memory exceeded limits.memory_gb={memory_gb}"
                        break
                    time.sleep(POLL_S)
            finally:
                if worker.poll() is None:
                    os.kill(worker.pid, signal.SIGKILL)
                    worker.wait()
        # the worker is gone: if it finished after all (between the last poll and the kill), its record wins
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        if "record" in result:
            return result["record"]
    own = _published(plan.results_dir, config_hash(plan.config), before)
    if own is not None:
        return own
    record = new_record(plan)
    record["status"], record["reason"] = status, reason
    if error:
        record["traceback"] = error
    return commit(plan, record, started)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], sys.argv[3:] == ["admitted"])
