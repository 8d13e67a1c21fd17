"""Sweeps that survive: launchers, kill-and-resume, failures recorded as results, sweep summaries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlo_bench.suite.cli.callbacks import count_jobs
from mlo_bench.suite.run.records import read_records

MEASURED = ("time_", "cpu_", "peak_memory_bytes", "compile_s", "steps_per_s")


def sweep(results: Path, *overrides: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mlo_bench.suite.cli", "run", "-m", *overrides,
         f"results_dir={results}", "progress=false"],
        capture_output=True, text=True, env=env, cwd=results.parent, timeout=timeout,
    )


def by_hash(results: Path) -> dict[str, dict]:
    return {r["config_hash"]: r for r in read_records([results])}


def numbers(record: dict) -> dict:
    return {k: v for k, v in record["metrics"].items() if not k.startswith(MEASURED)}


def test_count_jobs():
    assert count_jobs(["method=cg,exact", "seed=0,1,2", "task.d=5"], None) == 6
    assert count_jobs(["seed=0,1"], {"method": "a,b,c", "seed": "0"}) == 6, "command line wins over sweeper params"
    assert count_jobs(["seed=range(4)"], None) == 4
    experiment = {"+bilevel_problem": "quadratic,logreg,datacleaning", "+bilevel_solver": "soba,amigo", "seed": "0,1"}
    assert count_jobs(["+bilevel_problem=logreg"], experiment) == 4, "a +key given again replaces the experiment's"


@pytest.mark.parametrize("launcher", [
    "basic", "joblib", pytest.param("submitit_local", marks=pytest.mark.slow),  # 18 processes: ~90 s here
])
def test_3x2x3_sweep_writes_18_records_with_each_launcher(tmp_path, launcher):
    pytest.importorskip({"basic": "hydra", "joblib": "hydra_plugins.hydra_joblib_launcher",
                         "submitit_local": "hydra_plugins.hydra_submitit_launcher"}[launcher])
    results = tmp_path / "results"
    proc = sweep(results, f"hydra/launcher={launcher}", "method=cg,exact,darts", "task.levels=2,3", "seed=0,1,2",
                 "task.d=6", "steps=2", "isolate=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_records([results])
    assert len(records) == 18 and all(r["status"] == "ok" for r in records)
    assert len({r["config_hash"] for r in records}) == 18
    assert "sweep finished: 18/18 runs — ok 18" in proc.stdout


def test_submitit_local_launcher_runs_jobs_in_their_own_processes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    results = tmp_path / "results"
    proc = sweep(results, "hydra/launcher=submitit_local", "method=cg,exact", "task.d=6", "steps=2", "isolate=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_records([results])
    assert sorted(r["method"] for r in records) == ["cg", "exact"]
    assert len({r["provenance"]["hostname"] for r in records}) == 1


def test_killed_sweep_resumes_to_the_same_records(tmp_path):
    args = ("method=cg,exact,darts", "seed=0,1", "task.d=30", "steps=150", "isolate=false")
    reference = tmp_path / "reference" / "results"
    reference.parent.mkdir()
    assert sweep(reference, *args).returncode == 0
    expected = by_hash(reference)
    assert len(expected) == 6

    results = tmp_path / "killed" / "results"
    results.parent.mkdir()
    env = {**os.environ, "CI": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlo_bench.suite.cli", "run", "-m", *args, f"results_dir={results}", "progress=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while len(list((results / "runs").glob("2*/record.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = by_hash(results)
    assert 2 <= len(partial) < 6, "the kill must land mid-sweep"
    for run_dir in (results / "runs").iterdir():  # no partial record is visible: finished dirs or staging only
        assert run_dir.name.startswith(".tmp-") or json.loads((run_dir / "record.json").read_text())["status"]

    resumed = sweep(results, *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"({len(partial)} resumed from earlier records)" in resumed.stdout
    final = by_hash(results)
    assert set(final) == set(expected)
    for h, rec in expected.items():
        assert numbers(final[h]) == numbers(rec)


def test_failures_are_results_and_the_sweep_goes_on(tmp_path):
    results = tmp_path / "results"
    proc = sweep(results, "method=cg", "task.d=6", "task.outer.lr=0.01,1000", "steps=60,2000000",
                 "limits.time_s=20", "limits.memory_gb=4")
    assert proc.returncode == 1, proc.stderr[-3000:]  # a sweep with failed runs exits 1 (cli/callbacks.py)
    statuses = sorted((r["config"]["task"]["outer"]["lr"], r["config"]["steps"], r["status"])
                      for r in read_records([results]))
    assert statuses == [(0.01, 60, "ok"), (0.01, 2000000, "timeout"), (1000.0, 60, "diverged"),
                        (1000.0, 2000000, "diverged")]
    assert "sweep finished: 4/4 runs — ok 1, diverged 2, timeout 1" in proc.stdout

    proc = sweep(results, "method=cg", "task.d=6", "steps=5", "limits.memory_gb=0.05,8")
    assert proc.returncode == 1
    oom = [r for r in read_records([results]) if r["status"] == "oom"]
    assert len(oom) == 1 and "limits.memory_gb=0.05" in oom[0]["reason"]
    assert "ok 1, oom 1" in proc.stdout


def test_resume_skips_finished_runs_but_retries_errors(tmp_path, monkeypatch):
    from mlo_bench.suite.run.compose import compose
    from mlo_bench.suite.run.job import run_job
    from mlo_bench.suite.run.plan import prepare

    overrides = ["task.d=5", "steps=2", "isolate=false", f"results_dir={tmp_path}", "progress=false"]
    first = run_job(prepare(compose(overrides)))
    again = run_job(prepare(compose(overrides)))
    assert again["_path"] == first["_path"], "same config: the finished record is reused"
    fresh = run_job(prepare(compose([*overrides, "resume=false"])))
    assert fresh["_path"] != first["_path"]
    from mlo_bench.tasks.quadratic import Quadratic

    monkeypatch.setattr(Quadratic, "metrics", lambda self, b, p: 1 / 0)
    failed = run_job(prepare(compose([*overrides, "seed=3"])))
    assert failed["status"] == "error"
    retried = run_job(prepare(compose([*overrides, "seed=3"])))
    assert retried["_path"] != failed["_path"], "an error is not final: resume runs it again"
