"""Verdict names and the rules that turn 95% intervals into verdicts (pure functions: each verdict of each rule is
tested on its own, tests/test_verdicts.py)."""

from __future__ import annotations

import math

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_MEASURED = "supported", "not supported", "inconclusive", "not measured"
#: left uncompared by design (e.g. an absolute figure of the paper's hardware), never for lack of runs
NOT_COMPARED = "not compared"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_MEASURED, NOT_COMPARED)
TONE = {SUPPORTED: "good", NOT_SUPPORTED: "bad", INCONCLUSIVE: "warn", NOT_MEASURED: "muted", NOT_COMPARED: "muted"}

#: the paper's two figures within 2% of each other (ratio in [1/1.02, 1.02]) are read as "no difference"
SAME = 1.02
#: a "no difference" claim is supported when the whole interval lies within [1/1.1, 1.1]
EQUIVALENCE = 1.10


def _finite(*xs: float) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def ratio_verdict(expected: float, lo: float, hi: float) -> str:
    """A relative claim (the paper's ratio ``expected``) from the measured ratio's 95% interval [lo, hi]: on the
    paper's side of 1 → supported, wholly on the other side → not supported; a "no difference" claim (``expected``
    within [1/SAME, SAME]) is supported inside [1/EQUIVALENCE, EQUIVALENCE], not supported wholly outside it."""
    if not _finite(lo, hi):
        return INCONCLUSIVE
    if 1 / SAME <= expected <= SAME:
        if lo >= 1 / EQUIVALENCE and hi <= EQUIVALENCE:
            return SUPPORTED
        if hi < 1 / EQUIVALENCE or lo > EQUIVALENCE:
            return NOT_SUPPORTED
        return INCONCLUSIVE
    if expected > 1:
        return SUPPORTED if lo > 1 else NOT_SUPPORTED if hi < 1 else INCONCLUSIVE
    return SUPPORTED if hi < 1 else NOT_SUPPORTED if lo > 1 else INCONCLUSIVE


def absolute_verdict(expected: float, lo: float, hi: float) -> str:
    """An absolute figure against our mean's 95% interval: inside → supported, outside → not supported."""
    if not _finite(lo, hi):
        return INCONCLUSIVE
    return SUPPORTED if lo <= expected <= hi else NOT_SUPPORTED


def exponent_verdict(num: tuple[float, float], den: tuple[float, float]) -> str:
    """The claim: num's exponent exceeds den's. Each side is a (lo, hi) 95% interval."""
    if not _finite(*num, *den):
        return INCONCLUSIVE
    if num[0] > den[1]:
        return SUPPORTED
    if num[1] < den[0]:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def comparison_verdict(want: str, lo: float, hi: float, tolerance: float = 0.02) -> str:
    """One comparison of a paper table from the 95% interval [lo, hi] of the ratio num/den: ``higher`` / ``lower``
    (the whole interval on the claimed side of 1), ``match`` (the lower end at least 1 − ``tolerance``)."""
    if want == "higher":
        return ratio_verdict(2.0, lo, hi)
    if want == "lower":
        return ratio_verdict(0.5, lo, hi)
    if want == "match":
        if not _finite(lo, hi):
            return INCONCLUSIVE
        floor = 1 - tolerance
        return SUPPORTED if lo >= floor else NOT_SUPPORTED if hi < floor else INCONCLUSIVE
    raise ValueError(f"unknown comparison {want!r}; expected higher, lower or match")


def boundary(want: str, tolerance: float = 0.02) -> float:
    """The ratio a comparison's interval must clear (1, or 1 − tolerance for ``match``)."""
    return 1 - tolerance if want == "match" else 1.0


def combine(verdicts: list[str]) -> str:
    """Verdict of a claim made of several comparisons: not supported if one is; supported if all are; not measured
    if none was measured; else inconclusive (some undecided, or some not measured)."""
    if not verdicts or all(v == NOT_MEASURED for v in verdicts):
        return NOT_MEASURED
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED
    return SUPPORTED if all(v == SUPPORTED for v in verdicts) else INCONCLUSIVE


def agree(verdicts: dict[str, str]) -> tuple[str, str]:
    """One verdict from per-backend verdicts (backend → verdict) and a note: the common verdict of the measured
    backends, or inconclusive when they disagree."""
    measured = {b: v for b, v in verdicts.items() if v not in (NOT_MEASURED, NOT_COMPARED)}
    if not measured:
        return NOT_MEASURED, ""
    kinds = set(measured.values())
    if len(kinds) == 1:
        return kinds.pop(), ""
    return INCONCLUSIVE, "backends disagree: " + ", ".join(f"{b} {v}" for b, v in sorted(measured.items()))
