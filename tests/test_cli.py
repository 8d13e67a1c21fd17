"""The command line: listing, running, and one-line errors (exit code 2) for bad input before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlo_bench.suite.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_no_arguments_prints_usage(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 0 and "usage: mlo-bench" in out and "run" in out and "list" in out


def test_list_shows_every_role_and_availability(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for word in ("tasks:", "backends:", "methods:", "quadratic", "torch", "cg", "exact", "neumann", "darts",
                 "unroll", "first_order", "available"):
        assert word in out


def test_run_writes_a_record_and_prints_a_summary(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "run", "task=quadratic", "backend=torch", "method=cg", "seed=0", "task.d=10",
                           "steps=5", f"results_dir={tmp_path}", "progress=false")
    assert code == 0
    assert "outer_loss" in out and "hypergrad_rel_error" in out and "time per outer step" in out
    records = list(tmp_path.glob("runs/*/record.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["status"] == "ok" and rec["method"] == "cg" and rec["metrics"]["steps_done"] == 5
    assert (records[0].parent / "trace.csv").read_text().startswith("step,outer_loss")


@pytest.mark.parametrize("args,expected", [
    (["method=cgg"], "unknown method 'cgg'; did you mean 'cg'?"),
    (["task=quadratc"], "unknown task 'quadratc'; did you mean 'quadratic'?"),
    (["backend=tensorflow"], "unknown backend 'tensorflow'"),
    (["tsk=quadratic"], "unknown config key 'tsk'; did you mean 'task'?"),
    (["task.d=0"], "task.d must be >= 1"),
    (["task.levels=1"], "task.levels must be >= 2"),
    (["method=cg", "method.iterations=0"], "method.iterations must be >= 1"),
    (["method=neumann", "method.alpha=-1"], "method.alpha must be > 0"),
    (["task.inner.lr=-0.1"], "task.inner.lr must be > 0"),
    (["dtype=float16"], "dtype must be one of float32, float64"),
    (["steps=0"], "steps must be >= 1"),
    (["task.d=abc"], "task.d"),
    (["method=exact", "method.iterations=3"], "iterations"),
    (["+experiment=mwn_dem"], "unknown experiment 'mwn_dem'; did you mean 'mwn_demo'?"),
    (["experiment=mwn_demo"], "experiment is added with a plus sign: +experiment=NAME"),
    (["+experiment=nosuch"], "unknown experiment 'nosuch'"),
    (["backend=naive", "backend.chain=sideways"], "backend.chain must be one of materialised, reverse"),
    (["-m", "--cfg", "job", "seed=0,1"], "Only one of --run, --multirun, --cfg"),
])
def test_bad_input_is_one_line_exit_2_and_no_record(capsys, tmp_path, args, expected):
    code, out, err = run_cli(capsys, "run", *args, f"results_dir={tmp_path}")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0]
    assert not (tmp_path / "runs").exists()


def test_unknown_names_list_the_valid_ones(capsys):
    _, _, err = run_cli(capsys, "run", "method=nope")
    for name in ("cg", "darts", "exact", "first_order", "neumann", "unroll"):
        assert name in err


def test_unknown_command(capsys):
    code, _, err = run_cli(capsys, "rnu")
    assert code == 2 and "did you mean 'run'?" in err


def test_run_help_lists_groups_and_keys(capsys):
    code, out, _ = run_cli(capsys, "run", "--help")
    assert code == 0
    for word in ("task", "backend", "method", "inner_steps", "dtype", "results_dir", "+experiment"):
        assert word in out


def test_console_script_and_hydra_multirun(tmp_path):
    """The installed entry point, through Hydra's multirun: two runs, two records, exit 0."""
    env = {**os.environ, "CI": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "mlo_bench.suite.cli", "run", "-m", "method=cg,exact", "task.d=8", "steps=3",
         f"results_dir={tmp_path}", "progress=false"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = sorted(Path(tmp_path).glob("runs/*/record.json"))
    assert {json.loads(p.read_text())["method"] for p in records} == {"cg", "exact"}
