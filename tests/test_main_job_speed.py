"""What keeps the main job fast without changing what it measures: each run's stages timed into its record (what the
profile script reads), one ConfigStore registration per change of plugins and no copy of the store per composition,
jax's peak bytes read off the fused step it already compiled, FLOPs counted on the lowered program, and the check's
single-edge hypergradient taken from the program the loop compiled."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("profile_main_job", ROOT / "benchmarks" / "profile_main_job.py")
profile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(profile)


def _run(tmp_path, *overrides):
    rec = execute(prepare(compose([*overrides, "isolate=false", "progress=false", f"results_dir={tmp_path}"])))
    assert rec["status"] == "ok", rec["reason"]
    return rec


def test_a_record_keeps_its_stages_and_they_fit_in_its_wall_time(tmp_path):
    rec = _run(tmp_path, "task=quadratic", "task.d=20", "backend=torch", "method=cg", "steps=5")
    stages = rec["provenance"]["stages_s"]
    assert {"setup", "build", "compile", "train", "floor", "hypergrad_check", "commit"} <= set(stages)
    assert all(v >= 0 for v in stages.values())
    row = profile.read_records(tmp_path)[0]
    wall = row["end"] - row["start"]
    nested = stages.get("count_flops", 0)  # inside "compile"
    assert sum(stages.values()) - nested <= wall + 0.01, (stages, wall)


def test_the_profile_splits_a_sweep_into_startup_runs_and_gaps():
    runs = [{"task": "t", "status": "ok", "start": 10.0, "end": 12.0, "compile_s": 0.0, "loadavg": 1.0,
             "stages": {"compile": 0.5, "count_flops": 0.1, "count_bytes": 0.1, "train": 1.0, "floor": 0.2}},
            {"task": "t", "status": "diverged", "start": 12.5, "end": 13.5, "compile_s": 0.0, "loadavg": 2.0,
             "stages": {"train": 0.5}}]
    out = profile.summarise(runs, start=7.0, end=14.0)
    assert (out["runs"], out["ok"]) == (2, 1)
    assert out["startup"] == pytest.approx(3.0) and out["between"] == pytest.approx(0.5)
    assert out["after_last"] == pytest.approx(0.5) and out["in_runs"] == pytest.approx(3.0)
    assert out["compile"] == pytest.approx(0.4)  # count_flops, nested in it, shown apart
    assert out["after_training"] == pytest.approx(0.4)  # count_flops + count_bytes + floor
    assert out["other_in_runs"] == pytest.approx(3.0 - 0.4 - 0.1 - 0.1 - 1.5 - 0.2)
    text = profile.table([{"piece": "demo", "wall": 7.0, **out}])
    assert "| demo | 2 | 1 | 7.0 | 3.0 | 0.5 |" in text and "**total**" in text


def test_the_profile_reads_the_readme_command_and_skips_the_install():
    command = profile.readme_command()
    assert command.startswith("python3 -m venv") and command.endswith("mlo-bench demo")
    parts = profile.pieces(command, install=False)
    assert parts == ["mlo-bench demo"]
    assert len(profile.pieces(command, install=True)) > len(parts)


def test_configs_are_registered_again_only_when_the_plugins_change(monkeypatch):
    from hydra.core.config_store import ConfigStore

    registry.discover()
    registry._register_configs()
    store = ConfigStore.instance()
    assert copy.deepcopy(store) is store  # Hydra's per-composition copy of its repository shares the store
    calls = []
    real = registry.importlib.import_module
    monkeypatch.setattr(registry.importlib, "import_module", lambda name: calls.append(name) or real(name))
    registry._register_configs()
    assert calls == []  # nothing changed: nothing stored again

    class Extra(registry.get("method", "cg")):
        name = "cg_again_for_test"

    monkeypatch.setitem(registry._REGISTRY["method"], Extra.name, Extra)
    registry._register_configs()
    assert calls == ["mlo_bench.suite.plugins.variants"]
    assert compose(["task=quadratic", f"method={Extra.name}"]).method.name == Extra.name


@pytest.mark.jax
def test_jax_reads_peak_bytes_off_a_compiled_program_and_counts_flops_without_compiling():
    pytest.importorskip("jax")
    b = registry.backend("jax")
    b.setup("float64", "cpu", 0)
    try:
        a = b.asarray(np.arange(12.0).reshape(3, 4))

        def fn(x):
            return b.ops.sum(x @ x.T)

        compiled, _ = b.compile(fn, (a,))
        assert b.compiled_live_bytes(compiled) == b.live_peak_bytes(fn, (a,)) > 0
        assert b.compiled_live_bytes(fn) is None  # not a compiled program
        assert b.count_flops(fn, (a,)) >= 2 * 3 * 3 * 4  # the matmul, counted on the lowered program
    finally:
        b.teardown()


@pytest.mark.parametrize("backend", ["torch", pytest.param("jax", marks=pytest.mark.jax)])
def test_the_check_reuses_the_loops_hypergradient_and_gets_the_same_error(tmp_path, backend):
    if backend == "jax":
        pytest.importorskip("jax")
    from mlo_bench.suite.engine import loop

    base = ("task=quadratic", "task.d=20", f"backend={backend}", "method=cg", "steps=3", "dtype=float64")
    reused = _run(tmp_path / "a", *base)["metrics"]["hypergrad_rel_error"]
    real = loop._single_edge
    with pytest.MonkeyPatch.context() as mp:  # the path without reuse: check_fn compiled on its own
        mp.setattr(loop, "_single_edge", lambda run, b, p, s, bt: b.compile(run.check_fn, (p, s, bt))[0](p, s, bt))
        alone = _run(tmp_path / "b", *base)["metrics"]["hypergrad_rel_error"]
    assert loop._single_edge is real
    assert reused == pytest.approx(alone, rel=1e-9, abs=1e-15) and reused < 0.1
    json.dumps(reused)


@pytest.mark.parametrize("method", ["cg", "darts", "neumann"])  # stateful (warm-started) and stateless
def test_the_single_edge_check_compiles_nothing_where_the_loop_compiled_it(method):
    from mlo_bench.suite.engine import loop
    from mlo_bench.suite.run.execute import set_up

    plan = prepare(compose(["task=quadratic", "task.d=12", "backend=torch", f"method={method}", "steps=1",
                            "dtype=float64", "isolate=false", "progress=false"]))
    backend = plan.backend_cls(plan.backend_cfg)
    set_up(plan, backend)
    run, _, (params, states, mstate) = loop.start(plan, backend, {})
    batches = run.hyper_batches(*run.batches.rounds(0, params)[:1], run.batches.top(0))
    expected = backend.tree_to_numpy(run.check_fn(params, states, batches))

    def no_compile(*_):
        raise AssertionError("compiled again")

    backend.compile = no_compile
    got = backend.tree_to_numpy(loop._single_edge(run, backend, params, states, batches))
    np.testing.assert_allclose(_flat(got), _flat(expected), rtol=1e-12, atol=1e-15)
    assert np.linalg.norm(_flat(expected)) > 0


def _flat(tree) -> np.ndarray:
    if isinstance(tree, dict):
        return np.concatenate([_flat(tree[k]) for k in sorted(tree)])
    return np.ravel(np.asarray(tree))


def test_the_profile_names_each_piece_of_the_command():
    assert profile.label("mlo-bench run -m +experiment=mwn_demo") == "mwn_demo"
    assert profile.label("pip install torch==2.13.0") == "pip install torch==2.13.0"
    assert len(profile.label("pip install -e " + "x" * 80)) == 40


def test_the_profile_blames_the_piece_that_failed_and_keeps_its_row(tmp_path, capsys):
    rows = profile.run_timed(["true", ": ok", "false", "touch never"], tmp_path, {"PATH": "/usr/bin:/bin"})
    assert [(r["command"], r["rc"]) for r in rows] == [("true", 0), (": ok", 0), ("false", 1)]
    assert "exit 1 at: false" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
