"""Hardening found by probes: one record per isolated run, device=cuda without CUDA, a lock per config, stale worker
temp dirs, the config hash and its documentation, records published atomically."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mlo_bench.suite.cli import main
from mlo_bench.suite.run import records as records_mod
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.isolate import TMP_PREFIX, clean_stale_tmp
from mlo_bench.suite.run.job import run_job
from mlo_bench.suite.run.plan import prepare
from mlo_bench.suite.run.records import BUSY, Busy, config_hash, config_lock, read_records

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["task.d=5", "steps=2", "progress=false"]

#: a plugin module that slows the *worker* (never the parent) right after it has committed its record: while it
#: shuts down (``exit``: an atexit handler, after the result file is written) or before it can tell the parent
#: (``commit``: after the record is published, before the result file) — the two windows past limits.time_s in
#: which the parent used to write a ``timeout`` record beside the worker's ``ok`` one.
#: The parent's clock starts when the worker touches ``<result>.started``; the plugin holds that marker back until the
#: record is committed, so the limit always falls inside the window, however long the run took on a loaded machine
#: (with the marker touched at the run's start, a 6 s limit failed under load 3–4: the run itself outlasted it).
SLOW_WORKER = '''
import atexit, os, pathlib, sys, time
if sys.argv[0].endswith(os.path.join("suite", "run", "isolate.py")):
    marker = pathlib.Path(sys.argv[2] + ".started")
    real_touch = pathlib.Path.touch
    def touch(self, *args, **kwargs):
        if self != marker:
            real_touch(self, *args, **kwargs)
    pathlib.Path.touch = touch
    def start_the_clock_and_hang():
        real_touch(marker)
        time.sleep(60)
    if os.environ["SLOW_WORKER"] == "exit":
        atexit.register(start_the_clock_and_hang)
    else:
        import mlo_bench.suite.run.execute as runner
        real = runner.commit
        def commit(*args, **kwargs):
            record = real(*args, **kwargs)
            start_the_clock_and_hang()
            return record
        runner.commit = commit
'''


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlo_bench.suite.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "CI": "true", **(env or {})})


@pytest.mark.parametrize("mode", ["exit", "commit"])
def test_a_run_finishing_near_the_time_limit_has_exactly_one_record(tmp_path, mode):
    (tmp_path / "slow_worker.py").write_text(SLOW_WORKER)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
           "MLO_BENCH_PLUGINS": "slow_worker", "SLOW_WORKER": mode}
    results = tmp_path / "results"
    proc = cli("run", "task=quadratic", "task.d=10", "steps=2", "limits.time_s=1", "progress=false",
               f"results_dir={results}", cwd=tmp_path, env=env)
    recs = read_records([results])
    assert len(recs) == 1, [(r["status"], r["reason"]) for r in recs]
    assert recs[0]["status"] == "ok", "the worker finished: its record is the run's"
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_device_cuda_without_cuda_is_one_line_before_any_work(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["run", "device=cuda", *SMALL, f"results_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "device=cuda" in err and "no CUDA device" in err
    assert not (tmp_path / "runs").exists()
    assert main(["verify", "device=cuda", "task.d=5", "method=exact"]) == 2
    assert "device=cuda" in capsys.readouterr().err


def test_the_summary_names_the_device_used(capsys, tmp_path):
    assert main(["run", *SMALL, "isolate=false", "device=auto", f"results_dir={tmp_path}"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert head.endswith(", device cpu)"), head
    from mlo_bench.suite.run.summary import summary_lines

    rec = read_records([tmp_path])[0]
    rec["provenance"]["device"] = None  # e.g. a timeout recorded by the parent: no backend was set up there
    assert "no device set up (device=auto asked)" in summary_lines(rec)[0]


# ---------------------------------------------------------------------------------------------------------------
# one run per config at a time


def _plan(tmp_path, *extra):
    return prepare(compose([*SMALL, "isolate=false", f"results_dir={tmp_path}", *extra]))


def test_a_second_process_finds_the_lock_and_does_not_run(tmp_path, capsys):
    plan = _plan(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom mlo_bench.suite.run.records import config_lock\n"
        f"with config_lock({str(tmp_path)!r}, {config_hash(plan.config)!r}):\n"
        "    print('held', flush=True); time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        record = run_job(plan)
        out = capsys.readouterr().out
        assert record["status"] == BUSY and f"pid {holder.pid}" in record["reason"]
        assert out.count("\n") == 1 and out.startswith("busy: the same config") and "repeat=N" in out
        assert not (tmp_path / "runs").exists(), "nothing was run or written"
        assert main(["run", *SMALL, "isolate=false", f"results_dir={tmp_path}"]) == 3
        again = run_job(_plan(tmp_path, "repeat=1"))  # a deliberate repeat is its own config
        assert again["status"] == "ok"
    finally:
        holder.kill()
        holder.wait()
    done = run_job(plan)  # the holder died without cleaning up: its lock is no obstacle
    assert done["status"] == "ok" and not list((tmp_path / "locks").iterdir())


def test_the_lock_is_exclusive_in_process_and_released(tmp_path):
    with config_lock(tmp_path, "abc") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(Busy, match="is being run by pid"):
            with config_lock(tmp_path, "abc"):
                pass
    assert not path.exists()
    with config_lock(tmp_path, "abc"):
        pass


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "abc.lock").write_text(json.dumps({"pid": 999999999, "host": "gone"}))
    with config_lock(tmp_path, "abc") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_repeat_and_plugins_enter_the_hash_only_when_set():
    base = {"task": {"name": "quadratic"}, "seed": 0}
    assert config_hash({**base, "repeat": 0, "plugins": []}) == config_hash(base), "older records keep their hash"
    assert config_hash({**base, "repeat": 1}) != config_hash(base)
    assert config_hash({**base, "plugins": ["m"]}) != config_hash(base)


def test_the_documented_hash_keys_match_the_code():
    """docs/records-and-measurement.md and results/README.md name exactly the keys the code leaves out of the hash."""
    expected = set(records_mod.NON_NUMERIC_KEYS)
    for doc in (ROOT / "docs" / "records-and-measurement.md", ROOT / "results" / "README.md"):
        text = doc.read_text()
        match = re.search(r"without\s[^.|]*?((?:`\w+`(?:,\s|\sand\s|,?\sand\s)?)+)", text.split("config_hash", 1)[1])
        assert match, doc
        assert set(re.findall(r"`(\w+)`", match.group(1))) == expected, (doc, match.group(0))
        for key in (*records_mod.HASHED_UNLESS_DEFAULT, *records_mod.NESTED_UNLESS_DEFAULT):
            assert f"`{key}`" in text, (doc, key)


# ---------------------------------------------------------------------------------------------------------------
# worker temp dirs of a killed sweep


def test_stale_worker_dirs_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{TMP_PREFIX}{dead.pid}-abc"
    live = tmp_path / f"{TMP_PREFIX}{os.getpid()}-def"
    other = tmp_path / "unrelated-123-x"
    for d in (stale, live, other):
        d.mkdir()
        (d / "config.json").write_text("{}")
    assert clean_stale_tmp(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and live.exists() and other.exists()


def test_a_killed_parent_leaves_no_worker_dir_after_the_next_run(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = Path(tempfile.gettempdir()) / f"{TMP_PREFIX}{dead.pid}-killed"
    left.mkdir(exist_ok=True)
    assert main(["run", *SMALL, "isolate=true", f"results_dir={tmp_path}"]) == 0
    assert not left.exists()


# ---------------------------------------------------------------------------------------------------------------
# records appear whole or not at all


def test_records_are_published_atomically(tmp_path):
    """Every file opened for writing and every rename during a commit is checked against the invariant: no run
    directory outside ``runs/.tmp-*`` is visible without a complete record.json and trace.csv. Writing record.json
    in place (or renaming the directory before its files are written) fails here."""
    runs = tmp_path / "runs"
    seen: list[str] = []
    problems: list[str] = []

    def check(event, args):
        if not active or event not in ("open", "os.rename", "os.replace", "os.mkdir"):
            return
        path = str(args[0])
        if not path.startswith(str(tmp_path)):
            return
        if event == "open" and not (len(args) > 1 and args[1] and any(c in str(args[1]) for c in "wxa+")) \
                and not (isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR)):
            return
        seen.append(f"{event} {path}")
        if not runs.is_dir():
            return
        for run in runs.iterdir():
            if run.name.startswith(".tmp-"):
                continue
            try:
                json.loads((run / "record.json").read_text())["status"]
                (run / "trace.csv").read_text()
            except (OSError, ValueError, KeyError) as exc:
                problems.append(f"{event} {path}: {run.name} visible but incomplete ({type(exc).__name__})")

    active = True
    sys.addaudithook(check)
    try:
        record = {"status": "ok", "metrics": {"x": list(range(20000))}}
        final = records_mod.commit_run(tmp_path, "run-1", record, {"trace.csv": "step\n"})
        records_mod.commit_run(tmp_path, "run-1", dict(record), {"trace.csv": "step\n"})  # a clash: -1 suffix
    finally:
        active = False
    assert any("record.json" in s for s in seen), "the hook saw the writes"
    assert problems == []
    assert json.loads((final / "record.json").read_text())["metrics"]["x"][-1] == 19999
    assert sorted(p.name for p in runs.iterdir()) == ["run-1", "run-1-1"]


def test_nested_knobs_added_later_enter_the_hash_only_away_from_their_default():
    """An optimizer's eps_root and cg's negative_curvature came after records were written with the same configs."""
    base = {"method": {"name": "cg", "iterations": 10}, "task": {"inner": {"name": "adam", "lr": 0.1}}, "seed": 0}
    same = {"method": {"name": "cg", "iterations": 10, "negative_curvature": "continue"},
            "task": {"inner": {"name": "adam", "lr": 0.1, "eps_root": 0.0}}, "seed": 0}
    assert config_hash(same) == config_hash(base)
    assert config_hash({**same, "method": {**same["method"], "negative_curvature": "stop"}}) != config_hash(base)
    assert config_hash({**same, "task": {"inner": {"name": "adam", "lr": 0.1, "eps_root": 1e-16}}}) != config_hash(base)


# ---------------------------------------------------------------------------------------------------------------
# the demos sweep in one process (isolate=false): a run must not leave state that changes the next one's numbers


def _numbers(results_dir: Path) -> dict[str, dict]:
    skip = ("time_", "cpu_", "compile", "steps_per_s", "peak_memory_bytes")
    return {r["config_hash"]: {k: v for k, v in r["metrics"].items() if not k.startswith(skip)}
            for r in read_records([results_dir / "runs"])}


def test_a_sweep_in_one_process_records_the_numbers_of_isolated_runs(tmp_path):
    pytest.importorskip("jax")
    # jax in float64 first (it sets process-wide flags, restored by teardown), then in float32, then torch
    sweep = ["backend=jax,torch", "dtype=float64,float32", "method=cg", "task.d=6", "steps=3", "progress=false"]
    assert main(["run", "-m", *sweep, "isolate=false", f"results_dir={tmp_path / 'one'}"]) == 0
    one = _numbers(tmp_path / "one")
    assert len(one) == 4
    for backend, dtype in (("jax", "float32"), ("torch", "float64")):  # an isolated worker each: seconds apiece
        assert main(["run", f"backend={backend}", f"dtype={dtype}", "method=cg", "task.d=6", "steps=3",
                     "progress=false", "isolate=true", f"results_dir={tmp_path / 'iso'}"]) == 0
    iso = _numbers(tmp_path / "iso")
    assert len(iso) == 2
    for hash_, metrics in iso.items():
        assert one[hash_] == metrics
