"""The Meta-Weight-Net task: ops and models on every backend, hypergradients of every method agreeing across
backends at the same state, the exact reference, ERM as a variant, presets, and the demo reaching far above chance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import initial_state, make_backend
from test_data import write_cifar

from mlo_bench.suite.certify.verify import max_rel_diff
from mlo_bench.suite.cli import main
from mlo_bench.suite.engine import optim
from mlo_bench.suite.engine.hypergradient import hypergradient_fn
from mlo_bench.suite.models import nn
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare
from mlo_bench.suite.run.records import read_records
from mlo_bench.tasks.mwn import MetaWeightNet, MWNConfig

BACKENDS = ("torch", "jax")
METHODS = ("exact", "cg", "neumann", "darts", "unroll", "first_order")
SMALL = ["task=mwn", "task.hidden=8", "progress=false", "isolate=false", "resume=false"]


def _np_conv(x, w, stride, padding):
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    out = np.zeros((n, o, (h - kh) // stride + 1, (wd - kw) // stride + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = x[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (1, 0)])
def test_conv2d_and_pooling_are_nchw_on_every_backend(backend, stride, padding):
    b = make_backend(backend, "float64")
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    got = b.to_numpy(b.ops.conv2d(b.asarray(x), b.asarray(w), stride=stride, padding=padding))
    np.testing.assert_allclose(got, _np_conv(x, w, stride, padding), rtol=1e-10, atol=1e-10)
    pooled = b.to_numpy(b.ops.avg_pool2d(b.asarray(x), 2))
    np.testing.assert_allclose(pooled, x.reshape(2, 3, 4, 2, 4, 2).mean(axis=(3, 5)), rtol=1e-12)
    b.teardown()


def _model_case(name):
    if name == "resnet32":
        return nn.resnet32(), None  # images from the CIFAR fixture
    if name == "cnn":
        return nn.cnn(1, 8, 10), (3, 1, 8, 8)
    return nn.mlp(64, 10, (16,)), (3, 1, 8, 8)


@pytest.mark.parametrize("model", ["mlp", "cnn", "resnet32"])
def test_models_have_the_right_shapes_finite_gradients_and_agree_across_backends(tmp_path, model):
    net, shape = _model_case(model)
    if shape is None:
        from mlo_bench.tasks.data import images

        x = images.cifar_normalise(images.load_cifar10(write_cifar(tmp_path / "c"))[0][:2])
    else:
        x = np.random.default_rng(1).random(shape)
    y = np.arange(len(x)) % 10
    params = net.init(np.random.default_rng(0))
    if model == "resnet32":
        assert 460_000 < nn.n_params(params) < 470_000  # ResNet-32 for CIFAR: 0.46 M parameters
    outs = {}
    for name in BACKENDS:
        b = make_backend(name, "float64")
        p, xb, yb = b.tree_asarray(params), b.asarray(x), b.asarray(y)

        def both(theta, xb, yb, b=b):
            def loss(theta):
                return -b.ops.mean(b.ops.take_along_last(b.ops.log_softmax(net.apply(b.ops, theta, xb)), yb))

            return net.apply(b.ops, theta, xb), b.grad(loss)(theta)

        fn = b.compile(both, (p, xb, yb))[0]  # jit on jax
        logits, grads = fn(p, xb, yb)
        assert tuple(logits.shape) == (len(x), 10)
        grads = b.tree_to_numpy(grads)
        assert set(grads) == set(params) and all(np.isfinite(g).all() for g in grads.values())
        assert any(np.abs(g).sum() > 0 for g in grads.values())
        outs[name] = (b.to_numpy(logits), grads)
        b.teardown()
    np.testing.assert_allclose(outs["jax"][0], outs["torch"][0], rtol=1e-8, atol=1e-8)
    assert max_rel_diff(outs["jax"][1], outs["torch"][1]) < 1e-8


def test_weight_net_maps_losses_to_weights_in_0_1():
    b = make_backend("torch", "float64")
    wn = nn.weight_net(100)
    p = b.tree_asarray(wn.init(np.random.default_rng(0)))
    assert nn.n_params(wn.init(np.random.default_rng(0))) == 301  # 1→100→1
    w = b.to_numpy(wn.apply(b.ops, p, b.asarray(np.array([0.0, 0.5, 2.0, 10.0]))))
    assert w.shape == (4,) and ((0 < w) & (w < 1)).all()


# ---------------------------------------------------------------------------------------------------------------
# hypergradients at one state, every method, every backend


def _hypergrad(backend_name, method, dtype="float32", knobs=()):
    plan = prepare(compose([*SMALL, f"backend={backend_name}", f"method={method}", f"dtype={dtype}", *knobs]))
    b = make_backend(backend_name, dtype)
    levels, params, states, batches = initial_state(b, plan.task_cls(plan.task_cfg, 0))
    # one inner step first, so that the state is not the initialisation (momentum buffers are non-zero)
    g = b.grad(lambda th: levels[1].loss(b.ops, {**params, "classifier": th}, batches["classifier"]))(
        params["classifier"])
    params["classifier"], states["classifier"] = optim.update(b.ops, levels[1].optimizer, g, states["classifier"],
                                                              params["classifier"])
    hyper = hypergradient_fn(b, plan.method, plan.method_cfg, levels, 2)
    hg = b.tree_to_numpy(b.compile(hyper, (params, states, batches))[0](params, states, batches))  # jit on jax
    b.teardown()
    return hg


@pytest.mark.parametrize("method", METHODS)
def test_every_method_agrees_between_torch_jax_and_naive(method):
    ref = _hypergrad("torch", method)
    assert set(ref) == {"l0_b", "l0_w", "l1_b", "l1_w"} and all(np.isfinite(v).all() for v in ref.values())
    if method == "first_order":
        assert all(not v.any() for v in ref.values()), "the meta loss reads λ only through the classifier"
    else:
        assert sum(np.abs(v).sum() for v in ref.values()) > 0
    others = ["jax"] + (["naive"] if method in ("exact", "unroll") else [])
    missing = {name: why for name in others if (why := registry.availability("backend", name))}
    for name in others:
        if name in missing:
            continue
        diff = max_rel_diff(_hypergrad(name, method), ref)
        assert diff < 1e-3, f"{name} vs torch, {method}: {diff:.2e}"
    if missing:  # a visible skip, never a silent pass: the comparison with these backends did not happen
        pytest.skip("not compared with " + "; ".join(f"{n} (unavailable: {why})" for n, why in missing.items()))


def test_detach_changes_the_hypergradient():
    a = _hypergrad("torch", "unroll", "float64")
    b = _hypergrad("torch", "unroll", "float64", ("task.detach=false",))
    assert max_rel_diff(a, b) > 1e-3


# ---------------------------------------------------------------------------------------------------------------
# runs: exact reference, ERM, presets


def _run(tmp_path, *overrides, capture=None):
    return execute(prepare(compose([*SMALL, f"results_dir={tmp_path}", *overrides])), capture)


def test_exact_reference_is_zero_for_exact_and_measured_for_the_others(tmp_path):
    rec = _run(tmp_path, "method=exact", "steps=2")
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["metrics"]["hypergrad_rel_error"] == 0.0 and rec["metrics"]["hypergrad_cosine"] == pytest.approx(1.0)
    rec = _run(tmp_path, "method=darts", "steps=2")
    assert rec["metrics"]["hypergrad_rel_error"] > 0 and -1 <= rec["metrics"]["hypergrad_cosine"] <= 1
    # cg converges to the exact reference where the lower Hessian is positive definite. At the default weight decay
    # (5e-3) the MLP's Hessian is indefinite: there cg with 100 iterations lands anywhere from 0.03 to 0.3 from the
    # exact solve depending on the last bits of the BLAS (0.315 on one AMD EPYC, < 0.2 on another CPU), so it pins
    # nothing. With wd = 3 no direction of the first solve meets non-positive curvature (negative_curvature=stop
    # runs all 100 iterations and lands where classic cg does, 6e-15 from the reference, measured).
    err = {(k, nc): _run(tmp_path, "method=cg", "steps=1", f"method.iterations={k}", "dtype=float64",
                         "task.weight_decay=3", f"method.negative_curvature={nc}")["metrics"]
           for k in (1, 100) for nc in ("continue", "stop")}
    assert err[1, "continue"]["hypergrad_rel_error"] > 1e-3, "one cg step is far from the exact solve"
    for nc in ("continue", "stop"):
        assert err[100, nc]["hypergrad_rel_error"] < 1e-9, ("cg converges to the exact reference", nc)
        assert err[100, nc]["hypergrad_cosine"] == pytest.approx(1.0, abs=1e-12)
    assert err[100, "stop"]["hypergrad_rel_error"] == err[100, "continue"]["hypergrad_rel_error"], \
        "on a positive-definite Hessian the stop rule never triggers: both modes agree exactly"
    rec = _run(tmp_path, "method=cg", "steps=1", "hypergrad_check=false")
    assert "hypergrad_rel_error" not in rec["metrics"]


def test_exact_is_unsupported_above_the_size_limit(tmp_path):
    rec = _run(tmp_path, "method=exact", "steps=1", "task.exact_max_params=100")
    assert rec["status"] == "unsupported" and "exact_max_params" in rec["reason"]
    rec = _run(tmp_path, "method=darts", "steps=1", "task.exact_max_params=100")
    assert rec["status"] == "ok" and "hypergrad_rel_error" not in rec["metrics"]


def test_metrics_are_balanced_accuracy_and_per_class(tmp_path):
    rec = _run(tmp_path, "method=darts", "steps=2", "task.imbalance_factor=200", "task.noise_rate=0.3")
    m = rec["metrics"]
    assert len(m["per_class_accuracy"]) == 10 and m["test_accuracy"] == pytest.approx(np.mean(m["per_class_accuracy"]))
    assert m["clamped_classes"] == 1 and m["train_class_sizes"][-1] == 1 and m["noisy_labels"] > 0


def test_erm_is_the_task_with_reweight_false(tmp_path):
    cap: dict = {}
    rec = _run(tmp_path, "method=cg", "steps=3", "task.reweight=false", capture=cap)
    assert rec["status"] == "ok"
    init = MetaWeightNet(MWNConfig(hidden=8), 0).init_params(np.random.default_rng(0))["mwn"]
    for key, value in init.items():  # hypergradient exactly zero: the weight net never moves
        np.testing.assert_allclose(cap["params"]["mwn"][key], value, rtol=0, atol=1e-7)
    assert all(not np.any(v) for v in cap["first_hypergrad"].values())
    mwn_cap: dict = {}
    _run(tmp_path, "method=cg", "steps=3", capture=mwn_cap)
    assert max_rel_diff(mwn_cap["params"]["classifier"], cap["params"]["classifier"]) > 1e-4


def test_batches_are_a_pure_function_of_seed_and_step():
    a, b = MetaWeightNet(MWNConfig(), 0), MetaWeightNet(MWNConfig(), 0)
    for step in (5, 0, 17, 5):
        np.testing.assert_array_equal(a.batch("classifier", step)["idx"], b.batch("classifier", step)["idx"])
    n = len(a.y_train)
    per_epoch = n // 100
    epoch = np.concatenate([a.batch("classifier", s)["idx"] for s in range(per_epoch)])
    assert len(set(epoch.tolist())) == len(epoch), "no repeats within an epoch"
    assert not np.array_equal(MetaWeightNet(MWNConfig(), 1).batch("classifier", 0)["idx"],
                              a.batch("classifier", 0)["idx"])


def test_presets_apply_the_chosen_tasks_values_and_overrides_win():
    cfg = compose(["task=mwn", "+preset=demo"])
    demo = MetaWeightNet.presets["demo"]
    assert cfg.steps == demo["steps"] and cfg.task.lower.milestones == demo["task"]["lower"]["milestones"]
    cfg = compose(["task=mwn", "preset=demo", "steps=7", "task.hidden=3"])
    assert cfg.steps == 7 and cfg.task.hidden == 3
    assert compose(["task=mwn"]).steps is None, "no preset: the task's default, resolved when the run is planned"
    assert prepare(compose(["task=mwn", "results_dir=/tmp/unused"])).steps == MetaWeightNet.default_steps(None) == 100
    assert set(registry.presets("mwn")) >= {"demo", "full", "paper"}
    paper = compose(["task=mwn", "+preset=paper"]).task
    assert (paper.model, paper.lower.lr, paper.lower.momentum, paper.weight_decay, list(paper.lower.milestones),
            paper.upper.name, paper.upper.lr) == ("resnet32", 0.1, 0.9, 5e-4, [5000, 7500], "adam", 1e-5)


@pytest.mark.parametrize("args,needle", [
    (["task=quadratic", "+preset=demo"], "task quadratic has no preset 'demo'"),
    (["+preset=demo"], "task quadratic has no preset 'demo'"),  # the default task
    (["task=mwn", "+preset=nope"], "unknown preset 'nope'"),
    (["task=mwn,quadratic", "+preset=full"], "task quadratic has no preset 'full'"),
])
def test_a_preset_the_task_does_not_define_is_a_one_line_error(tmp_path, capsys, args, needle):
    assert main(["run", *args, f"results_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_demo_preset_reaches_far_above_chance(tmp_path):
    rec = execute(prepare(compose(["task=mwn", "+preset=demo", "method=darts", "progress=false",
                                    f"results_dir={tmp_path}", "hypergrad_check=false"])))
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["metrics"]["test_accuracy"] > 0.5  # chance: 0.1
    assert rec["metrics"]["steps_done"] == MetaWeightNet.presets["demo"]["steps"]


# ---------------------------------------------------------------------------------------------------------------
# memory ordering (sweeps issue): naive unrolling grows with the unroll depth, cg does not


def test_live_memory_of_naive_unroll_grows_with_depth_and_cg_stays_flat(tmp_path):
    results = tmp_path / "results"
    env = {**os.environ, "CI": "true", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mlo_bench.suite.cli", "run", "-m", "task=mwn", "task.hidden=2",
         "task.weight_net_hidden=10",
         "backend=naive,torch", "method=unroll,cg", "inner_steps=1,4,8", "steps=1", "hypergrad_check=false",
         "isolate=false", "progress=false", f"results_dir={results}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # naive × cg is recorded as unsupported
    live: dict[tuple[str, str], dict[int, int]] = {}
    for r in read_records([results]):
        if r["status"] == "ok":
            live.setdefault((r["backend"], r["method"]), {})[r["config"]["inner_steps"]] = \
                r["metrics"]["peak_live_bytes"]
    naive, cg = live[("naive", "unroll")], live[("torch", "cg")]
    assert sorted(naive) == sorted(cg) == [1, 4, 8], json.dumps({str(k): v for k, v in live.items()})
    assert naive[1] < naive[4] < naive[8], naive
    assert max(cg.values()) <= 1.05 * min(cg.values()), cg
    assert naive[8] > 2 * cg[8]
