"""Ctrl-C and SIGTERM (suite/run/interrupt.py): the run stops at a step boundary, its record says ``interrupted`` with
the steps done and the metrics so far, one line and no traceback, exit 130; a sweep records the run it stopped and
stops; the same command again runs the interrupted config anew (a finished one is skipped)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlo_bench.suite.run.records import FINAL_STATUSES, STATUSES, find_completed, read_records

#: a plugin module that slows every outer step of the runs whose seed is ``$SLOW_SEED`` (in the worker too: plugins
#: from ``MLO_BENCH_PLUGINS`` are imported there) and touches ``$SLOW_MARKER`` once a step is done — the test signals
#: after the marker, never after a guessed sleep; without ``SLOW_SEED`` the same command runs at full speed
SLOW_STEPS = '''
import os, pathlib, time
import mlo_bench.suite.engine.loop as loop
_real = loop.Run.step
def step(self, t, *args, **kwargs):
    if os.environ.get("SLOW_SEED") == str(self.plan.seed):
        if t == 1:
            pathlib.Path(os.environ["SLOW_MARKER"]).touch()
        time.sleep(0.02)
    return _real(self, t, *args, **kwargs)
loop.Run.step = step
'''
STEPS = 3000  # 60 s at the slowed pace: a signal that is not honoured fails the test, it never passes by luck


def _start(tmp_path: Path, args: list[str], slow_seed: int | None) -> subprocess.Popen:
    (tmp_path / "slow_steps.py").write_text(SLOW_STEPS)
    env = {**os.environ, "CI": "true", "MLO_BENCH_PLUGINS": "slow_steps", "SLOW_MARKER": str(tmp_path / "marker"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    env.pop("SLOW_SEED", None)
    if slow_seed is not None:
        env["SLOW_SEED"] = str(slow_seed)
    (tmp_path / "marker").unlink(missing_ok=True)
    # a session of its own: signalling its process group is what a terminal's Ctrl-C does
    return subprocess.Popen([sys.executable, "-m", "mlo_bench.suite.cli", "run", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _signal_after_a_step(proc: subprocess.Popen, marker: Path, sig: int, group: bool) -> tuple[str, str]:
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never took a step"
        time.sleep(0.05)
    if group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    return out, err


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    return proc.communicate(timeout=300)


def _check_interrupted(rec: dict, signame: str) -> None:
    m = rec["metrics"]
    assert rec["status"] == "interrupted" and signame in rec["reason"], rec["reason"]
    assert 1 <= m["steps_done"] < STEPS and f"after {m['steps_done']} outer steps" in rec["reason"]
    assert isinstance(m["outer_loss"], float) and m["outer_loss"] > 0  # the loss reached at the boundary
    rows = list(csv.DictReader(open(Path(rec["_path"]).parent / "trace.csv")))
    assert int(rows[-1]["step"]) == m["steps_done"]  # the trace keeps the steps done


@pytest.mark.parametrize("isolate,sig,group", [("true", signal.SIGINT, True), ("false", signal.SIGTERM, False)],
                         ids=["isolated-ctrl-c", "in-process-sigterm"])
def test_a_signal_during_a_run_records_it_interrupted_and_a_rerun_runs_it_anew(tmp_path, isolate, sig, group):
    results = tmp_path / "results"
    args = ["task.d=5", f"steps={STEPS}", "progress=false", f"isolate={isolate}", f"results_dir={results}"]
    proc = _start(tmp_path, args, slow_seed=0)
    out, err = _signal_after_a_step(proc, tmp_path / "marker", sig, group)
    assert proc.returncode == 130, err[-2000:]
    lines = [ln for ln in err.splitlines() if not ln.startswith("warning: load average")]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert len(lines) == 1 and lines[0].startswith("interrupted: quadratic × torch × cg"), err
    (rec,) = read_records([results])
    _check_interrupted(rec, signal.Signals(sig).name)
    assert rec["_path"] in lines[0]
    assert find_completed(results, rec["config_hash"]) is None  # not a finished record: resume runs it again

    again = _start(tmp_path, args, slow_seed=None)
    out, err = _finish(again)
    assert again.returncode == 0, err[-2000:]
    assert "skipped: same config" not in out
    statuses = sorted(r["status"] for r in read_records([results]))
    assert statuses == ["interrupted", "ok"]


def test_an_interrupted_sweep_records_the_run_stops_and_resumes(tmp_path):
    results = tmp_path / "results"
    args = ["-m", "seed=0,1,2", "task.d=5", f"steps={STEPS // 10}", "progress=false", "isolate=false",
            f"results_dir={results}"]
    proc = _start(tmp_path, args, slow_seed=1)
    out, err = _signal_after_a_step(proc, tmp_path / "marker", signal.SIGINT, True)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err
    assert sum(ln.startswith("interrupted: ") for ln in err.splitlines()) == 1
    assert "sweep interrupted: 2/3 runs — ok 1, interrupted 1; the same command again resumes it" in err
    by_seed = {r["seed"]: r for r in read_records([results])}
    assert set(by_seed) == {0, 1}, "the sweep stops: seed 2 never ran"
    assert by_seed[0]["status"] == "ok"
    assert by_seed[1]["status"] == "interrupted" and 1 <= by_seed[1]["metrics"]["steps_done"] < STEPS // 10
    (summary,) = (results / "multirun").glob("*/summary.json")
    assert json.loads(summary.read_text())["interrupted"] is True

    resumed = _start(tmp_path, args, slow_seed=None)
    out, err = _finish(resumed)
    assert resumed.returncode == 0, err[-2000:]
    assert "sweep finished: 3/3 runs — ok 3 (1 resumed from earlier records)" in out
    done = [r for r in read_records([results]) if r["status"] == "ok"]
    assert sorted(r["seed"] for r in done) == [0, 1, 2]


def test_interrupted_is_a_known_status_that_resume_runs_again():
    assert "interrupted" in STATUSES and "interrupted" not in FINAL_STATUSES
