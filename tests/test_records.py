"""Records: reproducible from a seed, written atomically, never overwritten, robust to corrupt files."""

from __future__ import annotations

import json

import pytest

from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare
from mlo_bench.suite.run.records import commit_run, config_hash, read_records

MEASURED = ("time_", "cpu_", "peak_memory_bytes", "compile_s", "steps_per_s")


def _numbers(record):
    return {k: v for k, v in record["metrics"].items() if not k.startswith(MEASURED)}


@pytest.mark.parametrize("method", ["cg", "unroll", "darts"])
def test_same_config_and_seed_give_identical_metrics(tmp_path, method):
    overrides = [f"method={method}", "task.d=12", "steps=15", "progress=false", f"results_dir={tmp_path}"]
    first = execute(prepare(compose(overrides)))
    second = execute(prepare(compose(overrides)))
    assert first["status"] == second["status"] == "ok"
    assert _numbers(first) == _numbers(second)
    assert first["config_hash"] == second["config_hash"]
    assert first["run_id"] != second["run_id"], "a second run must not overwrite the first"
    third = execute(prepare(compose([*overrides, "seed=1"])))
    assert _numbers(third) != _numbers(first), "a different seed must change the numbers"


def test_record_holds_the_schema_fields(tmp_path):
    rec = execute(prepare(compose(["task.d=5", "steps=2", "progress=false", f"results_dir={tmp_path}"])))
    for key in ("schema", "run_id", "task", "backend", "method", "seed", "status", "reason", "config",
                "config_hash", "metrics", "provenance"):
        assert key in rec
    for key in ("outer_loss", "hypergrad_rel_error", "peak_memory_bytes", "memory_kind", "time_inner_s",
                "time_hypergrad_s", "time_outer_s", "time_total_s", "compile_s"):
        assert key in rec["metrics"]
    for key in ("python", "cpu", "torch", "torch_threads", "numpy", "command", "start", "end", "git_commit"):
        assert key in rec["provenance"]
    on_disk = json.loads(open(rec["_path"]).read())
    assert on_disk["metrics"] == rec["metrics"]


def test_config_hash_ignores_where_results_go():
    a = {"seed": 0, "task": {"d": 3}, "results_dir": "a", "progress": True}
    b = {"seed": 0, "task": {"d": 3}, "results_dir": "b", "progress": False}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "seed": 1})


def test_commit_never_overwrites_and_leaves_no_staging(tmp_path):
    first = commit_run(tmp_path, "run", {"status": "ok", "metrics": {"x": 1}})
    second = commit_run(tmp_path, "run", {"status": "ok", "metrics": {"x": 2}})
    assert first.name == "run" and second.name == "run-1"
    assert json.loads((first / "record.json").read_text())["metrics"] == {"x": 1}
    assert not list((tmp_path / "runs").glob(".tmp-*"))


def test_reader_skips_corrupt_records_by_path(tmp_path):
    commit_run(tmp_path, "good", {"status": "ok", "metrics": {}})
    bad = tmp_path / "runs" / "bad"
    bad.mkdir()
    (bad / "record.json").write_text('{"status": "ok", "metr')  # truncated
    stale = tmp_path / "runs" / ".tmp-killed-123"
    stale.mkdir()
    (stale / "record.json").write_text("{}")
    with pytest.warns(UserWarning, match="bad/record.json"):
        records = read_records([tmp_path])
    assert [r["run_id"] if "run_id" in r else r["_path"] for r in records] == ["good"]


def test_unsupported_and_error_are_recorded_not_raised(tmp_path, monkeypatch):
    from mlo_bench.tasks.quadratic import Quadratic

    monkeypatch.setattr(Quadratic, "supports", lambda self, m: "not for this test" if m == "darts" else None)
    rec = execute(prepare(compose(["method=darts", "task.d=4", "steps=2", "progress=false",
                                    f"results_dir={tmp_path}"])))
    assert rec["status"] == "unsupported" and rec["reason"] == "not for this test"

    def boom(self, backend, params):
        raise RuntimeError("metrics exploded")

    monkeypatch.setattr(Quadratic, "metrics", boom)
    rec = execute(prepare(compose(["method=cg", "task.d=4", "steps=2", "progress=false",
                                    f"results_dir={tmp_path}"])))
    assert rec["status"] == "error" and "metrics exploded" in rec["reason"] and "Traceback" in rec["traceback"]
    assert rec["metrics"]["steps_done"] == 2, "what was measured before the failure is kept"


def test_divergence_is_a_status_with_its_step(tmp_path):
    rec = execute(prepare(compose(["method=exact", "task.d=6", "steps=200", "task.outer.lr=1000",
                                    "progress=false", f"results_dir={tmp_path}"])))
    assert rec["status"] == "diverged"
    assert "non-finite" in rec["reason"] and isinstance(rec["metrics"]["diverged_step"], int)


def test_provenance_records_load_cpus_and_threads(monkeypatch):
    from mlo_bench.suite.measure import provenance

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(provenance.os, "getloadavg", lambda: (3.25, 1.0, 0.5))
    assert provenance.start_snapshot() == {"loadavg_start": 3.25}
    monkeypatch.setattr(provenance.os, "getloadavg", lambda: (0.75, 1.0, 0.5))
    p = provenance.collect({})
    assert p["loadavg_start"] == 3.25 and p["loadavg_end"] == 0.75 and p["cpu_count"] >= 1
    assert p["threads"]["OMP_NUM_THREADS"] == "1" and isinstance(p["threads"].get("torch", 1), int)
    assert "loadavg_start" not in provenance.collect({}), "a start snapshot belongs to one run"


def test_provenance_lists_the_cpu_flags_that_decide_half_precision_speed(tmp_path):
    from mlo_bench.suite.measure import provenance

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 "
                    "amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert provenance.cpu_flags(str(info)) == ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"), "first CPU's"
    (tmp_path / "none").write_text("processor\t: 0\n")
    assert provenance.cpu_flags(str(tmp_path / "none")) is None
    assert provenance.cpu_flags(str(tmp_path / "missing")) is None
    flags = provenance.collect({})["cpu_flags"]
    assert flags is None or set(flags) <= set(provenance.CPU_FLAGS)


@pytest.mark.parametrize("record,problem", [
    ({"status": "ok", "metrics": None}, "'metrics' is NoneType"),
    ({"status": "ok", "metrics": {}, "config": "x"}, "'config' is str"),
    ({"status": "ok", "metrics": {}, "provenance": []}, "'provenance' is list"),
    ({"metrics": {}}, "no status"),
    ([1, 2], "a JSON list"),
    ({"status": "ok", "metrics": {}, "config": {}}, None),
])
def test_record_problem_names_what_is_wrong(record, problem):
    from mlo_bench.suite.run.records import record_problem

    got = record_problem(record)
    assert got == problem if problem is None else problem in got
