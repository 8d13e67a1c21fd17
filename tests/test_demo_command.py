"""`mlo-bench demo`: the main job's sweeps in one process, then the report; each sweep's jobs composed once."""

from __future__ import annotations

import json

import pytest

from mlo_bench.suite.cli import demo
from mlo_bench.suite.cli.commands import main
from mlo_bench.suite.run.records import read_records

#: every sweep cut to one backend, one seed and a few steps: the command's plumbing, not the benchmark
SMALL = ["backend=torch", "seed=0", "steps=3", "hypergrad_check=false", "progress=false"]


def test_the_main_job_lists_named_experiments_that_exist():
    from mlo_bench.suite.run.compose import experiments

    names = demo.experiments()
    assert names and len(set(names)) == len(names)
    assert set(names) <= set(experiments()), "each entry is a file of suite/conf/experiment/"


def test_demo_runs_its_sweeps_in_one_process_then_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "experiments", lambda: ["demo", "da_demo"])
    results = tmp_path / "results"
    code = main(["demo", f"results_dir={results}", *SMALL, "method=exact"])
    assert code == 0, capsys.readouterr().err
    tasks = sorted({r["task"] for r in read_records([results])})
    assert tasks == ["domain_adaptation", "quadratic"]
    assert (results / "report" / "report.md").exists() and (results / "report" / "report.html").exists()
    sweeps = sorted(results.glob("multirun/*/summary.json"))
    assert len(sweeps) == 2, "a ledger per sweep, even two starting within one second"
    for path in sweeps:
        summary = json.loads(path.read_text())
        assert summary["end"] >= summary["start"] and summary["exit_code"] == 0
        assert summary["reported"] == summary["total"]
    # again: every run resumes from its record, nothing is trained twice
    before = len(list(results.glob("runs/*/record.json")))
    assert main(["demo", f"results_dir={results}", *SMALL, "method=exact"]) == 0
    assert len(list(results.glob("runs/*/record.json"))) == before


@pytest.mark.parametrize("arg", ["-m", "+experiment=demo", "steps"])
def test_demo_takes_only_run_key_overrides(arg, tmp_path, capsys):
    assert main(["demo", f"results_dir={tmp_path}", arg]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mlo-bench demo: error:") and repr(arg) in err
    assert not (tmp_path / "runs").exists(), "nothing was run"


def test_bad_input_stops_the_demo_before_any_work(tmp_path, capsys):
    assert main(["demo", f"results_dir={tmp_path}", "steps=0"]) == 2
    assert "steps must be >= 1" in capsys.readouterr().err
    assert list(tmp_path.glob("runs/*/record.json")) == []


def test_results_dir_is_the_last_override():
    assert str(demo.results_dir(["threads=1"])) == "results"
    assert str(demo.results_dir(["results_dir=a", "results_dir=b"])) == "b"


def test_each_job_of_a_sweep_is_composed_once(tmp_path, monkeypatch):
    """Hydra's sweeper composes every job to validate the batch, its launcher composes each again: the second is the
    first's config, handed over once — one composition fewer per job, the same records."""
    from contextlib import nullcontext

    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    from mlo_bench.suite.cli import compose_once

    calls = []
    original = ConfigLoaderImpl.load_configuration
    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))

    def sweep(results):
        calls.clear()
        assert main(["run", "-m", "task=quadratic", "task.d=4", "method=exact,cg,neumann", "steps=2",
                     f"results_dir={results}", "isolate=false", "progress=false", "hypergrad_check=false"]) == 0
        return len(calls), {r["config_hash"] for r in read_records([results])}

    once, hashes = sweep(tmp_path / "a")
    monkeypatch.setattr(compose_once, "composed_once", lambda: nullcontext({}))
    twice, hashes_twice = sweep(tmp_path / "b")
    assert twice - once == 3, "one composition saved per job"
    assert hashes == hashes_twice and len(hashes) == 3
