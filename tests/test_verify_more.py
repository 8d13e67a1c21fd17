"""``mlo-bench verify`` hardening: degenerate references and comparisons of zeros, per-method knobs, each method's
error against the oracle beside the cross-backend verdict, and the methods' state compared across backends."""

from __future__ import annotations

import numpy as np
import pytest

from mlo_bench.suite.certify.agreement import compare, worse
from mlo_bench.suite.certify.verify import BadInput, knob_overrides, parse
from mlo_bench.suite.cli import main
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run import execute as runner

SMALL = ["task=quadratic", "task.d=6", "dtype=float64", "--steps", "2"]


def verify(capsys, *args):
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


def row(out: str, backend: str, method: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.split()[:2] == [backend, method])


def test_compare_against_zero_references():
    ref = {"a": {"w": np.array([3.0, 4.0])}, "b": {"w": np.zeros(2)}}
    near = {"a": {"w": np.array([3.0, 4.0])}, "b": {"w": np.array([0.0, 1e-17])}}
    assert compare(near, ref).value == pytest.approx(2e-18), "a zero leaf is measured against the tree's norm"
    zero, tiny = {"w": np.zeros(3)}, {"w": np.array([0.0, 1e-17, 0.0])}
    d = compare(tiny, zero)
    assert d.degenerate and not d.within(1.0) and d.text() == "degenerate"
    v = compare(zero, zero)
    assert v.vacuous and v.within(0.0) and v.text() == "zeros"
    assert np.isnan(compare({"w": np.ones(2)}, {"w": np.ones(3)}).value)
    assert worse(v, compare(ref, ref)).value == 0.0 and not worse(v, compare(ref, ref)).vacuous
    assert worse(v, v).vacuous and worse(d, v).degenerate


def _patched_execute(monkeypatch, edit):
    real = runner.execute

    def execute(plan, capture=None):
        record = real(plan, capture)
        edit(plan.backend_cls.name, capture)
        return record

    monkeypatch.setattr(runner, "execute", execute)


def test_a_zero_reference_hypergradient_is_degenerate_not_a_huge_failure(capsys, monkeypatch):
    def edit(backend, capture):
        capture["first_hypergrad"] = {"x0": {"w": np.zeros(6) if backend == "torch" else np.full(6, 1e-17)}}

    _patched_execute(monkeypatch, edit)
    code, out, _ = verify(capsys, *SMALL, "method=exact", "backend=jax,naive")
    assert code == 1
    r = row(out, "naive", "exact")
    assert r[2] == "degenerate" and r[-2:] == ["degenerate", "reference"]
    assert "e+29" not in out and "the reference (torch) is zero everywhere" in out
    assert "inconclusive (degenerate reference" in out


def test_columns_comparing_zeros_warn_and_a_row_testing_nothing_does_not_pass(capsys, monkeypatch):
    def edit(backend, capture):
        capture["first_hypergrad"] = {"x0": {"w": np.zeros(6)}}

    _patched_execute(monkeypatch, edit)
    code, out, _ = verify(capsys, *SMALL, "method=exact", "backend=naive")
    assert code == 0, "the parameters still compare something"
    assert row(out, "naive", "exact")[2] == "zeros" and row(out, "naive", "exact")[-1] == "pass"
    assert "warning: naive exact: first hypergrad compares zeros with zeros" in out

    def nothing(backend, capture):
        capture["first_hypergrad"] = {"x0": {"w": np.zeros(6)}}
        capture["params"] = {"x0": {"w": np.zeros(6)}}

    _patched_execute(monkeypatch, nothing)
    code, out, _ = verify(capsys, *SMALL, "method=exact", "backend=naive")
    assert code == 1 and row(out, "naive", "exact")[-2:] == ["tests", "nothing"]


def test_method_state_is_compared_in_the_params_column(capsys, monkeypatch):
    def same(backend, capture):
        capture["method_state"] = {"x1": {"buf": np.ones(3)}}

    _patched_execute(monkeypatch, same)
    code, out, _ = verify(capsys, *SMALL, "method=exact", "backend=naive")
    assert code == 0 and row(out, "naive", "exact")[-1] == "pass"

    def differs(backend, capture):
        capture["method_state"] = {"x1": {"buf": np.ones(3) * (1.01 if backend == "naive" else 1.0)}}

    _patched_execute(monkeypatch, differs)
    code, out, _ = verify(capsys, *SMALL, "method=exact", "backend=naive")
    assert code == 1 and row(out, "naive", "exact")[3] == "1.00e-02" and row(out, "naive", "exact")[-1] == "FAIL"


def test_a_knob_several_methods_have_must_be_given_per_method(capsys):
    opts = parse(["method=neumann,darts", "method.neumann.alpha=0.5", "method.darts.alpha=0.02",
                  "method.iterations=3"])
    assert opts.per_method == {"neumann": [("alpha", "0.5")], "darts": [("alpha", "0.02")]}
    assert knob_overrides(opts, ["neumann", "darts"]) == {
        "neumann": ["method.iterations=3", "method.alpha=0.5"], "darts": ["method.alpha=0.02"]}
    with pytest.raises(BadInput, match="method.alpha is a knob of neumann and darts"):
        knob_overrides(parse(["method.alpha=0.5"]), ["neumann", "darts"])
    with pytest.raises(BadInput, match="cg is not among the selected methods"):
        knob_overrides(parse(["method.cg.iterations=3"]), ["neumann"])
    with pytest.raises(BadInput, match="'alpha' is not a knob of cg"):
        knob_overrides(parse(["method.cg.alpha=3"]), ["cg"])
    code, out, err = verify(capsys, "method=neumann,darts", "method.alpha=0.5")
    assert code == 2 and out == "" and err.count("\n") == 1 and "method.neumann.alpha=0.5" in err


def test_the_oracle_table_gives_each_methods_own_error(capsys, tmp_path):
    if why := registry.availability("backend", "jax"):  # neumann and cg run only where a second backend runs them
        pytest.skip(f"jax unavailable: {why}")
    code, out, _ = verify(capsys, *SMALL, "method=neumann,exact,cg", "method.neumann.alpha=0.5",
                          "backend=jax,naive")
    assert code == 0, out
    assert "knobs: neumann: method.alpha=0.5" in out
    table = out.split("against the task's oracle", 1)[1].splitlines()
    cols = table[1].split()
    assert cols[0] == "method" and cols[1] == "torch"
    errors = {line.split()[0]: line.split()[1:] for line in table[2:] if line.split()[:1] in (["neumann"], ["exact"],
                                                                                              ["cg"])}
    assert float(errors["exact"][0]) < 1e-12 and float(errors["neumann"][0]) > 1e-3
    assert errors["cg"][cols.index("naive") - 1] == "-", "naive does not run cg"
    from mlo_bench.suite.run.compose import compose
    from mlo_bench.suite.run.plan import prepare

    rec = runner.execute(prepare(compose(["task=quadratic", "task.d=6", "dtype=float64", "steps=2", "method=neumann",
                                           "method.alpha=0.5", "progress=false", f"results_dir={tmp_path}"])))
    assert float(errors["neumann"][0]) == pytest.approx(rec["metrics"]["hypergrad_rel_error"], rel=1e-2)
    note = next(line for line in out.splitlines() if line.startswith("note: off the oracle"))
    assert "neumann" in note and "exact" not in note
