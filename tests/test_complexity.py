"""The O(d²) vs O(d³) experiment: counted FLOPs (torch by hand, jax of the same order), the budget and its `skipped`
status, the log–log fit and its verdict rule, and the small preset end to end (run → report → complexity_fit.csv)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import make_backend, make_task, method_cfg

from mlo_bench.suite.cli import main as cli_main
from mlo_bench.suite.engine.hypergradient import hypergradient_fn, oracle_state
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.report.command import main as report_main
from mlo_bench.suite.report.sections import complexity_fit as complexity
from mlo_bench.suite.run.records import read_records

D = 5


def _hyper(backend, d: int, levels: int, method: str, **knobs):
    """One hypergradient of the quadratic chain as the runner builds it: (function, its arguments)."""
    task = make_task(d=d, levels=levels)
    levels_ = task.levels()
    params, states, batches = oracle_state(backend, task)
    fn = hypergradient_fn(backend, registry.get("method", method)(), method_cfg(method, **knobs), levels_, 1)
    return fn, (params, states, batches)


# ----------------------------------------------------------------------------------------------------------------
# counted FLOPs


@pytest.mark.parametrize("iterations", [1, 3])
def test_torch_cg_flops_match_a_hand_count(torch64, iterations):
    """Every matrix–vector product on the d×d data costs 2d² FLOPs (FlopCounterMode's multiply-add = 2). By hand:
    - the gradient's graph, built once per solve (``hvp_operator``; f = ½θᵀAθ − θᵀ(Bλ + c)): the forward pass A θ and
      B λ (2 mv) and the gradient's backward Aᵀ(·) (1 mv): 3 mv;
    - each HVP, reverse over that graph (u ↦ ∇_θ⟨∇_θ f, u⟩): the double backward through both A-products: 2 mv;
    - the mixed term −∇_λ⟨∇_θ f, x⟩: the same forward and gradient (3 mv) and Bᵀ x (1 mv): 4 mv;
    - the top loss ½‖θ − b‖² + ½ρ‖λ‖² and the CG updates: elementwise only (not counted).
    So K CG iterations cost (2K + 7)·2d² (5K + 4 when every HVP rebuilt the gradient, before issue #18)."""
    fn, args = _hyper(torch64, D, 2, "cg", iterations=iterations)
    assert torch64.count_flops(fn, args) == (2 * iterations + 7) * 2 * D * D


def test_torch_flop_formulas_and_no_heavy_op_left_uncounted(torch64):
    torch = torch64.torch
    a, b = torch.randn(7, 7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    assert torch64.count_flops(torch.mv, (a, b)) == 2 * 49
    assert torch64.count_flops(torch.dot, (b, b)) == 2 * 7
    assert torch64.count_flops(torch.addmv, (b, a, b)) == 2 * 49
    spd = a @ a.T + 7 * torch.eye(7, dtype=torch.float64)
    assert torch64.count_flops(torch64.solve, (spd, b)) == 2 * 7**3 // 3 + 2 * 49  # LU + 2 triangular solves
    assert torch64.count_flops(torch64.solve, (spd, a)) == 2 * 7**3 // 3 + 2 * 49 * 7  # 7 right-hand sides

    # Every op our hypergradients dispatch is either counted or O(size of its output) (views, elementwise, sums).
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    from mlo_bench.backends._torch_counting import flop_formulas

    counted = set(flop_registry) | set(flop_formulas(torch))
    cheap = {"add", "sub", "mul", "div", "neg", "sum", "expand", "ones_like", "zeros_like", "t", "where", "ne",
             "view", "cat", "slice", "slice_backward", "select", "select_backward", "stack", "detach", "permute",
             "diagonal", "fill_", "new_zeros", "split_with_sizes", "_linalg_check_errors", "reciprocal", "sqrt",
             "clone", "copy_", "zero_", "unsqueeze", "squeeze", "alias", "_to_copy", "empty_like", "lift_fresh"}

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.add(func.overloadpacket)
            return func(*args, **(kwargs or {}))

    seen = set()
    for name in ("torch", "naive"):
        backend = make_backend(name, "float64")
        for method in ("exact", "cg", "neumann", "unroll", "darts"):
            if backend.supports(method):
                continue
            fn, args = _hyper(backend, D, 3, method)
            with Seen() as s:
                fn(*args)
            seen |= s.ops
            # the backend's lean counter and FlopCounterMode itself, with the same formulas, agree
            with FlopCounterMode(display=False, custom_mapping=flop_formulas(torch)) as reference:
                fn(*args)
            assert backend.count_flops(fn, args) == reference.get_total_flops() > 0, (name, method)
    uncounted = {op.__name__.split(".")[-1] for op in seen - counted}
    assert uncounted <= cheap, f"ops with no FLOP formula: {sorted(uncounted - cheap)}"
    assert {"mv", "mm", "_linalg_solve_ex"} <= {op.__name__.split(".")[-1] for op in seen & counted}


@pytest.mark.jax
def test_jax_counts_of_the_same_order_and_every_loop_iteration(torch64):
    pytest.importorskip("jax")
    jax_backend = make_backend("jax", "float64")
    try:
        counts = {}
        for k in (3, 6, 9):
            fn, args = _hyper(jax_backend, 64, 2, "cg", iterations=k)
            counts[k] = jax_backend.count_flops(fn, args)
            tfn, targs = _hyper(torch64, 64, 2, "cg", iterations=k)
            ratio = counts[k] / torch64.count_flops(tfn, targs)
            # jax traces no dead forward products (2 mv per forward-over-reverse HVP instead of torch's 5) and XLA
            # counts elementwise work: same order, not the same number
            assert 0.2 < ratio < 1.5, (k, ratio)
        # loops are counted per iteration (XLA's cost analysis alone counts a while body once): linear in K
        step = counts[6] - counts[3]
        assert step > 6 * 2 * 64 * 64  # three more iterations: at least two matvecs each
        assert counts[9] - counts[6] == pytest.approx(step, rel=0.05)
        a = np.eye(32) * 3 + np.random.default_rng(0).standard_normal((32, 32)) * 0.1
        solve = jax_backend.count_flops(jax_backend.solve, (jax_backend.asarray(a), jax_backend.asarray(a[0])))
        assert solve >= 2 * 32**3 // 3 + 32**2, "LU factorisation and triangular solves (LAPACK custom calls)"
    finally:
        jax_backend.teardown()


# ----------------------------------------------------------------------------------------------------------------
# the fit


def test_fit_recovers_known_exponents_with_covering_intervals():
    rng = np.random.default_rng(7)
    sizes = [256, 512, 1024, 1448, 2048, 2896, 4096]
    covered = total = 0
    for p in (1.0, 2.0, 3.0):
        for _ in range(60):
            d = np.repeat(sizes, 2)  # two seeds: every point enters the fit
            y = 1e-9 * d**p * np.exp(0.1 * rng.standard_normal(d.size))
            f = complexity.fit_xy(d, y, "time_hypergrad_s")
            assert (f.d_min, f.d_max, f.n_points) == (1024, 4096, 10)
            assert f.exponent == pytest.approx(p, abs=0.25)
            covered += f.ci_low <= p <= f.ci_high
            total += 1
    assert 0.88 <= covered / total <= 1.0, covered / total  # a 95% interval covers the truth ~95% of the time

    # the range rule: a fixed overhead swamps small sizes; fitted over every size the exponent would be far off
    d = np.array([64, 128, 256, 512, 1024, 2048, 4096], dtype=float)
    y = 5e-3 + 1e-9 * d**3
    assert complexity.fit_xy(d, y, "time_hypergrad_s").exponent == pytest.approx(3.0, abs=0.15)
    assert complexity.fit_xy(d, y, "other").exponent < 2.5
    # fewer than three sizes in range: the three largest
    f = complexity.fit_xy([32, 64, 128, 256], [1, 8, 64, 512], "time_hypergrad_s")
    assert (f.d_min, f.d_max, f.n_points) == (64, 256, 3) and f.exponent == pytest.approx(3.0)


def _table(rows):
    return pd.DataFrame([dict(zip(complexity.COLUMNS, r, strict=True)) for r in rows], columns=complexity.COLUMNS)


def _rows(flops_mat=(3.0, 2.95, 3.05), flops_free=(2.0, 1.97, 2.03), time_mat=2.8, time_free=1.6):
    return [("naive", "exact", 2, "flops_hypergrad", *flops_mat, 256, 2048, 4),
            ("torch", "cg", 2, "flops_hypergrad", *flops_free, 256, 4096, 6),
            ("naive", "exact", 2, "time_hypergrad_s", time_mat, time_mat - 0.3, time_mat + 0.3, 1024, 2048, 3),
            ("torch", "cg", 2, "time_hypergrad_s", time_free, time_free - 0.3, time_free + 0.3, 1024, 4096, 5),
            # another materialised path: listed, not judged (dense BLAS-3 gains efficiency with size)
            ("torch", "exact", 2, "time_hypergrad_s", 1.0, 0.5, 1.5, 1024, 2048, 3)]


@pytest.mark.parametrize("changes,verdict", [
    ({}, complexity.SUPPORTED),
    ({"flops_mat": (2.5, 2.45, 2.55)}, complexity.NOT_SUPPORTED),    # the materialised path is not cubic
    ({"flops_free": (2.0, 1.80, 2.20)}, complexity.INCONCLUSIVE),     # interval wider than the band
    ({"time_mat": 1.2}, complexity.NOT_SUPPORTED),                    # the matrix-free path grows faster
    ({"time_mat": 1.6}, complexity.INCONCLUSIVE),                     # no order
])
def test_verdict_rule(changes, verdict):
    result = complexity.verdict(_table(_rows(**changes)))
    assert result.verdict == verdict, result.reasons
    assert complexity.verdict(_table(_rows()[1:2])).verdict == complexity.NOT_MEASURED  # one side only


# ----------------------------------------------------------------------------------------------------------------
# the budget and the small preset, end to end


def test_budget_skips_then_runs_when_raised(tmp_path, capsys):
    common = ["run", "steps=2", "progress=false", "isolate=false", f"results_dir={tmp_path}"]
    base = [*common, "task.d=8", "backend=naive", "method=exact"]
    assert cli_main([*base, "budget.max_d_materialised=4"]) == 1
    (rec,) = read_records([tmp_path])
    assert rec["status"] == "skipped" and "budget.max_d_materialised=4" in rec["reason"]
    assert all(v is None for v in rec["metrics"].values()), "not run: nothing measured"
    assert cli_main([*base, "budget.max_d_materialised=8"]) == 0, "a larger budget runs it (skipped is not final)"
    assert cli_main([*base, "budget.max_d_materialised=4"]) == 0, "the ok record is reused, not skipped again"
    assert sorted(r["status"] for r in read_records([tmp_path])) == ["ok", "skipped"]
    assert cli_main([*common, "task.d=8", "method=cg", "backend=torch", "budget.max_d_materialised=4"]) == 0, \
        "matrix-free: no limit"
    assert cli_main([*common, "task.d=8", "backend=naive", "method=unroll", "backend.chain=reverse",
                     "budget.max_d_materialised=4"]) == 0, \
        "naive in reverse mode materialises nothing: no limit"
    # (2 + 3)·6²·8 B > 107 B
    assert cli_main([*common, "task.d=6", "backend=naive", "method=exact", "budget.max_dense_gb=1e-7"]) == 1
    assert any("budget.max_dense_gb" in (r["reason"] or "") for r in read_records([tmp_path]))
    capsys.readouterr()
    assert cli_main([*base, "budget.max_d_materialised=0"]) == 2
    assert "budget.max_d_materialised" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    results = tmp_path_factory.mktemp("complexity")
    cli_main(["run", "-m", "+experiment=complexity_small", f"results_dir={results}"])
    out = results / "report"
    assert report_main([str(results), "--out", str(out), "--no-figures"]) == 0
    return results, out


def test_small_preset_records_flops_memory_and_skips(small):
    results, _ = small
    records = read_records([results])
    assert len(records) == 16
    skipped = [r for r in records if r["status"] == "skipped"]
    assert {(r["backend"], r["method"], r["config"]["task"]["d"]) for r in skipped} == {
        ("naive", "exact", 256), ("torch", "exact", 256)}
    ok = [r for r in records if r["status"] == "ok"]
    assert ok and all(r["metrics"]["flops_hypergrad"] > 0 and r["metrics"]["peak_live_bytes"] > 0 for r in ok)


def test_small_preset_fit_file_and_order(small):
    _, out = small
    table = pd.read_csv(out / complexity.FILE)
    assert list(table.columns) == complexity.COLUMNS
    flops = table[table["measure"] == "flops_hypergrad"]
    mat = flops[flops["method"] == "exact"]
    free = flops[flops["method"] != "exact"]
    assert len(mat) >= 2 and len(free) >= 1
    assert mat["exponent"].min() > free["exponent"].max() + 0.5, "materialised FLOPs grow faster"
    assert mat["exponent"].min() > 2.7 and free["exponent"].max() < 2.2
    memory = table[table["measure"] == "peak_live_bytes"].set_index(["backend", "method"])["exponent"]
    assert memory[("torch", "cg")] < 1.3 < 1.7 < memory[("naive", "exact")], "O(d) vectors vs d×d matrices"
    assert all(math.isfinite(x) for x in table["ci_low"])
    report = (out / "report.md").read_text()
    assert "## Complexity: O(d²) versus O(d³)" in report and "Betty's O(d³) → O(d²) claim:" in report


def test_time_versus_flops_gap_is_read_off_the_achieved_rate():
    from mlo_bench.suite.report.sections import complexity_gap

    sizes = [256, 512, 1024, 1448, 2048]
    rows = []
    for backend, method, time_p in (("naive", "exact", 3.5), ("torch", "cg", 2.0), ("torch", "exact", 2.6)):
        flop_p = 3.0 if method == "exact" else 2.0
        for d in sizes:
            rows.append({"task": "quadratic", "backend": backend, "method": method, "variant": "{}", "levels": 2,
                         "d": d, "seed": 0, "group": "g", "flops_hypergrad": 2.0 * d**flop_p,
                         "time_hypergrad_s": 1e-10 * d**time_p, "peak_live_bytes": 8.0 * d * d, "path": method})
    pts = pd.DataFrame(rows)
    got = {(r["backend"], r["method"]): r for r in complexity_gap.rows(pts, complexity.fit(pts))}
    assert got[("naive", "exact")]["gap"] == pytest.approx(0.5, abs=1e-6)
    assert got[("naive", "exact")]["rate_hi"] < got[("naive", "exact")]["rate_lo"]  # rate falls as d grows
    assert got[("torch", "cg")]["gap"] == pytest.approx(0.0, abs=1e-6)
    assert got[("torch", "exact")]["gap"] == pytest.approx(-0.4, abs=1e-6)
    text = str(complexity_gap.blocks(pts, complexity.fit(pts))[-1].items)
    assert "naive × exact L=2 (+0.50)" in text and "torch × exact L=2 (-0.40)" in text


def test_a_backend_configured_not_to_materialise_is_its_own_matrix_free_path():
    label = complexity.backend_label("naive", {"chain": "reverse"})
    assert label == 'naive {"chain": "reverse"}'
    assert complexity.backend_label("naive", {"chain": "materialised"}) == "naive", "defaults are not in the label"
    assert complexity.is_materialised("naive", "unroll") and not complexity.is_materialised(label, "unroll")
    assert complexity.is_materialised(label, "exact") and not complexity.is_chain(label, "exact")
    assert complexity.is_chain("naive", "exact")
