"""Contract v2's hooks: chains by ``parent``, per-level steps, faithful unrolling (closed form of the steps taken),
the lookahead ordering, method state (warm starts), evaluation during and after training, ``method=none``, growth
detection, and the first hypergradient saved beside the record."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_task

from mlo_bench.suite.contract import Level
from mlo_bench.suite.engine.levels import LevelError, chain, steps_per_level
from mlo_bench.suite.engine.optim import OptimizerConfig
from mlo_bench.suite.engine.trees import tree_leaves
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import ConfigError, prepare
from mlo_bench.tasks.quadratic import coupling

SGD = OptimizerConfig(name="sgd", lr=0.1)


def _lv(name, parent=None):
    return Level(name, lambda ops, p, b: 0.0, SGD, parent=parent)


def config(tmp_path, **over):
    cfg = {"task": {"name": "quadratic", "d": 6}, "backend": {"name": "torch"}, "method": {"name": "unroll"},
           "seed": 0, "steps": 1, "inner_steps": 1, "dtype": "float64", "device": "cpu", "results_dir": str(tmp_path),
           "log_every": 0, "progress": False, "hypergrad_check": False}
    for key, value in over.items():
        same_plugin = isinstance(cfg.get(key), dict) and value.get("name") in (None, cfg[key]["name"])
        if isinstance(value, dict) and same_plugin:
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def run(tmp_path, **over):
    capture = {}
    record = execute(prepare(config(tmp_path, **over)), capture)
    assert record["status"] == "ok", record.get("traceback") or record["reason"]
    return record, capture


# ---- edges ------------------------------------------------------------------------------------------------------
def test_chain_orders_levels_by_parent_whatever_the_listing_order():
    order = chain([_lv("c", "b"), _lv("a"), _lv("b", "a")])
    assert [lv.name for lv in order] == ["a", "b", "c"]


@pytest.mark.parametrize("levels,words", [
    ([_lv("a"), _lv("b", "zz")], ["'b'", "'zz'", "not a level"]),
    ([_lv("a"), _lv("b", "a"), _lv("c", "a")], ["'c'", "already has a child"]),
    ([_lv("a"), _lv("b")], ["exactly one top level"]),
    ([_lv("a"), _lv("b", "c"), _lv("c", "b")], ["cycle"]),
    ([_lv("a"), _lv("a", "a")], ["declared twice"]),
])
def test_a_task_whose_levels_are_no_chain_is_rejected_in_one_line(levels, words):
    with pytest.raises(LevelError) as err:
        chain(levels)
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_level_steps_name_lower_levels_only(tmp_path):
    levels = chain([_lv("a"), _lv("b", "a")])
    assert steps_per_level(levels, 2, {}) == {"b": 2}
    assert steps_per_level(levels, 2, {"b": 5}) == {"b": 5}
    with pytest.raises(ConfigError, match="level_steps.x7"):
        prepare(config(tmp_path, level_steps={"x7": 2}))
    with pytest.raises(ConfigError, match="ordering"):
        prepare(config(tmp_path, ordering="sideways"))


# ---- faithful unrolling: the closed-form derivative of the steps taken --------------------------------------------
def unrolled_closed_form(task, init, steps, lr):
    """The first hypergradient of ``unroll`` on the quadratic chain: the lower levels' SGD steps, round by round
    (level k sees level k-1 after its own step of the round), tracked as affine maps of x0."""
    a, s, levels, d = task.data(), coupling(task.cfg), task.cfg.levels, task.cfg.d
    x0 = init["x0"]["w"]
    xs = {k: init[f"x{k}"]["w"].copy() for k in range(1, levels)}
    jac = {k: np.zeros((d, d)) for k in range(1, levels)}
    for r in range(max(steps.values())):
        for k in range(1, levels):
            if r >= steps[f"x{k}"]:
                continue
            parent, parent_jac = (x0, np.eye(d)) if k == 1 else (xs[k - 1], jac[k - 1])
            xs[k] = xs[k] - lr * (a[f"A{k}"] @ xs[k] - s * a[f"B{k}"] @ parent - a[f"c{k}"])
            jac[k] = (np.eye(d) - lr * a[f"A{k}"]) @ jac[k] + lr * s * a[f"B{k}"] @ parent_jac
    bottom = levels - 1
    return task.cfg.ridge * x0 + jac[bottom].T @ (xs[bottom] - a["b"])


@pytest.mark.parametrize("backend", ["torch", "jax", "naive"])
@pytest.mark.parametrize("levels,steps", [(2, {"x1": 3}), (3, {"x1": 2, "x2": 3})])
def test_unroll_differentiates_exactly_the_steps_taken(tmp_path, backend, levels, steps):
    if registry.availability("backend", backend):
        pytest.skip(f"backend {backend} unavailable")
    lr = 0.5
    over = {"task": {"d": 6, "levels": levels, "inner": {"name": "sgd", "lr": lr}}, "backend": {"name": backend},
            "level_steps": steps}
    record, capture = run(tmp_path, **over)
    task = make_task(d=6, levels=levels)
    init = task.init_params(np.random.default_rng(0))
    expected = unrolled_closed_form(task, init, steps, lr)
    got = capture["first_hypergrad"]["w"]
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 1e-8
    assert record["metrics"]["inner_step_evals"] == sum(steps.values()), "one trajectory, not two"


def test_lookahead_is_the_original_mwn_order(tmp_path):
    """ordering=lookahead: hypergradient through a virtual step from θ_t, top update, then the real step with the
    new top parameters (so the lower level's new value reads the updated x0), and twice the step evaluations."""
    lr_in, lr_out = 0.5, 0.01
    over = {"task": {"inner": {"name": "sgd", "lr": lr_in}, "outer": {"name": "sgd", "lr": lr_out}}}
    rec_l, cap_l = run(tmp_path, ordering="lookahead", **over)
    rec_f, cap_f = run(tmp_path / "f", **over)
    assert rec_l["metrics"]["inner_step_evals"] == 2 and rec_f["metrics"]["inner_step_evals"] == 1
    task = make_task(d=6)
    init = task.init_params(np.random.default_rng(0))
    hg0 = unrolled_closed_form(task, init, {"x1": 1}, lr_in)
    np.testing.assert_allclose(cap_l["first_hypergrad"]["w"], hg0, rtol=1e-10)
    a, s = task.data(), coupling(task.cfg)
    x0 = init["x0"]["w"] - lr_out * hg0
    x1 = init["x1"]["w"] - lr_in * (a["A1"] @ init["x1"]["w"] - s * a["B1"] @ x0 - a["c1"])
    np.testing.assert_allclose(cap_l["params"]["x1"]["w"], x1, rtol=1e-10)
    assert not np.allclose(cap_f["params"]["x1"]["w"], x1), "inner_first steps with the old x0"


def test_per_level_steps_keep_implicit_methods_on_the_oracle(tmp_path):
    record, _ = run(tmp_path, task={"levels": 3}, method={"name": "exact"}, level_steps={"x1": 2, "x2": 5},
                    hypergrad_check=True, steps=3)
    assert record["metrics"]["hypergrad_rel_error"] < 1e-10
    assert record["metrics"]["inner_step_evals"] == 7


# ---- method state -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["cg", "neumann"])
def test_warm_start_state_is_carried_and_identical_across_backends(tmp_path, method):
    if registry.availability("backend", "jax"):
        pytest.skip("jax unavailable")
    over = {"task": {"d": 10}, "method": {"name": method, "warm_start": True, "iterations": 2}, "steps": 10}
    _, cap_t = run(tmp_path / "t", **over)
    _, cap_j = run(tmp_path / "j", backend={"name": "jax"}, **over)
    state_t, state_j = cap_t["method_state"]["x1"]["w"], cap_j["method_state"]["x1"]["w"]
    assert np.linalg.norm(state_t) > 0, "the state is the last solution, not the zero it started from"
    np.testing.assert_allclose(state_t, state_j, rtol=1e-9, atol=1e-12)
    _, cold = run(tmp_path / "c", task={"d": 10}, method={"name": method, "iterations": 2}, steps=10)
    assert not tree_leaves(cold["method_state"])
    assert not np.allclose(cold["params"]["x0"]["w"], cap_t["params"]["x0"]["w"]), "warm and cold runs differ"


def test_warm_started_cg_is_more_accurate_along_training_at_equal_iterations(tmp_path):
    """Along an outer trajectory with lower levels at their best response, cg warm-started from the previous
    solution reaches a smaller hypergradient error than cold cg with the same iterations (see warm_start_errors)."""
    from warm_start import warm_start_errors

    errors = warm_start_errors(iterations=(2,), steps=15)
    assert errors["warm", 2] < 0.5 * errors["cold", 2], errors


# ---- evaluation, baselines, failures --------------------------------------------------------------------------------
def test_eval_every_writes_curves_outside_the_training_clock(tmp_path):
    record, _ = run(tmp_path, method={"name": "cg"}, steps=20, eval_every=5, log_every=10)
    trace = Path(record["_path"]).with_name("trace.csv")
    rows = list(csv.DictReader(trace.open()))
    gap = {int(r["step"]): r["outer_gap"] for r in rows}
    assert [s for s, v in gap.items() if v] == [5, 10, 15, 20]
    assert rows[0]["outer_loss"] == "" and float(gap[5]) > float(gap[20])
    assert record["metrics"]["time_eval_during_s"] >= 0


@pytest.fixture
def evaluating_task():
    import mlo_bench.tasks._template as tpl

    class Evaluating(tpl.TemplateTask):
        """A template task with a post-training phase."""

        name = "evaluating_toy"

        def evaluate(self, backend, params):
            w = backend.to_numpy(params["lower"]["w"])
            return {"genotype": "|".join("pos" if x > 0 else "neg" for x in w), "derived_params": int(w.size)}

    registry.register("task")(Evaluating)
    yield Evaluating
    registry._REGISTRY["task"].pop(Evaluating.name)


def test_a_post_training_phase_is_timed_apart_and_keeps_text_metrics(tmp_path, evaluating_task):
    record, _ = run(tmp_path, task={"name": "evaluating_toy"}, method={"name": "cg"}, steps=3)
    saved = json.loads(Path(record["_path"]).read_text())["metrics"]
    assert saved["genotype"].count("|") == 4 and saved["derived_params"] == 5
    assert saved["time_eval_s"] >= 0


def test_method_none_trains_no_upper_level(tmp_path):
    record, capture = run(tmp_path, method={"name": "none"}, steps=5, hypergrad_check=True)
    init = make_task(d=6).init_params(np.random.default_rng(0))
    np.testing.assert_array_equal(capture["params"]["x0"]["w"], init["x0"]["w"])
    assert capture["first_hypergrad"] is None
    assert "hypergrad_rel_error" not in record["metrics"] and "time_hypergrad_s" not in record["metrics"]


def test_a_finite_loss_that_explodes_ends_diverged_at_its_step(tmp_path):
    cfg = config(tmp_path, method={"name": "exact"}, task={"outer": {"name": "sgd", "lr": 1e4}}, steps=20,
                 log_every=1)
    record = execute(prepare(cfg))
    assert record["status"] == "diverged" and "grew" in record["reason"]
    assert record["metrics"]["diverged_step"] == 1, "counted from 1, like the trace"


def test_the_first_hypergradient_is_saved_beside_the_record(tmp_path):
    record, capture = run(tmp_path, method={"name": "cg"}, steps=2)
    with np.load(Path(record["_path"]).with_name("first_hypergrad.npz")) as saved:
        np.testing.assert_array_equal(saved["w"], capture["first_hypergrad"]["w"])
