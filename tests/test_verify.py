"""``mlo-bench verify``: the cross-backend agreement certificate passes, fails when it should, and rejects bad input."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import mlo_bench.backends.naive as naive_mod
from mlo_bench.suite.certify.verify import max_rel_diff, parse
from mlo_bench.suite.cli import main
from mlo_bench.suite.plugins import registry

SMALL = ["task=quadratic", "task.d=12", "--steps", "3", "backend=torch,jax,naive"]  # the peers: test_peers.py
#: SMALL without its backends (a key may be given once: the one-line error of duplicates)
ONE_BACKEND = SMALL[:-1]


def verify(capsys, *args):
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(out):
    """{(backend, method): result} from the printed table."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] in registry.names("backend") and parts[1] in registry.names("method"):
            rows[parts[0], parts[1]] = " ".join(parts[4:])
    return rows


def test_max_rel_diff():
    a = {"x": {"w": np.array([3.0, 4.0])}, "y": {"w": np.zeros(2)}}
    assert max_rel_diff(a, a) == 0.0
    b = {"x": {"w": np.array([3.0, 4.0 + 5e-3])}, "y": {"w": np.zeros(2)}}
    assert max_rel_diff(b, a) == pytest.approx(1e-3)
    c = {"x": {"w": np.array([3.0, 4.0])}, "y": {"w": np.array([0.0, 1e-10])}}
    # against a zero leaf: relative to the whole reference's norm (5), verify's one rule, not to tiny
    assert max_rel_diff(c, a) == pytest.approx(1e-10 / 5)
    assert np.isnan(max_rel_diff({"w": np.array([1e-17])}, {"w": np.zeros(1)}))  # a degenerate reference
    assert np.isnan(max_rel_diff({"w": np.array([np.nan])}, {"w": np.array([1.0])}))


def test_float64_certificate_passes(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = verify(capsys, *SMALL, "dtype=float64")
    assert code == 0, out + err
    rows = _rows(out)
    assert rows[("naive", "exact")] == "pass" and rows[("naive", "unroll")] == "pass"
    assert all(rows[("torch", m)] == "reference" for m in ("exact", "unroll"))
    # the per-minibatch solvers need fixed minibatches, which this deterministic task has none of: skipped, said why
    partitioned = {m for m in registry.names("method") if registry.get("method", m).init_reads_batches}
    assert partitioned >= {"saba", "srba"}
    assert all(f"method {m} skipped: task quadratic does not support it ({m} keeps per-minibatch state" in out
               for m in partitioned), out
    skipped = {m for m in registry.names("method") if f"method {m} skipped: task quadratic" in out}
    assert skipped == partitioned, "every other method runs here (mrbo too: it needs no fixed minibatches)"
    if registry.availability("backend", "jax") is None:
        passed = {m for (b, m), r in rows.items() if b == "jax" and r == "pass"}
        assert passed == set(registry.names("method")) - partitioned
    assert ("naive", "cg") not in rows and "naive skipped" in out
    assert "tolerance 1e-06" in out and "ok: all" in out
    assert not (tmp_path / "results").exists(), "verify must not write records into results/"


def test_float32_certificate_passes_at_its_default_tolerance(capsys):
    code, out, err = verify(capsys, *SMALL)
    assert code == 0, out + err
    assert "float32" in out and "tolerance 0.001" in out


def test_an_impossible_tolerance_fails(capsys):
    code, out, _ = verify(capsys, *SMALL, "method=exact,unroll", "--tol", "1e-30")
    assert code == 1
    rows = _rows(out)
    assert "FAIL" in rows[("naive", "exact")] and "FAILED" in out


def test_a_wrong_backend_is_caught(capsys, monkeypatch):
    """Scale naive's exact Jacobian by 1.0001: float64 verify must flag it, and only it."""
    real = naive_mod.exact_jacobian
    monkeypatch.setitem(naive_mod.JACOBIANS, "exact", lambda b, r, cfg: 1.0001 * real(b, r, cfg))
    code, out, _ = verify(capsys, *ONE_BACKEND, "dtype=float64", "method=exact", "backend=naive")
    assert code == 1
    assert _rows(out)[("naive", "exact")] == "FAIL"


def test_without_jax_it_compares_the_rest_and_says_why(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # `import jax` now fails, as where it is not installed
    code, out, err = verify(capsys, *SMALL, "dtype=float64", "method=exact")
    assert code == 0, out + err
    assert "jax skipped" in out and "jax" not in {b for b, _ in _rows(out)}
    assert _rows(out)[("naive", "exact")] == "pass"


@pytest.mark.parametrize("args,message", [
    (["backend=nope"], "unknown backend"),
    (["method=exact,nope"], "unknown method"),
    (["--tol", "abc"], "--tol"),
    (["--tol"], "needs a value"),
    (["--steps", "0"], "--steps"),
    (["steps=2", "--steps", "3"], "disagree"),
    (["--reference", "nope"], "unknown backend"),
    (["results_dir=x"], "does not take"),
    (["--frobnicate"], "unknown option"),
    (["dtype=float16"], "dtype"),
    (["task.d=0"], "task.d"),
    (["method=exact", "method.iterations=3"], "method.iterations"),
    (["method=cg", "backend=naive"], "nothing to compare"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    code, out, err = verify(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("mlo-bench verify: error:") and message in err and err.count("\n") == 1


def test_parse_options():
    opts = parse(["task=quadratic", "--tol=1e-4", "--reference", "naive", "steps=4", "method=cg,exact",
                  "method.iterations=30", "backend=jax"])
    assert opts.tol == 1e-4 and opts.reference == "naive" and opts.steps == 4
    assert opts.methods == ["cg", "exact"] and opts.backends == ["jax"]
    assert opts.method_overrides == [("iterations", "30")] and opts.overrides == ["task=quadratic"]


def test_help(capsys):
    code, out, _ = verify(capsys, "--help")
    assert code == 0 and "usage: mlo-bench verify" in out
    assert main([]) == 0 and "verify" in capsys.readouterr().out
