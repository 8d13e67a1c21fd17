"""The transformer (suite/models/transformer.py) and Betty Table 2's task (tasks/mwn_text.py): parameter counts in
closed form, the same logits on every backend, padding masked out, low-precision activations kept low, hypergradients
agreeing across backends at one state, a run end to end with its memory metrics, and the memory model's fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import initial_state, make_backend

from mlo_bench.suite.certify.verify import max_rel_diff
from mlo_bench.suite.engine.hypergradient import hypergradient_fn
from mlo_bench.suite.models import nn
from mlo_bench.suite.models import transformer as tf
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.report.sections import memory
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare
from mlo_bench.suite.run.records import read_records
from mlo_bench.tasks import mwn_text

SMALL = ["task=mwn_text", "progress=false", "isolate=false", "resume=false", "hypergrad_check=false", "floor=false"]


def _ids(rng, n=4, s=10, vocab=32, pad_from=7):
    ids = rng.integers(4, vocab, (n, s))
    ids[:, 0] = 2  # [CLS]
    ids[:, pad_from:] = tf.PAD_ID
    return ids


@pytest.mark.parametrize("size", ["tiny", "1m", "4m"])
def test_parameter_count_is_the_closed_form(size):
    model = tf.transformer(3, tf.SIZES[size])
    assert nn.n_params(model.init(np.random.default_rng(0))) == tf.count_params(tf.SIZES[size], 3)


def test_sizes_grow_to_bert_base_and_the_family_inverts_the_count():
    counts = [tf.count_params(s, 2) for s in tf.SIZES.values()]
    assert counts == sorted(counts) and counts[-1] == 109_473_026  # BERT-base with a 2-class head
    for d in (256, 768, 1024):  # BERT-shaped widths: heads d/64, MLP 4d
        p = tf.count_params(tf.Shape(30522, d, 12, d // 64, 4 * d, 512), 2)
        assert mwn_text.family_width(p) == pytest.approx(d, rel=1e-9)


@pytest.mark.parametrize("other", ["jax", "naive"])
def test_logits_agree_across_backends_and_padding_is_masked(other):
    model = tf.transformer(3, tf.SIZES["tiny"])
    params = model.init(np.random.default_rng(0))
    ids = _ids(np.random.default_rng(1))
    out = {}
    for name in ("torch", other):
        b = make_backend(name, "float64")
        p = b.tree_asarray(params)
        out[name] = b.to_numpy(model.apply(b.ops, p, b.asarray(ids)))
        # more padding, or other tokens behind the padding mark, change nothing: padded positions are masked out
        longer = np.concatenate([ids, np.zeros((len(ids), 5), dtype=ids.dtype)], axis=1)
        np.testing.assert_allclose(b.to_numpy(model.apply(b.ops, p, b.asarray(longer))), out[name], atol=1e-12)
        b.teardown()
    assert out["torch"].shape == (4, 3)
    np.testing.assert_allclose(out[other], out["torch"], rtol=1e-10, atol=1e-12)
    # ... while a real token changes them (the test above could not pass by ignoring the input)
    changed = ids.copy()
    changed[:, 3] = (changed[:, 3] + 1) % 28 + 4
    b = make_backend("torch", "float64")
    assert not np.allclose(b.to_numpy(model.apply(b.ops, b.tree_asarray(params), b.asarray(changed))), out["torch"])


def test_under_autocast_activations_stay_in_the_low_precision():
    torch = pytest.importorskip("torch")
    b = make_backend("torch", "float32")
    model = tf.transformer(2, tf.SIZES["tiny"])
    p = b.tree_asarray(model.init(np.random.default_rng(0)))
    x = b.asarray(np.ones((3, 8)))
    bias = p["fc_b"]
    assert b.ops.to_compute(bias) is bias  # outside autocast: the identity, no copy
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert nn.linear(b.ops, {"l_w": p["pool_w"], "l_b": p["pool_b"]}, "l", x).dtype == torch.bfloat16
        assert tf.layer_norm(b.ops, x.to(torch.bfloat16), p["emb_ln_g"], p["emb_ln_b"]).dtype == torch.bfloat16
        assert model.apply(b.ops, p, b.asarray(_ids(np.random.default_rng(2)))).dtype == torch.bfloat16


def _hypergrad(backend_name, method):
    plan = prepare(compose([*SMALL, f"backend={backend_name}", f"method={method}", "dtype=float64"]))
    b = make_backend(backend_name, "float64")
    levels, params, states, batches = initial_state(b, plan.task_cls(plan.task_cfg, 0))
    hyper = hypergradient_fn(b, plan.method, plan.method_cfg, levels, 1)
    hg = b.tree_to_numpy(b.compile(hyper, (params, states, batches))[0](params, states, batches))
    b.teardown()
    return hg


@pytest.mark.parametrize("method", ["cg", "darts", "unroll"])
def test_hypergradients_agree_between_torch_and_jax_in_float64(method):
    if registry.availability("backend", "jax"):
        pytest.skip(f"jax unavailable: {registry.availability('backend', 'jax')}")
    ref = _hypergrad("torch", method)
    assert sum(np.abs(v).sum() for v in ref.values()) > 0
    assert max_rel_diff(_hypergrad("jax", method), ref) < 1e-8


def test_a_run_records_accuracy_size_and_memory(tmp_path):
    execute(prepare(compose([*SMALL, "backend=torch", "method=darts", "steps=3", f"results_dir={tmp_path}"])))
    (rec,) = read_records([tmp_path])
    m = rec["metrics"]
    assert rec["status"] == "ok", rec.get("reason")
    assert m["n_params"] == 1282 and 0 <= m["test_accuracy"] <= 1 and len(m["per_class_accuracy"]) == 10
    cfg = mwn_text.MWNTextConfig()
    assert m["activation_elements"] == (cfg.batch_size + cfg.meta_batch_size) * cfg.seq_len * 1 * (8 + 2 * 16)
    # resident: classifier + weight net, each with Adam's two moments (float32)
    weight_net = nn.n_params(nn.weight_net(cfg.weight_net_hidden).init(np.random.default_rng(0)))
    assert m["resident_bytes"] >= 3 * 4 * (1282 + weight_net)
    assert m["peak_live_bytes"] > 0


def test_bad_knobs_are_one_line_errors():
    for knobs, needle in (({"size": "huge"}, "task.size"), ({"seq_len": 64}, "task.seq_len"),
                          ({"dataset": "imdb"}, "task.dataset"), ({"dataset": "sst"}, "task.data_root")):
        with pytest.raises(ValueError, match=needle):
            mwn_text.MWNTextConfig(**knobs).validate()


def test_memory_fit_recovers_a_known_model_and_predicts_the_largest_fit():
    rng = np.random.default_rng(0)
    a, b, c = 16.0, 6.0, 2.0**20
    rows = []
    for p in (1e6, 4e6, 1.6e7, 6.4e7, 1.1e8):
        for act in (1e5, 1e6):
            rows.append({"P": p, "A": act * (1 + rng.random()), "bytes": 0.0})
    g = pd.DataFrame(rows)
    g["bytes"] = a * g["P"] + b * g["A"] + c
    m = memory.fit(g)
    assert m["a"] == pytest.approx(a, rel=1e-6) and m["b"] == pytest.approx(b, rel=1e-6) and m["max_rel"] < 1e-6
    p24 = memory.largest(m, mwn_text.family_activations, 24 * memory.GIB)
    p80 = memory.largest(m, mwn_text.family_activations, 80 * memory.GIB)
    assert a * p24 + b * mwn_text.family_activations(p24) + c == pytest.approx(24 * memory.GIB, rel=1e-6)
    assert p80 > p24 > 1e8


def test_the_report_fits_a_memory_model_to_counted_runs_at_three_sizes(tmp_path):
    from mlo_bench.suite.report.build import build

    for vocab in (32, 64, 128):  # three parameter counts of the tiny shape
        execute(prepare(compose([*SMALL, "backend=torch", "method=darts", "steps=1", f"task.vocab_size={vocab}",
                                 f"results_dir={tmp_path / 'runs'}"])))
    build([tmp_path / "runs"], tmp_path / "report", [], draw=False)
    text = (tmp_path / "report" / "report.md").read_text()
    section = text[text.index("## Memory model"):]
    # a plain darts run in fp32 is the variant mwn-fp32 (the first the run's method and overrides match)
    assert "| torch | mwn-fp32 | fp32 |" in section and "largest at 141 GiB" in section
    assert "| 1.3k | 1.5k | 2.0k |" in section, section  # the three sizes, scaled


def test_memory_points_name_runs_as_run_and_fill_a_diverged_runs_sizes():
    """A memory sweep's ``variant=cg precision=bf16`` stands for no task variant (the variants' rule), so its
    points are named by the variant it was run as; a run that ended ``diverged`` keeps its counted bytes and takes
    its size metrics from a run of the same task config."""
    nan = float("nan")
    rows = [("ok", "darts", "cg", "4m", 2, 4e6, 1e5), ("diverged", nan, "cg", "4m", 2, nan, nan),
            ("ok", nan, "unroll-4", "16m", 2, 1.6e7, 2e5), ("diverged", nan, nan, "16m", 8, nan, nan)]
    w = pd.DataFrame([{"task": "mwn_text", "backend": "torch", "method": "cg", "status": st, "precision": "bf16",
                       "task_variant": tv, "run_variant": rv, "task.size": size, "task.batch_size": batch,
                       "n_params": p, "activation_elements": a, "peak_live_bytes": 1e6, "resident_bytes": 1e6,
                       "peak_memory_bytes": nan, "memory_kind": "cpu_rss_delta"}
                      for st, tv, rv, size, batch, p, a in rows])
    pts = memory.points(w)
    assert list(pts["variant"]) == ["darts", "cg", "unroll-4"], "task variant, else as run; the last has no sizes"
    assert pts.iloc[1][["P", "A", "status"]].tolist() == [4e6, 1e5, "diverged"]


def test_a_fit_says_how_many_points_move_the_bytes_at_one_size():
    """fp16's baseline at 4m counted the same bytes at 2, 8 and 32 sequences (the cast copies of the parameters set
    the peak) and more only at 128: its activation term rests on one point, and the table marks it."""
    def group(at_4m):
        rows = [{"P": p, "A": 1e5 * p / 1e6, "bytes": 30.0 * p} for p in (1e6, 4e6, 1.6e7)]
        return pd.DataFrame(rows + [{"P": 4e6, "A": a, "bytes": 30.0 * 4e6 + byts} for a, byts in at_4m])

    flat = memory.fit(group([(2e5, 0.0), (8e5, 0.0), (3.2e6, 9e7)]))
    moving = memory.fit(group([(2e5, 1e6), (8e5, 4e6), (3.2e6, 1.6e7)]))
    assert (flat["moving"], moving["moving"]) == (1, 3)
    mod = pd.DataFrame([{"task": "mwn_text", "backend": "torch", "variant": v, "precision": "fp16", **m}
                        for v, m in (("baseline", flat), ("cg", moving))])
    rows = {r[1].text: r[4] for r in memory.fit_table(mod, "mwn_text").rows}
    assert rows["baseline"].text.endswith("(1 pt)") and rows["baseline"].tone == "bad"
    assert rows["cg"].tone == "" and "pt" not in rows["cg"].text
