"""The paper-shaped variant table (Betty Table 1 analogue): rows, columns, pairing, verdicts computed from records."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mlo_bench.suite.report import claims, variants
from mlo_bench.suite.report.markdown import table as md_table

MWN = next(t for t in variants.TABLES if t.task == "mwn")


def _rec(variant: str, imbalance: float, seed: int, acc: float, live: float, time_s: float, **task) -> dict:
    backend, method, inner, reweight = {
        "erm": ("torch", "first_order", 1, False), "original-unrolled": ("naive", "unroll", 1, True),
        "unroll-1": ("torch", "unroll", 1, True), "cg": ("torch", "cg", 1, True),
        "neumann": ("torch", "neumann", 1, True), "darts-1": ("torch", "darts", 1, True),
        "darts-5": ("torch", "darts", 5, True)}[variant]
    config = {"task": {"name": "mwn", "dataset": "digits", "imbalance_factor": imbalance, "reweight": reweight,
                       **task},
              "backend": {"name": backend, **({"chain": "reverse"} if backend == "naive" else {})},
              "method": {"name": method}, "seed": seed, "steps": 100,
              "inner_steps": inner, "dtype": "float32"}
    return {"task": "mwn", "backend": backend, "method": method, "seed": seed, "status": "ok", "config": config,
            "metrics": {"test_accuracy": acc, "peak_live_bytes": live, "peak_memory_bytes": 1e8,
                        "time_total_s": time_s}}


def _records(darts_acc: float, darts_live: float, rng: np.random.Generator) -> list[dict]:
    base = {"erm": 0.70, "original-unrolled": 0.80, "unroll-1": 0.80, "cg": 0.78, "neumann": 0.79,
            "darts-1": darts_acc, "darts-5": 0.82}
    out = []
    for imbalance in (10.0, 100.0):
        for name, acc in base.items():
            drop = 0.15 if imbalance == 100 and name == "erm" else 0.0  # ERM suffers most at high imbalance
            for seed in range(3):
                live = darts_live if name == "darts-1" else 4e5 if name == "original-unrolled" else 2e5
                out.append(_rec(name, imbalance, seed, acc - drop + 0.003 * rng.standard_normal(),
                                live * (1 + 0.001 * seed), 10.0 + 0.1 * seed + (2 if name == "original-unrolled"
                                                                                 else 0)))
    return out


def test_table_has_a_row_per_variant_and_a_column_per_imbalance_factor():
    rng = np.random.default_rng(0)
    records = _records(0.80, 3e5, rng)
    records.append(_rec("cg", 10.0, 7, 0.1, 1.0, 1.0, hidden=99))  # another setting: never pooled into the table
    records.append({**_rec("cg", 10.0, 8, 0.0, 1.0, 1.0), "status": "diverged"})  # not ok: not counted
    result = variants.evaluate(MWN, records)
    assert result["columns"] == [10.0, 100.0]
    assert result["settings"] == 2
    assert {k: len(v) for k, v in result["rows"].items()} == {v: 6 for v in MWN.variants}
    sec = variants.section(MWN, result)
    text = "\n".join(md_table(b) for b in sec.blocks if hasattr(b, "header"))
    assert "IF 10" in text and "IF 100" in text and "darts-5" in text and "naive / unroll" in text
    assert "(3)" in text  # mean ± std over the 3 seeds


@pytest.mark.parametrize("darts_acc,darts_live,verdict", [
    (0.80, 3e5, claims.SUPPORTED),       # same accuracy, less memory, less time
    (0.70, 3e5, claims.NOT_SUPPORTED),   # clearly less accurate
    (0.80, 5e5, claims.NOT_SUPPORTED),   # more memory than the unrolled original
])
def test_darts_versus_original_verdict_is_computed(darts_acc, darts_live, verdict):
    result = variants.evaluate(MWN, _records(darts_acc, darts_live, np.random.default_rng(1)))
    (_, mwn_vs_erm, lines), (_, darts_vs_orig, darts_lines) = result["claims"]
    assert darts_vs_orig == verdict, darts_lines
    # MWN vs ERM is judged at the highest imbalance only: one line per reweighting variant, each supported
    assert len(lines) == 6 and all("IF 100" in label for label, _, _ in lines)
    assert mwn_vs_erm == claims.SUPPORTED, lines


def test_missing_variant_is_not_measured_and_no_runs_is_no_section():
    records = [r for r in _records(0.8, 3e5, np.random.default_rng(2)) if r["method"] != "first_order"]
    result = variants.evaluate(MWN, records)
    assert result["claims"][0][1] == claims.NOT_MEASURED
    assert variants.evaluate(MWN, []) is None
    assert variants.sections([]) == []


@pytest.mark.parametrize("want,lo,hi,verdict", [
    ("better", 1.01, 1.2, claims.SUPPORTED), ("better", 0.9, 1.1, claims.INCONCLUSIVE),
    ("lower", 0.8, 0.9, claims.SUPPORTED), ("lower", 1.1, 1.3, claims.NOT_SUPPORTED),
    ("match", 0.985, 1.05, claims.SUPPORTED), ("match", 0.90, 0.97, claims.NOT_SUPPORTED),
    ("match", 0.95, 1.01, claims.INCONCLUSIVE), ("match", math.nan, math.nan, claims.INCONCLUSIVE),
])
def test_comparison_verdict_rule(want, lo, hi, verdict):
    assert variants.comparison_verdict(want, lo, hi) == verdict
