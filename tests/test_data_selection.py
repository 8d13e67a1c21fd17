"""Online data selection (Grangier et al. 2024): the corpora and their one-line errors, the lower loss that makes
every method differentiate Algorithm 1, the dds / anograd / soba methods against finite differences and the exact
solve, the baselines' filters against the ground truth, and a run of every row of the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlo_bench.suite.certify import verify
from mlo_bench.suite.contract.method import Response
from mlo_bench.suite.engine.implicit import hessian_matvec
from mlo_bench.suite.engine.trees import tree_map, tree_vdot
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare
from mlo_bench.tasks.data import text
from mlo_bench.tasks.data_selection import DataSelection, DSConfig

TINY = {"seq_len": 12, "d": 8, "layers": 1, "wm_emb": 4, "wm_channels": 4, "wm_kernel": 3, "max_domain_bytes": 4000,
        "eval_sequences": 16, "precision_batches": 4}


def torch_backend():
    backend = registry.get("backend", "torch")()
    backend.setup("float64", "cpu", 0)
    return backend


def run(tmp_path, variant=None, backend="torch", steps=3, eval_every=0, **task):
    cfg = {"task": {"name": "data_selection", **TINY, **task}, "backend": {"name": backend},
           "method": {"name": "dds"}, "seed": 0, "steps": steps, "inner_steps": 1, "eval_every": eval_every,
           "dtype": "float32", "device": "cpu", "results_dir": str(tmp_path), "log_every": 0, "progress": False,
           "hypergrad_check": False}
    if variant:
        v = DataSelection.paper.variant(variant)
        cfg["method"] = {"name": v.method}
        cfg["backend"].update(v.backend_knobs.get(backend, {}))
        for key, value in v.overrides.items():  # task.KEY and method.KEY (select-cg's negative_curvature)
            group, name = key.split(".", 1)
            cfg[group][name] = value
    return execute(prepare(cfg))


# ---- data -----------------------------------------------------------------------------------------------------
def test_the_stdlib_corpus_splits_by_file_with_the_specific_domain_a_minority_of_the_pool():
    corpus = text.stdlib_corpus()
    assert "email" in corpus and "toplevel" in corpus and "test" not in corpus
    a, b, c = (DataSelection(DSConfig(**TINY), s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.gen, b.gen)
    assert not np.array_equal(a.gen, c.gen), "the split follows the seed"
    assert 0 < a.is_spec.mean() < 0.2, "the specific domain is a minority of the generic pool"
    assert a.gen.shape[1] == 13 and a.gen.min() >= 0 and a.gen.max() < 256
    files = {k: set(v) for k, v in a.split_files.items()}
    assert all(files.values()) and not files["spec"] & files["spec_test"] and not files["gen"] & files["spec_test"]
    assert not files["spec"] & files["gen"] and all(f.startswith("encodings/") for f in files["spec"])
    assert "CPython" in a.provenance and "encodings" in a.provenance
    with pytest.raises(ValueError, match="task.domain must be one of"):
        DataSelection(DSConfig(**{**TINY, "domain": "nope"}), 0)


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_corpus_files_fail_in_one_line_naming_file_and_line(tmp_path):
    ok = write(tmp_path / "ok.jsonl", [json.dumps({"text": "x" * 40}), json.dumps({"text": "y" * 40})])
    cases = {
        str(tmp_path / "missing.jsonl"): "no such file",
        write(tmp_path / "empty.txt", ["", "  "]): "empty corpus",
        write(tmp_path / "bad.jsonl", [json.dumps({"text": "a" * 40}), "{not json"]): "bad.jsonl:2: not JSON",
        write(tmp_path / "notext.jsonl", [json.dumps({"body": "a"})]): "notext.jsonl:1: no \"text\"",
        write(tmp_path / "short.jsonl", [json.dumps({"text": "ab"})]): "shorter than task.seq_len",
    }
    for path, words in cases.items():
        with pytest.raises(ValueError, match=words) as err:
            DataSelection(DSConfig(**{**TINY, "data": "files", "generic": path, "specific": ok}), 0)
        assert "\n" not in str(err.value) and "task.generic" in str(err.value)


def test_jsonl_and_plain_text_corpora_run_without_ground_truth(tmp_path):
    rng = np.random.default_rng(0)
    gen = write(tmp_path / "gen.jsonl", [json.dumps({"text": "".join(rng.choice(list("abcdef "), 60))})
                                         for _ in range(12)])
    spec = write(tmp_path / "spec.txt", ["the cat sat on the mat and the dog sat on the log " * 2] * 4)
    record = run(tmp_path, data="files", generic=gen, specific=spec, b_small=2, b_large=4)
    assert record["status"] == "ok", record.get("traceback") or record["reason"]
    m = record["metrics"]
    assert np.isfinite(m["specific_loss"]) and "selection_precision" not in m and "files" in m["corpus"]


# ---- the lower loss: plain training on the kept batch, soft weights on the uniform sub-batch --------------------
def state(task, backend):
    init = task.init_params(np.random.default_rng(0))
    init["weights"]["fc_w"] = np.random.default_rng(1).standard_normal(init["weights"]["fc_w"].shape)
    cand = task.batch("lm", 0)["idx"]
    batch = {**task.data(), "idx": cand[-task.cfg.b_small:], "idx_candidates": cand,
             "sidx": task.batch("weights", 0)["sidx"]}
    return backend.tree_asarray(init), backend.tree_asarray(batch)


def test_the_lower_loss_trains_on_the_kept_batch_and_differentiates_the_soft_weighted_one():
    backend = torch_backend()
    ops, task = backend.ops, DataSelection(DSConfig(**TINY), 0)
    p, batch = state(task, backend)
    from mlo_bench.suite.models.byte_models import lm_losses

    kept = lambda th: ops.mean(lm_losses(ops, task.lm, th, batch["gen"][batch["idx"]]))  # noqa: E731
    soft = soft_loss(task, backend, batch)

    f = lambda th, phi: task._lm_loss(ops, {"lm": th, "weights": phi}, batch)  # noqa: E731
    assert float(f(p["lm"], p["weights"])) == pytest.approx(float(kept(p["lm"])), rel=1e-12)
    g_f, g_k = backend.grad(f)(p["lm"], p["weights"]), backend.grad(kept)(p["lm"])
    for key in g_f:
        np.testing.assert_allclose(backend.to_numpy(g_f[key]), backend.to_numpy(g_k[key]), rtol=1e-10)
    x = tree_map(lambda a: a * 0 + 0.01, p["lm"])
    def mixed(fn):
        return backend.grad(lambda phi: tree_vdot(ops, backend.grad(fn)(p["lm"], phi), x))(p["weights"])

    a, b = mixed(f), mixed(soft)
    for key in a:
        np.testing.assert_allclose(backend.to_numpy(a[key]), backend.to_numpy(b[key]), rtol=1e-9, atol=1e-14)
    assert float(ops.sum(a["fc_w"] * a["fc_w"])) > 0


# ---- the methods -------------------------------------------------------------------------------------------------
def edge(task, backend):
    from mlo_bench.suite.engine.hypergradient import level_loss

    p, batch = state(task, backend)
    lower = task.levels()[1]
    loss = level_loss(backend.ops, lower, p, batch, "weights")
    r = Response(loss=loss, lower=p["lm"], upper=p["weights"], step=None, state=None, unroll_steps=1, level="lm")
    v = backend.grad(lambda th: task._specific_loss(backend.ops, {**p, "lm": th}, batch))(p["lm"])
    return r, v, soft_loss(task, backend, batch)


def soft_loss(task, backend, batch):
    """The soft-weighted loss of the uniform sub-batch B', whose derivatives the lower loss's mixed term carries
    (its *value* does not depend on φ, so finite differences need this one)."""
    from mlo_bench.suite.models.byte_models import lm_losses

    ops = backend.ops
    sub = batch["gen"][batch["idx_candidates"][: task.cfg.b_small]]

    def soft(th, phi):
        w = ops.exp(ops.log_softmax(task.wm.apply(ops, phi, sub)))
        return ops.sum(w * lm_losses(ops, task.lm, th, sub))

    return soft


def directional(backend, fn, upper, u, eps=1e-5):
    plus = fn(tree_map(lambda a, b: a + eps * b, upper, u))
    minus = fn(tree_map(lambda a, b: a - eps * b, upper, u))
    return (float(plus) - float(minus)) / (2 * eps)


@pytest.mark.parametrize("method", ["dds", "anograd"])
def test_dds_and_anograd_are_the_derivatives_of_their_objectives(method):
    """dds: d/dφ ⟨θ − η∇_θ f(θ, φ), v⟩ (the look-ahead step's first-order term); anograd: d/dφ of
    −⟨g(φ), v⟩ / ‖g(φ)‖ — each checked along a random direction by central differences (float64)."""
    backend = torch_backend()
    ops, task = backend.ops, DataSelection(DSConfig(**TINY), 0)
    r, v, soft = edge(task, backend)
    m = registry.get("method", method)()
    cfg = registry.make_config("method", method, {})
    h = m.response_vjp(backend, r, v, cfg)
    g0 = backend.grad(r.loss)(r.lower, r.upper)  # the kept batch's gradient (the value the run trains with)
    gf = lambda phi: tree_map(lambda a, b, c: a + b - c, g0, backend.grad(soft)(r.lower, phi),  # noqa: E731
                              backend.grad(soft)(r.lower, r.upper))  # its φ-derivative is the soft-weighted one's
    if method == "dds":
        objective = lambda phi: -cfg.lr * tree_vdot(ops, gf(phi), v)  # noqa: E731
    else:
        objective = lambda phi: -tree_vdot(ops, gf(phi), v) / ops.sqrt(tree_vdot(ops, gf(phi), gf(phi)))  # noqa: E731
    u = tree_map(lambda a: a * 0 + backend.asarray(np.random.default_rng(2).standard_normal(a.shape)), r.upper)
    expected = directional(backend, objective, r.upper, u)
    assert float(tree_vdot(ops, h, u)) == pytest.approx(expected, rel=1e-5, abs=1e-12)
    assert abs(expected) > 0


def test_soba_state_converges_to_the_implicit_solve_at_a_fixed_state():
    """At a fixed state, SOBA's carried x ← x − ρ(Hx − v) converges to H⁻¹v when ρ < 2/λ_max: its VJP tends to
    the one of an exact solve (a strongly convex lower level: the selection toy task)."""
    from selection_task import SelectionTask

    backend = torch_backend()
    task = SelectionTask(SelectionTask.Config(), 0)
    from mlo_bench.suite.engine.hypergradient import level_loss

    p = backend.tree_asarray(task.init_params(np.random.default_rng(0)))
    cand = task.batch("model", 0)["idx"]
    batch = backend.tree_asarray({**task.data(), "idx": cand[:8], "idx_candidates": cand})
    loss = level_loss(backend.ops, task.levels()[1], p, batch, "scorer")
    r = Response(loss=loss, lower=p["model"], upper=p["scorer"], step=None, state=None, unroll_steps=1,
                 level="model")
    v = {"w": backend.asarray(np.linspace(-1, 1, 5))}
    soba, cfg = registry.get("method", "soba")(), registry.make_config("method", "soba", {"rho": 0.2})
    exact = registry.get("method", "exact")().response_vjp(backend, r, v,
                                                           registry.make_config("method", "exact", {}))
    x = soba.init(backend, r.lower, cfg)
    errors = []
    for _ in range(500):  # contraction 1 − ρ λ_min ≤ 1 − 0.2 · 0.2 (ridge 0.1: H ⪰ 0.2 I)
        h, x = soba.update(backend, Response(**{**r.__dict__, "method_state": x}), v, cfg)
        errors.append(float(np.linalg.norm(backend.to_numpy(h["u"] - exact["u"]))))
    assert errors[-1] < 1e-6 * max(errors[0], 1e-12) + 1e-9 and errors[-1] < errors[0]
    residual = tree_map(lambda a, b: a - b, hessian_matvec(backend, r)(x), v)
    assert float(np.abs(backend.to_numpy(residual["w"])).max()) < 1e-6


# ---- baselines and precision against the ground truth ----------------------------------------------------------
def test_the_filters_keep_the_specific_domain_above_its_base_rate_and_uniform_scores_do_not():
    base = DataSelection(DSConfig(**{**TINY, "max_domain_bytes": 30_000, "seq_len": 32}), 0)
    rate = base.is_spec.mean()
    for program in ("classifier", "cds"):
        t = DataSelection(DSConfig(**{**TINY, "max_domain_bytes": 30_000, "seq_len": 32, "program": program}), 0)
        assert t.is_spec[t.pool].mean() > 1.5 * rate, program
        assert len(t.pool) == round(t.cfg.filter_fraction * len(t.gen))
    backend = torch_backend()
    params = backend.tree_asarray(base.init_params(np.random.default_rng(0)))  # zero last layer: uniform scores
    uniform = DataSelection(DSConfig(**{**TINY, "precision_batches": 200}), 0)
    precision = uniform._precision(backend, params)
    assert abs(precision - uniform.is_spec.mean()) < 0.03


@pytest.mark.parametrize("variant", [v.name for v in DataSelection.paper.variants])
def test_every_row_runs_and_records_its_metrics(tmp_path, variant):
    record = run(tmp_path, variant, finetune_steps=2)
    assert record["status"] == "ok", record.get("traceback") or record["reason"]
    m = record["metrics"]
    for key in ("specific_loss", "generic_loss", "specific_loss_finetuned", "selection_precision", "base_rate",
                "steps_per_s"):
        assert np.isfinite(m[key]), key
    assert ("time_select_s" in m) == (DataSelection.paper.variant(variant).overrides["task.program"] == "select")


def test_eval_every_records_curves_of_specific_loss_and_precision(tmp_path):
    record = run(tmp_path, "dds", steps=4, eval_every=2)
    trace = Path(record["_path"]).with_name("trace.csv").read_text().splitlines()
    assert "specific_loss" in trace[0] and "selection_precision" in trace[0] and len(trace) >= 3


@pytest.mark.parametrize("methods", ["dds,soba", pytest.param("cg", marks=pytest.mark.slow)])
def test_verify_certifies_dds_soba_and_cg_across_backends(capsys, methods):
    """float64, one step, 1e-6 (about a minute under load for dds + soba; cg's jax compile doubles it: slow)."""
    if registry.availability("backend", "jax"):
        pytest.skip("jax unavailable: verify would compare torch with itself only")
    over = [f"task.{k}={v}" for k, v in TINY.items()]
    code = verify.main(["task=data_selection", f"method={methods}", "backend=torch,jax", "dtype=float64",
                        "--steps", "1", *over])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("pass") == len(methods.split(","))


def test_naive_materialised_chain_is_refused_in_one_line_and_its_reverse_chain_runs(tmp_path):
    cfg = {"task": {"name": "data_selection", **TINY}, "backend": {"name": "naive"}, "method": {"name": "unroll"},
           "seed": 0, "steps": 2, "inner_steps": 1, "dtype": "float32", "device": "cpu", "results_dir": str(tmp_path),
           "log_every": 0, "progress": False, "hypergrad_check": False}
    record = execute(prepare(cfg))
    assert record["status"] == "unsupported" and "materialises" in record["reason"]
    assert "task.exact_max_params" in record["reason"] and "\n" not in record["reason"]
    record = run(tmp_path, "select-unroll", backend="naive", steps=2)
    assert record["status"] == "ok", record.get("traceback") or record["reason"]


@pytest.mark.slow
def test_verify_cg_stopped_at_negative_curvature_after_ten_float32_steps(capsys):
    """The issue's float32 bar (1e-3 after 10 steps) on the default config, for the cg this task runs (select-cg:
    ``negative_curvature=stop``). Classic CG ends 1.0e-3 apart here (methods/cg.py says why); this one 1.4e-7."""
    if registry.availability("backend", "jax"):
        pytest.skip("jax unavailable: verify would compare torch with itself only")
    code = verify.main(["task=data_selection", "method=cg", "method.negative_curvature=stop", "backend=torch,jax",
                        "dtype=float32", "--steps", "10"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("pass") == 1
