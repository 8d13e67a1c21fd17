"""Every verdict of every rule (suite/report/verdicts.py), each from an interval that decides it — and the cases
with no interval."""

from __future__ import annotations

import math

import pytest

from mlo_bench.suite.report import verdicts as V

NAN = math.nan


@pytest.mark.parametrize("expected,lo,hi,verdict", [
    (0.86, 0.80, 0.95, V.SUPPORTED),
    (0.86, 1.05, 1.30, V.NOT_SUPPORTED),
    (0.86, 0.90, 1.10, V.INCONCLUSIVE),
    (1.11, 1.02, 1.20, V.SUPPORTED),
    (1.11, 0.70, 0.95, V.NOT_SUPPORTED),
    (1.11, 0.95, 1.05, V.INCONCLUSIVE),
    (1.00, 0.97, 1.04, V.SUPPORTED),      # "no difference" claims: within the ±10% band
    (1.00, 1.20, 1.40, V.NOT_SUPPORTED),
    (1.00, 0.80, 0.85, V.NOT_SUPPORTED),
    (1.00, 0.95, 1.25, V.INCONCLUSIVE),
    (0.86, NAN, NAN, V.INCONCLUSIVE),     # one seed: no interval
])
def test_ratio_rule(expected, lo, hi, verdict):
    assert V.ratio_verdict(expected, lo, hi) == verdict


@pytest.mark.parametrize("expected,lo,hi,verdict", [
    (0.7521, 0.74, 0.76, V.SUPPORTED),
    (0.7521, 0.74, 0.75, V.NOT_SUPPORTED),   # just above the interval
    (0.7521, 0.76, 0.80, V.NOT_SUPPORTED),   # just below
    (0.7521, 0.7521, 0.7521, V.SUPPORTED),   # the bounds are inside
    (0.7521, NAN, NAN, V.INCONCLUSIVE),
])
def test_absolute_rule(expected, lo, hi, verdict):
    assert V.absolute_verdict(expected, lo, hi) == verdict


@pytest.mark.parametrize("num,den,verdict", [
    ((2.9, 3.1), (1.9, 2.1), V.SUPPORTED),
    ((1.9, 2.1), (2.9, 3.1), V.NOT_SUPPORTED),
    ((2.0, 3.0), (1.9, 2.1), V.INCONCLUSIVE),   # overlapping intervals
    ((2.9, 3.1), (3.1, 3.3), V.INCONCLUSIVE),   # touching: not wholly above
    ((2.9, NAN), (1.9, 2.1), V.INCONCLUSIVE),
])
def test_exponent_rule(num, den, verdict):
    assert V.exponent_verdict(num, den) == verdict


@pytest.mark.parametrize("want,lo,hi,verdict", [
    ("higher", 1.01, 1.2, V.SUPPORTED), ("higher", 0.8, 0.99, V.NOT_SUPPORTED), ("higher", 0.9, 1.1, V.INCONCLUSIVE),
    ("lower", 0.8, 0.9, V.SUPPORTED), ("lower", 1.1, 1.3, V.NOT_SUPPORTED), ("lower", 0.9, 1.1, V.INCONCLUSIVE),
    ("match", 0.985, 1.05, V.SUPPORTED), ("match", 0.90, 0.97, V.NOT_SUPPORTED),
    ("match", 0.95, 1.01, V.INCONCLUSIVE), ("match", NAN, NAN, V.INCONCLUSIVE), ("higher", NAN, NAN, V.INCONCLUSIVE),
])
def test_comparison_rule(want, lo, hi, verdict):
    assert V.comparison_verdict(want, lo, hi) == verdict


def test_comparison_rule_rejects_an_unknown_want():
    with pytest.raises(ValueError, match="unknown comparison 'better'"):
        V.comparison_verdict("better", 1.1, 1.2)


@pytest.mark.parametrize("verdicts,expected", [
    ([V.SUPPORTED, V.SUPPORTED], V.SUPPORTED),
    ([V.SUPPORTED, V.INCONCLUSIVE], V.INCONCLUSIVE),
    ([V.SUPPORTED, V.NOT_SUPPORTED, V.INCONCLUSIVE], V.NOT_SUPPORTED),
    ([V.SUPPORTED, V.NOT_MEASURED], V.INCONCLUSIVE),      # part of the claim is unmeasured
    ([V.NOT_SUPPORTED, V.NOT_MEASURED], V.NOT_SUPPORTED),
    ([V.NOT_MEASURED, V.NOT_MEASURED], V.NOT_MEASURED),
    ([], V.NOT_MEASURED),
])
def test_combine(verdicts, expected):
    assert V.combine(verdicts) == expected


def test_backends_must_agree():
    assert V.agree({"torch": V.SUPPORTED, "jax": V.SUPPORTED, "naive": V.NOT_MEASURED}) == (V.SUPPORTED, "")
    verdict, why = V.agree({"torch": V.SUPPORTED, "naive": V.NOT_SUPPORTED})
    assert verdict == V.INCONCLUSIVE and "torch supported" in why and "naive not supported" in why
    assert V.agree({"torch": V.NOT_MEASURED})[0] == V.NOT_MEASURED
