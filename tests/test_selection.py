"""Selection by the upper level (contract v2): sampling ∝ score, the selection phase, and a task whose upper level
picks the lower level's examples, run on every backend × method and certified by ``mlo-bench verify``."""

from __future__ import annotations

import numpy as np
import pytest
from selection_task import SelectionTask

from mlo_bench.suite.certify import verify
from mlo_bench.suite.engine.step_phases import keep_by_score, selection_rng
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare


def test_kept_examples_are_sampled_in_proportion_to_their_scores():
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    rng = np.random.default_rng(0)
    counts = np.bincount([keep_by_score(scores, 1, rng)[0] for _ in range(20000)], minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), scores / scores.sum(), atol=0.015)


def test_zero_scores_are_kept_only_when_needed_and_draws_are_reproducible():
    scores = np.array([0.0, 1.0, 0.0, 5.0, 2.0])
    for step in range(50):
        kept = keep_by_score(scores, 3, selection_rng(0, "lower", step))
        assert set(kept) == {1, 3, 4}
    assert len(set(keep_by_score(scores, 4, selection_rng(0, "lower", 1)))) == 4
    a = keep_by_score(np.arange(1.0, 30.0), 5, selection_rng(3, "lower", 7))
    b = keep_by_score(np.arange(1.0, 30.0), 5, selection_rng(3, "lower", 7))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="keeps 6 of only 5"):
        keep_by_score(scores, 6, selection_rng(0, "lower", 0))


@pytest.fixture
def selection_task():
    registry.register("task")(SelectionTask)
    registry._register_configs()
    yield SelectionTask
    registry._REGISTRY["task"].pop(SelectionTask.name)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("method", ["exact", "cg", "neumann", "darts", "unroll", "first_order", "none"])
def test_the_selection_task_runs_with_every_method(selection_task, tmp_path, backend, method):
    if registry.availability("backend", backend):
        pytest.skip(f"backend {backend} unavailable: {registry.availability('backend', backend)}")
    cfg = {"task": {"name": "selection_toy"}, "backend": {"name": backend}, "method": {"name": method},
           "seed": 0, "steps": 10, "inner_steps": 2, "dtype": "float64", "device": "cpu",
           "results_dir": str(tmp_path), "log_every": 0, "progress": False, "hypergrad_check": True}
    record = execute(prepare(cfg))
    assert record["status"] == "ok", record.get("traceback") or record["reason"]
    m = record["metrics"]
    assert m["time_select_s"] >= 0 and np.isfinite(m["val_mse"])
    assert m["flops_select"] is None or m["flops_select"] > 0
    if method in ("exact", "cg"):
        assert m["hypergrad_rel_error"] < 1e-8, "checked against exact at the final state (same kept examples)"


def test_the_upper_level_changes_which_examples_are_kept(selection_task):
    task = SelectionTask(SelectionTask.Config(), 0)
    backend = registry.get("backend", "torch")()
    backend.setup("float64", "cpu", 0)
    from mlo_bench.suite.engine.levels import chain, steps_per_level
    from mlo_bench.suite.engine.step_phases import Batches

    levels = chain(task.levels())
    batches = Batches(task, backend, backend.tree_asarray(task.data()), levels, steps_per_level(levels, 1))
    kept = {}
    for sign in (1.0, -1.0):
        params = backend.tree_asarray({"scorer": {"u": sign * 5.0 * np.ones(5)}, "model": {"w": np.zeros(5)}})
        batches.compile(params)
        rounds, _ = batches.rounds(0, params)
        batch = rounds[0]["model"]
        kept[sign] = set(backend.to_numpy(batch["idx"]).tolist())
        assert kept[sign] <= set(backend.to_numpy(batch["idx_candidates"]).tolist())
        assert len(kept[sign]) == task.cfg.keep
    assert kept[1.0] != kept[-1.0], "opposite scorers keep different examples"


def test_verify_certifies_the_selection_task(selection_task, capsys):
    if registry.availability("backend", "jax"):
        pytest.skip("jax unavailable: verify would compare torch with itself only")
    code = verify.main(["backend=torch,jax,naive", "task=selection_toy", "dtype=float64", "--steps", "5"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "jax" in out and "cg" in out
