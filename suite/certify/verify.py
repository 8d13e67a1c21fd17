"""``mlo-bench verify``: the cross-backend agreement certificate.

Every installed backend × every method that the task and the backend support runs from the same seed, and is compared
with the reference backend (``--reference``, default torch) running the same method on

(a) the first hypergradient (the one outer step 1 used, from the same initial state on every backend; ``-`` for
    ``method=none``, which computes none), and
(b) every level's parameters after ``--steps`` outer steps (default 5) and, when the runner hands it back
    (``capture["method_state"]``, non-empty for methods with a state), each method's state after the last step:
    one column ``params @ N``, the worse of the two.

The difference of two pytrees (:func:`mlo_bench.suite.engine.compare.distance`, the suite's one rule; ``max_rel_diff``
is its value) is the largest, over leaves, of ``‖a − b‖ / ‖b‖``; a leaf whose reference is zero is measured against
the whole reference tree's norm instead (not against ``tiny``: roundoff of 1e-17 is not a 1e+290 disagreement). A
reference that is zero everywhere while the other is not is a *degenerate reference*: nothing to be relative to, so
the row says so and does not pass (start from another point). A column where both are zero everywhere tests nothing:
it shows ``zeros`` and a warning names it; a row none of whose columns tests anything does not pass either. A
comparison passes when both differences are within the tolerance (``--tol``; default 1e-6 in float64, 1e-3 in
float32). A backend may name a known defect of a method it runs (``known_issue``, e.g. a released library's bug): the
row still fails with its measured error, and a note gives the reason; it is left out of the exit status unless
``--strict`` (the closing line says which: a CI that installs Betty can gate on verify, and ``--strict`` shows when a
release fixes the bug; :func:`verdict`).

Where the task has an oracle, a second table gives each method's own error against it on every backend
(``hypergrad_rel_error`` at the oracle state, as in a run's record): how good the method is at its knobs, which the
cross-backend columns cannot say (backends that agree on a poor approximation still agree). It is not part of the
verdict; a method off the oracle by more than the tolerance gets a note.

Method knobs: ``method.KNOB=V`` applies to the one selected method that has ``KNOB``; when several do (``alpha`` is
neumann's step and darts' radius) it is a one-line error asking for ``method.NAME.KNOB=V``, which applies to method
``NAME`` only. Exit codes: 0 all comparisons pass (known library bugs aside, unless ``--strict``), 1 one fails, is
degenerate or tests nothing (or a run did not end ok), 2 bad input (one line on stderr, nothing run). Runs go through
the ordinary runner, set up as every run is (the task each plan validated, the backend's refusal asked once per plan:
:mod:`mlo_bench.suite.run.execute`); their records are written into a temporary directory that is removed
afterwards.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from typing import Any

from mlo_bench.suite.certify.agreement import Diff, compare, worse
from mlo_bench.suite.certify.agreement import fmt as _fmt
from mlo_bench.suite.certify.options import (  # noqa: F401 - re-exported: the command line's parsing
    DEFAULT_STEPS,
    DEFAULT_TOL,
    FLOOR_FACTOR,
    KEYS,
    USAGE,
    BadInput,
    Options,
    default_tol,
    knob_overrides,
    parse,
)
from mlo_bench.suite.engine.compare import max_rel_diff  # noqa: F401 - the rule's value, as tests compare trees
from mlo_bench.suite.engine.levels import task_refusal
from mlo_bench.suite.plugins import registry


def fp32_key(backend: str) -> str:
    """The key under which a low-precision verify keeps ``backend``'s fp32 run of a method."""
    return f"{backend}@fp32"


def _plans(opts: Options, backends: list[str], methods: list[str], results_dir: str,
           with_fp32: bool = False) -> dict[tuple[str, str], Any]:
    """A validated plan for every (backend, method) pair; with ``with_fp32`` (a low-precision verify) also every
    backend's run of each method in fp32, under (:func:`fp32_key`, method). Raises :class:`BadInput` on a bad
    value."""
    from mlo_bench.suite.run.compose import compose, first_line
    from mlo_bench.suite.run.plan import ConfigError, prepare

    knobs = knob_overrides(opts, methods)
    plans = {}
    runs = [(b, b, opts.overrides) for b in backends]
    if with_fp32:
        full = [o for o in opts.overrides if not o.startswith("precision")]
        runs += [(fp32_key(b), b, full) for b in backends]
    for method in methods:
        for key, backend, given in runs:
            overrides = [
                *given, f"backend={backend}", f"method={method}", *knobs[method], f"steps={opts.steps}",
                "progress=false", "hypergrad_check=false", "log_every=0", f"results_dir={results_dir}",
            ]
            try:
                plans[key, method] = prepare(compose(overrides))
            except ConfigError as exc:
                raise BadInput(str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - Hydra/OmegaConf composition errors
                raise BadInput(first_line(exc)) from None
    return plans


def _columns(capture: dict[str, Any], ref: dict[str, Any]) -> tuple[Diff, Diff]:
    """(first hypergradient, params @ N) of one run against the reference run; the second column folds in the
    methods' state after the last step when either run captured a non-empty one."""
    if capture["first_hypergrad"] is None and ref["first_hypergrad"] is None:  # method=none: no hypergradient
        hg = Diff(absent=True)
    else:
        hg = compare(capture["first_hypergrad"], ref["first_hypergrad"])
    pr = compare(capture["params"], ref["params"])
    if capture.get("method_state") or ref.get("method_state"):
        pr = worse(pr, compare(capture.get("method_state") or {}, ref.get("method_state") or {}))
    return hg, pr


def run(opts: Options, out: Any = None) -> int:
    """Run the comparisons and print the table. Returns the exit code (0 pass, 1 fail); raises BadInput."""
    from mlo_bench.suite.run.execute import admission, execute

    out = out or sys.stdout
    reference = opts.reference
    why = registry.availability("backend", reference)
    if why:
        raise BadInput(f"reference backend {reference} is not available here ({why})")
    wanted = opts.backends or registry.names("backend")
    notes: list[str] = []
    backends = [reference]
    for name in wanted:
        if name == reference:
            continue
        why = registry.availability("backend", name)
        if why:
            notes.append(f"{name} skipped: {why}")
        else:
            backends.append(name)
    methods = opts.methods or registry.names("method")

    from mlo_bench.suite.run.isolate import clean_stale_tmp

    clean_stale_tmp()  # temp dirs of a verify or a sweep killed by SIGKILL
    with tempfile.TemporaryDirectory(prefix=f"mlo-bench-verify-{os.getpid()}-") as tmp:
        low = any(o.startswith("precision=") and o.split("=", 1)[1] != "fp32" for o in opts.overrides)
        floors = low and opts.tol is None  # the precision's own error widens each row's tolerance (see USAGE)
        plans = _plans(opts, backends, methods, tmp, floors)
        if floors:
            notes.append(f"note: low precision: a column passes within max({default_tol('float32', 'bf16'):g} | "
                         f"{default_tol('float32', 'fp16'):g} for bf16 | fp16, {FLOOR_FACTOR} x (the reference's own "
                         "error + this backend's own error), each against its fp32 run: the 'vs fp32' rows)")
        first = plans[reference, methods[0]]
        task = first.task if first.task is not None else first.task_cls(first.task_cfg, first.seed)
        has_oracle = task.oracle() is not None
        for plan in plans.values():  # the oracle table reads each run's own hypergrad_rel_error
            plan.hypergrad_check = plan.config["hypergrad_check"] = has_oracle
        pairs: list[tuple[str, str]] = []
        skipped: dict[tuple[str, str], list[str]] = {}  # (backend, reason) -> methods
        for method in methods:
            why = task.supports(method) or task_refusal(plans[reference, method], task)
            if why:
                notes.append(f"method {method} skipped: task {task.name} does not support it ({why})")
                continue
            why = admission(plans[reference, method]).refused  # asked once: the run does not ask again
            if why:
                notes.append(f"method {method} skipped: the reference {reference} does not support it ({why})")
                continue
            others = []
            for backend in backends[1:]:
                why = admission(plans[backend, method]).refused
                if why:
                    skipped.setdefault((backend, why), []).append(method)
                else:
                    others.append((backend, method))
            if others:
                pairs += [(reference, method), *others]
        notes += [f"{b} skipped {', '.join(ms)}: {why}" for (b, why), ms in skipped.items()]
        if not any(b != reference for b, _ in pairs):
            raise BadInput(
                f"nothing to compare with {reference}: " + ("; ".join(notes) or "no other backend selected")
            )
        precision = first.precision.name if first.precision is not None else "fp32"
        tol = opts.tol if opts.tol is not None else default_tol(first.dtype, precision)
        print(
            f"verify {task.name} ({first.dtype}{_precision_note(precision)}, seed {first.seed}, {opts.steps} outer "
            f"steps) against {reference}; "
            f"tolerance {tol:g} on max over leaves of ||a-b||/||b||",
            file=out,
        )
        knobs = knob_overrides(opts, methods)
        if any(knobs.values()):
            print("knobs: " + "; ".join(f"{m}: {', '.join(k)}" for m, k in knobs.items() if k), file=out)
        header = f"{'backend':<10} {'method':<12} {'first hypergrad':>16} {f'params @ {opts.steps}':>16}  result"
        print(header, file=out)
        print("-" * len(header), file=out)
        refs: dict[str, dict[str, Any]] = {}
        floor: dict[tuple[str, str], tuple[Diff, Diff]] = {}  # low precision: a run's own error against fp32
        oracle: dict[tuple[str, str], float | None] = {}
        warnings: list[str] = []
        failures = comparisons = inconclusive = 0
        known: list[str] = []  # rows failing by a backend's known library bug
        for backend, method in pairs:
            capture: dict[str, Any] = {}
            record = execute(plans[backend, method], capture)
            ok = record["status"] == "ok"
            oracle[backend, method] = record["metrics"].get("hypergrad_rel_error") if ok else None
            if backend == reference:
                refs[method] = capture if ok else {"status": record["status"], "reason": record["reason"]}
                result = "reference" if ok else f"FAIL: reference {record['status']}: {record['reason']}"
                failures += not ok
                print(f"{backend:<10} {method:<12} {'-':>16} {'-':>16}  {result}", file=out)
                if floors and ok:
                    floor[backend, method] = _own_error(plans[fp32_key(backend), method], capture, backend, method,
                                                        precision, out)
                continue
            comparisons += 1
            ref = refs[method]
            hg = pr = None
            if not ok:
                result = f"FAIL: {record['status']}: {record['reason']}"
            elif "status" in ref:
                result = f"FAIL: no reference ({ref['status']})"
            else:
                hg, pr = _columns(capture, ref)
                for name, d in (("first hypergrad", hg), (f"params @ {opts.steps}", pr)):
                    if d.vacuous:
                        warnings.append(f"warning: {backend} {method}: {name} compares zeros with zeros "
                                        "(both zero everywhere): it tests nothing")
                if hg.degenerate or pr.degenerate:
                    result = "degenerate reference"
                    warnings.append(f"warning: {backend} {method}: the reference ({reference}) is zero everywhere "
                                    "where this run is not: nothing to be relative to; start from another point "
                                    "(seed, task knobs)")
                elif hg.vacuous and pr.vacuous:
                    result = "tests nothing"
                else:
                    if floors:
                        floor[backend, method] = _own_error(plans[fp32_key(backend), method], capture, backend,
                                                            method, precision, out)
                    hg_tol, pr_tol = (_widened(tol, a, b) for a, b in zip(
                        floor.get((reference, method), (None, None)), floor.get((backend, method), (None, None)),
                        strict=True))
                    result = "pass" if hg.within(hg_tol) and pr.within(pr_tol) else "FAIL"
            issue = registry.get("backend", backend)().known_issue(method)
            if issue and result == "FAIL":  # a known defect of a released library: shown, never hidden
                result = "FAIL (known library bug, see note)"
                notes.append(f"{backend} {method} fails as expected: {issue}")
                known.append(f"{backend} {method}")
            else:
                failures += result not in ("pass", "degenerate reference", "tests nothing")
            inconclusive += result in ("degenerate reference", "tests nothing")
            cells = [d.text() if d is not None else "-" for d in (hg, pr)]
            print(f"{backend:<10} {method:<12} {cells[0]:>16} {cells[1]:>16}  {result}", file=out)
        if has_oracle:
            _oracle_table(oracle, backends, [m for m in methods if (reference, m) in oracle], tol, out)
    for note in notes + warnings:
        print(note, file=out)
    code, line = verdict(failures, known, inconclusive, comparisons, tol, opts.strict)
    print(line, file=out)
    return code


def verdict(failures: int, known: list[str], inconclusive: int, comparisons: int, tol: float,
            strict: bool = False) -> tuple[int, str]:
    """The exit status and closing line: 1 when a comparison (or reference run) failed or was inconclusive, else 0.
    ``known`` (the rows failing by a backend's known library bug, ``backend method``) are shown in the line either
    way and counted as failures only when ``strict`` (``--strict``)."""
    counted = failures + (len(known) if strict else 0)
    if known:
        how = "counted (--strict)" if strict else "not counted (--strict counts them)"
        bugs = f"{len(known)} known library bug(s) ({', '.join(known)}) {how}"
    if counted or inconclusive:
        parts = [f"{counted} of {comparisons} comparisons (or reference runs) not within {tol:g}"] if counted else []
        if inconclusive:
            parts.append(f"{inconclusive} inconclusive (degenerate reference or nothing tested)")
        if known:
            parts.append(bugs)
        return 1, "FAILED: " + "; ".join(parts)
    if known:
        return 0, f"ok: {comparisons - len(known)} of {comparisons} comparisons within {tol:g}; {bugs}"
    return 0, f"ok: all {comparisons} comparisons within {tol:g}"


def _own_error(plan: Any, low: dict[str, Any], backend: str, method: str, precision: str,
               out: Any) -> tuple[Diff, Diff]:
    """A backend's low-precision run against its fp32 run of the same config — (first hypergradient, params @ N):
    the precision's own error on that backend — printed as a "vs fp32" row."""
    from mlo_bench.suite.run.execute import execute

    capture: dict[str, Any] = {}
    record = execute(plan, capture)
    own = (Diff(absent=True), Diff(absent=True)) if record["status"] != "ok" else _columns(low, capture)
    cells = [d.text() for d in own]
    print(f"{'  vs fp32':<10} {method:<12} {cells[0]:>16} {cells[1]:>16}  {backend}'s own {precision} error", file=out)
    return own


def _widened(tol: float, ref: Diff | None, other: Diff | None) -> float:
    """A column's tolerance: ``tol``, or FLOOR_FACTOR × (the reference's + this backend's own low-precision error)
    where that is larger: ‖a − b‖ ≤ ‖a − a₃₂‖ + ‖a₃₂ − b₃₂‖ + ‖b₃₂ − b‖, so two backends rounding differently
    cannot be asked to agree better than their own errors allow."""
    errors = [d.value for d in (ref, other) if d is not None and not d.absent and d.value is not None]
    if len(errors) < 2 or not all(math.isfinite(e) for e in errors):
        return tol
    return max(tol, FLOOR_FACTOR * sum(errors))


def _precision_note(precision: str) -> str:
    return "" if precision == "fp32" else f", precision {precision}"


def _oracle_table(errors: dict[tuple[str, str], float | None], backends: list[str], methods: list[str], tol: float,
                  out: Any) -> None:
    """Each method's ``hypergrad_rel_error`` against the task's oracle, one row per method, one column per backend;
    a note for every method off the oracle by more than ``tol`` on the reference backend."""
    print("\nagainst the task's oracle: hypergrad_rel_error at the oracle state (each method's own error at its "
          "knobs; not part of the verdict)", file=out)
    print(f"{'method':<12} " + " ".join(f"{b:>12}" for b in backends), file=out)
    for method in methods:
        cells = [_fmt(errors.get((b, method))) if (b, method) in errors else "-" for b in backends]
        print(f"{method:<12} " + " ".join(f"{c:>12}" for c in cells), file=out)
    off = [f"{m} {_fmt(errors[backends[0], m])}" for m in methods
           if errors.get((backends[0], m)) is not None and not errors[backends[0], m] <= tol]
    if off:
        print(f"note: off the oracle by more than {tol:g} on {backends[0]}: {', '.join(off)} — each method's "
              "approximation at its knobs (the cross-backend columns compare backends, not accuracy)", file=out)


def main(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    registry.discover()
    from mlo_bench.suite.run.compose import plugin_args

    failed = registry.load_plugins(plugin_args(args))
    if failed:
        print(f"mlo-bench verify: error: plugins: {failed[0]}", file=sys.stderr)
        return 2
    try:
        return run(parse(args))
    except BadInput as exc:
        print(f"mlo-bench verify: error: {exc}", file=sys.stderr)
        return 2
