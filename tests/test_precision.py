"""Mixed precision (suite/engine/precision.py): the ``precision`` key (hash-neutral at fp32, one-line errors), losses
in bf16 / fp16 on torch (autocast) and jax (jmp) with float32 master weights, fp16 dynamic loss scaling (a forced
overflow skips the step and halves the scale; the rule agrees with jmp's step by step), and runs in low precision."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import make_backend, make_task

from mlo_bench.suite.conf.keys import DEFAULT_PRECISION
from mlo_bench.suite.contract.task import Level
from mlo_bench.suite.engine import optim, precision
from mlo_bench.suite.engine.levels import level_step
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.compose import check_overrides, compose
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import ConfigError, prepare
from mlo_bench.suite.run.records import config_hash

BACKENDS = ["torch", "jax"]
RUN = ["task=quadratic", "task.d=16", "method=cg", "steps=3", "isolate=false", "progress=false", "dtype=float32",
       "device=cpu"]


def _available(name: str) -> None:
    if registry.availability("backend", name):
        pytest.skip(f"backend {name} unavailable")


# ---- the key ----
def test_fp32_is_hash_neutral_and_a_low_precision_is_not(tmp_path):
    base = prepare(compose([*RUN, f"results_dir={tmp_path}"])).config
    assert base["precision"] == DEFAULT_PRECISION
    without = {k: v for k, v in copy.deepcopy(base).items() if k != "precision"}
    assert config_hash(base) == config_hash(without), "fp32 records keep the hash they had before the key"
    bf16 = prepare(compose([*RUN, f"results_dir={tmp_path}", "precision=bf16"])).config
    assert config_hash(bf16) != config_hash(base)
    plain = prepare({**copy.deepcopy(without), "precision": "bf16"}).config  # a bare name in a plain dict
    assert plain["precision"] == bf16["precision"] and config_hash(plain) == config_hash(bf16)
    full = prepare(compose([*RUN, f"results_dir={tmp_path}", "precision=bf16", "precision.hypergrad=full"])).config
    assert config_hash(full) != config_hash(bf16)


@pytest.mark.parametrize("override,message", [
    (["precision.hypergrad=half"], "precision.hypergrad must be one of same, full (got 'half')"),
    (["precision=fp16", "precision.growth_interval=0"], "precision.growth_interval must be an integer >= 1"),
    (["precision=fp16", "precision.init_scale=0.5"], "precision.init_scale must be a number >= 1"),
    (["precision=bf16", "dtype=float64"], "precision=bf16 needs dtype=float32"),
])
def test_a_bad_precision_is_one_line_naming_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        prepare(compose([*[a for a in RUN if not a.startswith("dtype")], f"results_dir={tmp_path}", *override]))
    assert "\n" not in str(err.value)


def test_the_command_line_names_a_bad_precision_before_composing():
    assert check_overrides(["precision=fp8"]) == "precision must be one of fp32, bf16, fp16 (got 'fp8')"
    assert "unknown precision knob 'precision.scale'" in check_overrides(["precision.scale=2"])
    assert check_overrides(["precision=bf16,fp16", "precision.hypergrad=full"]) is None
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.Precision.parse(3)


# ---- losses in low precision ----
@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_a_low_precision_loss_rounds_like_its_precision_on_float32_master_weights(backend_name, name):
    _available(backend_name)
    b = make_backend(backend_name, "float32")
    assert b.precision_refusal(name) is None
    rng = np.random.default_rng(0)
    a, x = b.asarray(rng.normal(size=(64, 64))), b.asarray(rng.normal(size=64))
    loss = lambda ops, p, batch: ops.sum(ops.matmul(batch["a"], p["x"]) ** 2)  # noqa: E731
    low = b.low_precision(loss, name)
    exact, value = b.to_numpy(loss(b.ops, {"x": x}, {"a": a})), b.to_numpy(low(b.ops, {"x": x}, {"a": a}))
    assert value.dtype == np.float32
    u = precision.UNIT_ROUNDOFF[name]
    assert 0 < abs(value - exact) / abs(exact) < 16 * u, "rounded in the low precision, by O(u)"
    g = b.grad(lambda p: low(b.ops, p, {"a": a}))({"x": x})
    g_exact = b.grad(lambda p: loss(b.ops, p, {"a": a}))({"x": x})
    assert b.to_numpy(g["x"]).dtype == np.float32, "the gradient arrives in the master dtype"
    err = np.linalg.norm(b.to_numpy(g["x"]) - b.to_numpy(g_exact["x"])) / np.linalg.norm(b.to_numpy(g_exact["x"]))
    assert 0 < err < 16 * u


def test_betty_refuses_low_precision_with_the_reason():
    betty = registry.get("backend", "betty")()
    assert "CUDA-only" in betty.precision_refusal("fp16")
    assert registry.get("backend", "torch")().precision_refusal("bf16") is None


# ---- fp16 loss scaling ----
def _level(scale: float):
    """``scale·⟨w, w⟩`` as a matmul (on torch, autocast lowers matmuls and convolutions only)."""
    return Level("inner", lambda ops, p, batch: scale * ops.matmul(p["inner"]["w"], p["inner"]["w"]),
                 optim.OptimizerConfig(lr=0.1), parent="outer")


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_forced_fp16_overflow_skips_the_step_and_halves_the_scale(backend_name):
    _available(backend_name)
    b = make_backend(backend_name, "float32")
    p = precision.Precision(name="fp16", growth_interval=2)
    for factor, overflows in ((1e4, True), (1e-3, False)):  # 2·1e4·w·4096 > 65504 = fp16's largest; 1e-3 does not
        level = precision.in_precision(b, [_level(factor)], "fp16")[0]
        params = {"inner": {"w": b.asarray(np.full(8, 2.0))}, "outer": {"z": b.asarray(np.zeros(1))}}
        state = precision.with_loss_scales(b.ops, p, [level], {"inner": optim.init(b.ops, level.optimizer,
                                                                                   params["inner"])})["inner"]
        step = level_step(b.ops, level, params, None, "outer", b.grad)
        new, new_state = step(params["inner"], state, params["outer"])
        ls = {k: float(b.to_numpy(v)) for k, v in new_state[precision.LOSS_SCALE].items()}
        moved = not np.allclose(b.to_numpy(new["w"]), 2.0)
        if overflows:
            assert not moved and ls["scale"] == 2048.0 and ls["skipped"] == 1.0 and ls["counter"] == 0.0
            assert float(b.to_numpy(new_state["count"])) == 0.0, "the optimizer state is kept too"
        else:
            assert moved and ls["scale"] == 4096.0 and ls["skipped"] == 0.0 and ls["counter"] == 1.0
            np.testing.assert_allclose(b.to_numpy(new["w"]), 2.0 - 0.1 * 2e-3 * 2.0, rtol=1e-3)
            _, again = step(new, new_state, params["outer"])  # a second clean step: growth_interval=2 reached
            assert float(b.to_numpy(again[precision.LOSS_SCALE]["scale"])) == 8192.0


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_the_scale_rule_is_jmps_dynamic_loss_scale(backend_name):
    jmp = pytest.importorskip("jmp")
    import jax.numpy as jnp

    _available(backend_name)
    b = make_backend(backend_name, "float32")
    p = precision.Precision(name="fp16", init_scale=8.0, growth_interval=3)
    ours = precision.fresh_scale(b.ops, p, b.asarray(np.zeros(())))
    theirs = jmp.DynamicLossScale(jnp.asarray(8.0, jnp.float32), period=3, factor=2)
    for finite in [True, True, True, False, False, False, False, True, True, True, True, False]:
        ours = precision.adjust(b.ops, ours, b.asarray(np.asarray(finite)))
        theirs = theirs.adjust(jnp.asarray(finite))
        assert float(b.to_numpy(ours["scale"])) == float(theirs.loss_scale)
        assert float(b.to_numpy(ours["counter"])) == float(theirs.counter)
    assert float(b.to_numpy(ours["skipped"])) == 5.0


def test_darts_perturbation_is_the_same_for_a_scaled_v():
    """darts' ε = α/‖v‖: for S·v the perturbation ε·S·v is the unscaled one, and the result is S times larger."""
    b = make_backend("torch", "float64")
    task = make_task(d=8)
    from mlo_bench.suite.engine.hypergradient import oracle_state, response

    params, states, batches = oracle_state(b, task)
    levels = task.levels()
    r = response(b, levels[1], params, states, batches["x1"], 1)
    darts = registry.get("method", "darts")()
    cfg = darts.Config()
    v = {"w": b.asarray(np.random.default_rng(0).normal(size=8))}
    one = b.to_numpy(darts.response_vjp(b, r, v, cfg)["w"])
    scaled = b.to_numpy(darts.response_vjp(b, r, {"w": v["w"] * 4096.0}, cfg)["w"])
    np.testing.assert_allclose(scaled / 4096.0, one, rtol=1e-9)


# ---- runs ----
def _run(tmp_path, backend, *over):
    rec = execute(prepare(compose([*RUN, f"backend={backend}", f"results_dir={tmp_path}", *over])))
    return rec, rec["metrics"]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_bf16_runs_and_hypergrad_full_is_the_fp32_check(tmp_path, backend_name):
    """The hypergradient check runs the method at the oracle state in the hypergradient's precision: with
    ``precision.hypergrad=full`` it is fp32's, exactly; with ``same`` it is off by O(u_bf16), not more."""
    _available(backend_name)
    _, fp32 = _run(tmp_path, backend_name)
    rec, same = _run(tmp_path, backend_name, "precision=bf16")
    assert rec["status"] == "ok" and rec["config"]["precision"]["name"] == "bf16"
    _, full = _run(tmp_path, backend_name, "precision=bf16", "precision.hypergrad=full")
    assert full["hypergrad_rel_error"] == pytest.approx(fp32["hypergrad_rel_error"], rel=1e-6)
    assert same["hypergrad_rel_error"] != pytest.approx(fp32["hypergrad_rel_error"], rel=1e-3)
    assert same["hypergrad_rel_error"] < fp32["hypergrad_rel_error"] + 16 * precision.UNIT_ROUNDOFF["bf16"]
    assert same["hypergrad_cosine"] > 0.999
    assert not any(k.startswith("loss_scale") for k in same), "bf16 is not loss-scaled"


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_fp16_records_its_loss_scales_and_a_run_skipping_every_step_is_diverged(tmp_path, backend_name):
    _available(backend_name)
    rec, m = _run(tmp_path, backend_name, "precision=fp16")
    assert rec["status"] == "ok", rec.get("reason")
    assert {"loss_scale_x0", "loss_scale_x1", "skipped_steps_x1", "overflows_inner", "overflows_hypergrad"} <= set(m)
    assert m["loss_scale_x1"] * 2 ** m["skipped_steps_x1"] == 4096.0  # halved once per skip (no growth in 3 steps)
    assert np.isfinite(m["hypergrad_rel_error"])
    # a top loss times 1e30 overflows fp16 at every scale down to 1: every outer step skipped
    rec, m = _run(tmp_path, backend_name, "precision=fp16", "task.condition=1e9", "steps=2")
    assert rec["status"] == "diverged", rec.get("reason")
    assert "skipped every step" in rec["reason"]


def test_the_verify_tolerance_follows_the_unit_roundoff():
    from mlo_bench.suite.certify.options import default_tol

    assert default_tol("float32") == 1e-3 and default_tol("float64", "fp32") == 1e-6
    assert default_tol("float32", "bf16") == 16 * 2.0**-8
    assert default_tol("float32", "fp16") == 16 * 2.0**-11


def test_the_report_reads_precision_from_the_records_and_computes_its_sentence(tmp_path):
    """A hypergradient 100× worse in bf16 than in fp32 is named beyond 10×, one 2× worse within; fp32-only
    experiments make no section."""
    from mlo_bench.suite.report import build
    from mlo_bench.suite.report.sections import precision as section
    from mlo_bench.suite.report.tidy import tidy

    def record(i, method, name, err):
        config = {"task": {"name": "quadratic", "d": 4}, "backend": {"name": "torch"}, "method": {"name": method},
                  "seed": 0, "steps": 1, "dtype": "float32", "precision": {**DEFAULT_PRECISION, "name": name}}
        return {"run_id": f"r{i}", "task": "quadratic", "backend": "torch", "method": method, "seed": 0,
                "status": "ok", "config": config, "config_hash": f"h{i}",
                "metrics": {"hypergrad_rel_error": err, "hypergrad_cosine": 0.9, "peak_live_bytes": 1000.0,
                            "time_step_s": 0.01}}

    records = [record(0, "cg", "fp32", 1e-3), record(1, "cg", "bf16", 2e-3),
               record(2, "exact", "fp32", 1e-7), record(3, "exact", "bf16", 1e-5)]
    ctx = build.context(records, tidy(records), tmp_path, [], draw=False)
    out = section.part(ctx)
    text = " ".join(b.text for b in out.sections[0].blocks if hasattr(b, "text"))
    assert "within 10× of fp32 in every low precision measured: `cg`" in text
    assert "beyond it: `exact` (up to 100×)" in text
    only_fp32 = [r for r in records if r["config"]["precision"]["name"] == "fp32"]
    assert section.part(build.context(only_fp32, tidy(only_fp32), tmp_path, [], draw=False)).sections == []
    # an fp16 hypergradient that overflowed even at scale 1: its error is null, and cg is no longer within 10×
    nonfinite = record(4, "cg", "fp16", None)
    nonfinite["metrics"].update(hypergrad_cosine=None, hypergrad_nonfinite=12.0)
    records.append(nonfinite)
    out = section.part(build.context(records, tidy(records), tmp_path, [], draw=False))
    text = " ".join(b.text for b in out.sections[0].blocks if hasattr(b, "text"))
    assert "`cg` (non-finite)" in text and "measured: none" in text, text
    table = next(b for b in out.sections[0].blocks if hasattr(b, "rows"))
    cells = [c for row in table.rows for c in row if getattr(c, "text", None) == "non-finite"]
    assert len(cells) == 1 and cells[0].tone == "bad"


def test_a_non_finite_hypergradient_is_counted_not_scored():
    from mlo_bench.suite.engine.compare import hypergrad_errors

    ref = {"w": np.ones(4)}
    assert hypergrad_errors({"w": np.ones(4)}, ref) == {"hypergrad_rel_error": 0.0, "hypergrad_cosine": 1.0}
    out = hypergrad_errors({"w": np.array([1.0, np.inf, np.nan, 1.0])}, ref)
    assert out["hypergrad_nonfinite"] == 2.0 and np.isnan(out["hypergrad_rel_error"])


@pytest.mark.slow  # four runs through the CLI, each process importing torch: a minute on 2 loaded cores
def test_the_gpu_check_script_runs_its_matrix_on_the_cpu_path(tmp_path):
    """benchmarks/gpu_check.sh with DEVICE=cpu on a tiny matrix: every run recorded, the table printed (4 steps: fp16
    skips the quadratic's first two hypergradient steps while its scale falls from 4096 to 1024)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.sh"
    env = {**os.environ, "DEVICE": "cpu", "BACKENDS": "torch", "QUAD_METHODS": "cg", "MWN_METHODS": "",
           "STEPS": "4", "ISOLATE": "false", "MLO": f"{sys.executable} -m mlo_bench.suite.cli"}
    done = subprocess.run(["bash", str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.split()[:2] == ["quadratic", "torch"]]
    assert sorted(ln.split()[3] for ln in lines) == ["bf16", "bf16/full", "fp16", "fp32"], done.stdout[-2000:]
    assert all(" ok " in ln and "(cpu_rss_delta)" in ln for ln in lines)


def test_the_precision_table_names_a_tasks_settings_by_the_knobs_that_differ():
    import pandas as pd

    from mlo_bench.suite.report.sections.precision import setting_labels

    w = pd.DataFrame({"task": ["da"] * 4 + ["q"], "precision_setting": ["a", "a", "b", "b", "c"],
                      "task.program": ["lbi", "lbi", "reweight", "reweight", None], "task.pair": ["Cl-Ar"] * 4 + [None],
                      "steps": [100] * 5, "steps_per_s": [1.0, 2.0, 3.0, 4.0, 5.0]})
    assert setting_labels(w, "da") == {"a": "program=lbi", "b": "program=reweight"}, "metrics never name a setting"
    assert setting_labels(w, "q") == {}, "one setting: no label"
