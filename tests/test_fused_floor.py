"""The fused step (suite/engine/compiled_step.py), the cached Hessian-vector operator, the floor figures
(suite/measure/floor.py, the report's Floor section) and the interleaved step benchmark (suite/measure/stepbench.py).
No timed assertions: times are only checked to be recorded and positive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlo_bench.suite.measure import stepbench
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.report.sections import floor as report_floor
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import ConfigError, prepare

BASE = ["task=quadratic", "task.d=12", "dtype=float64", "progress=false", "hypergrad_check=false", "steps=6"]


def _run(tmp_path, *extra):
    capture: dict = {}
    rec = execute(prepare(compose([*BASE, f"results_dir={tmp_path}", *extra])), capture)
    return rec, capture


@pytest.mark.parametrize("method", ["cg", "unroll"])
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_fused_run_trains_like_a_phased_one_and_times_its_phases_apart(tmp_path, backend, method):
    if backend == "jax":
        pytest.importorskip("jax")
    fused, cf = _run(tmp_path / "f", f"backend={backend}", f"method={method}", "fused=true")
    phased, cp = _run(tmp_path / "p", f"backend={backend}", f"method={method}", "fused=false")
    assert fused["status"] == phased["status"] == "ok"
    for name in cp["params"]:
        for key in cp["params"][name]:
            np.testing.assert_allclose(cf["params"][name][key], cp["params"][name][key], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cf["first_hypergrad"]["w"], cp["first_hypergrad"]["w"], rtol=1e-12)
    m = fused["metrics"]
    assert m["phase_timing"] == "sampled" and "phase_timing" not in phased["metrics"]
    assert m["steps_done"] == 6 and m["time_step_s"] > 0
    assert all(m[f"time_{p}_s"] > 0 for p in ("inner", "hypergrad", "outer"))


def test_jax_fuses_by_default_and_counts_its_compile_cache(tmp_path):
    pytest.importorskip("jax")
    first, _ = _run(tmp_path, "backend=jax", "method=cg")
    again, _ = _run(tmp_path, "backend=jax", "method=cg", "repeat=1")
    assert first["metrics"]["phase_timing"] == "sampled"
    assert again["metrics"]["compile_cache_misses"] == 0 and again["metrics"]["compile_cache_hits"] > 0
    torch_run, _ = _run(tmp_path, "backend=torch", "method=cg")
    assert "phase_timing" not in torch_run["metrics"], "eager backends step phase by phase unless fused=true"


def test_a_fused_step_still_ends_a_diverging_run_at_its_own_step(tmp_path):
    pytest.importorskip("jax")
    args = ["backend=jax", "method=exact", "task.d=6", "steps=200", "task.outer.lr=1000"]
    fused, _ = _run(tmp_path / "f", *args)
    phased, _ = _run(tmp_path / "p", *args, "fused=false")
    assert fused["status"] == phased["status"] == "diverged"
    assert fused["metrics"]["diverged_step"] == phased["metrics"]["diverged_step"]


def test_fused_must_be_a_boolean_or_null():
    with pytest.raises(ConfigError, match="^fused must be"):
        prepare({**prepare(compose([])).config, "fused": "yes"})


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_the_cached_hvp_operator_is_the_hessian_vector_product(backend):
    if backend == "jax":
        pytest.importorskip("jax")
    b = registry.get("backend", backend)()
    b.setup("float64", "cpu", 0)
    try:
        rng = np.random.default_rng(0)
        a, x, v1, v2 = rng.normal(size=(5, 5)), rng.normal(size=5), rng.normal(size=5), rng.normal(size=5)
        ops = b.ops
        f = lambda p: ops.sum(ops.tanh(ops.matmul(b.asarray(a), p["x"])) ** 2)  # noqa: E731
        p = {"x": b.asarray(x)}
        matvec = b.hvp_operator(f, p)
        for v in (v1, v2):  # reused: the graph / linearisation serves every product
            want = b.to_numpy(b.hvp(f, p, {"x": b.asarray(v)})["x"])
            np.testing.assert_allclose(b.to_numpy(matvec({"x": b.asarray(v)})["x"]), want, rtol=1e-10)
    finally:
        b.teardown()


@pytest.mark.parametrize("method,extra,count", [
    ("cg", ["method.iterations=3"], 5), ("neumann", ["method.iterations=2"], 4), ("darts", [], 3),
    ("unroll", ["inner_steps=2"], 3), ("first_order", [], 1), ("exact", [], None),
])
def test_runs_record_the_gradient_count_and_one_gradient_time(tmp_path, method, extra, count):
    rec, _ = _run(tmp_path, "backend=torch", f"method={method}", *extra)
    m = rec["metrics"]
    assert m["gradient_count"] == count and m["time_lower_grad_s"] > 0 and m["cpu_lower_grad_s"] > 0
    assert (m["cpu_hypergrad_s"] is None) == (count is None), "timed again only where there is a floor"
    assert count is None or m["cpu_hypergrad_s"] > 0
    assert m["flops_lower_grad"] == 3 * 2 * 12 * 12, "one gradient of the quadratic: A θ, B λ, Aᵀ(·): 3 mv"


def test_the_floor_times_interleaved_pairs_in_cpu_time_within_its_budget():
    import time

    from mlo_bench.suite.measure import floor

    calls = []

    def spin(seconds, tag):
        def fn():
            calls.append(tag)
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass
        return fn

    t = floor.paired_seconds(lambda x: x, spin(0.004, "h"), spin(0.001, "g"), repeats=5, budget_s=10)
    assert calls == ["h", "g"] * 6, "one warm-up pair, then the pairs alternate"
    assert t["hyper_cpu"] / t["grad_cpu"] == pytest.approx(4, rel=0.25) and t["grad_wall"] >= 0.001
    calls.clear()
    floor.paired_seconds(lambda x: x, spin(0.01, "h"), spin(0.0, "g"), repeats=50, budget_s=0.0)
    assert len(calls) == 2 * (floor.MIN_REPEATS + 1), "past the budget: the minimum number of pairs"


def test_the_materialised_chain_has_no_gradient_count(tmp_path):
    rec, _ = _run(tmp_path, "backend=naive", "method=unroll")
    assert rec["metrics"]["gradient_count"] is None


def test_the_floor_section_divides_by_one_gradient_and_by_the_count(tmp_path):
    w = pd.DataFrame([
        {"task": "t", "setting_name": "A", "backend": "b1", "method": "cg", "variant": "{}", "status": "ok",
         "loaded": False, "gradient_count": 12, "time_hypergrad_s": 0.024, "time_lower_grad_s": 0.001,
         "flops_hypergrad": 27, "flops_lower_grad": 3},
        {"task": "t", "setting_name": "A", "backend": "b2", "method": "darts", "variant": "{}", "status": "ok",
         "loaded": True, "gradient_count": 3, "time_hypergrad_s": 0.003, "time_lower_grad_s": 0.001},
        {"task": "t", "setting_name": "A", "backend": "b2", "method": "exact", "variant": "{}", "status": "ok",
         "loaded": False, "gradient_count": None, "time_hypergrad_s": 0.5, "time_lower_grad_s": 0.001},
    ])
    table = report_floor.rows(w).set_index("method")
    assert list(table.index) == ["cg", "darts"], "a method without a count has no floor"
    assert table.loc["cg", "in_grads"] == pytest.approx(24) and table.loc["cg", "x_floor"] == pytest.approx(2)
    assert table.loc["cg", "flops_in_grads"] == pytest.approx(9)
    assert table.loc["darts", "x_floor"] == pytest.approx(1) and table.loc["darts", "loaded_only"]
    assert (table["basis"] == "wall").all(), "records without CPU pairs fall back to the wall quotient"
    sec, _ = report_floor.section(w, None)
    assert sec.title.startswith("Floor") and report_floor.section(w.drop(columns="gradient_count"), None) is None


def test_the_floor_section_uses_the_cpu_pairs_and_says_where_the_wall_time_went():
    w = pd.DataFrame([
        {"task": "t", "setting_name": "A", "backend": "b1", "method": "cg", "variant": "{}", "status": "ok",
         "loaded": False, "gradient_count": 12, "time_hypergrad_s": 0.030, "time_lower_grad_s": 0.001,
         "cpu_hypergrad_s": 0.015, "cpu_lower_grad_s": 0.001, "flops_hypergrad": 14, "flops_lower_grad": 1},
        {"task": "t", "setting_name": "A", "backend": "b1", "method": "darts", "variant": "{}", "status": "ok",
         "loaded": False, "gradient_count": 3, "time_hypergrad_s": 0.003, "time_lower_grad_s": 0.001,
         "cpu_hypergrad_s": 0.012, "cpu_lower_grad_s": 0.001, "flops_hypergrad": 2, "flops_lower_grad": 1},
    ])
    table = report_floor.rows(w).set_index("method")
    assert table.loc["cg", "in_grads"] == pytest.approx(15) and table.loc["cg", "wall_in_grads"] == pytest.approx(30)
    assert table.loc["cg", "x_floor"] == pytest.approx(1.25) and table.loc["darts", "x_floor"] == pytest.approx(4)
    said = " ".join(report_floor.explain(report_floor.rows(w)))
    assert "In 1 of 2 rows the loop's wall quotient exceeds" in said and "median ×2" in said
    assert "Of the 1 rows above ×1.3 of their floor, 0 take no more than" in said, "darts: 12 by CPU, 2 by FLOPs"


def test_stepbench_interleaves_configs_and_takes_ratios_to_the_reference():
    registry.discover()
    grid = stepbench.configs(["task=quadratic", "task.d=8", "dtype=float64", "device=cpu"], ["torch", "naive"],
                             ["cg", "exact"])
    steppers = [stepbench.make_stepper(b, m, o) for b, m, o in grid]
    stepbench.interleave(steppers, steps=2, rounds=2)
    assert all(len(s.per_step) == 2 and s.t == 6 for s in steppers if s.problem is None)
    rel = stepbench.ratios(steppers)
    assert rel["naive × cg"] == 1.0 and rel["naive × exact"] == 1.0 and rel["torch × cg"] > 0
    text = stepbench.table(steppers)
    assert text.count("\n| ") == 4 and "× naive" in text
