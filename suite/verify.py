"""``mlo-bench verify``: the cross-backend agreement certificate.

Every installed backend × every method that the task and the backend support runs from the same seed, and is compared
with the reference backend (``--reference``, default torch) running the same method on

(a) the first hypergradient (the one outer step 1 used, from the same initial state on every backend; none for
    ``method=none``), and
(b) every level's parameters after ``--steps`` outer steps (default 5).

The difference of two pytrees is the largest, over leaves, of ``‖a − b‖ / max(‖b‖, tiny)``. A comparison passes when
both differences are within the tolerance (``--tol``; default 1e-6 in float64, 1e-3 in float32). Exit codes: 0 all
comparisons pass, 1 one fails (or a run did not end ok), 2 bad input (one line on stderr, nothing run). Runs go
through the ordinary runner; their records are written into a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlo_bench.suite import registry
from mlo_bench.suite.trees import tree_leaves

DEFAULT_TOL = {"float32": 1e-3, "float64": 1e-6}
DEFAULT_STEPS = 5
#: config keys verify passes on to every run (``task.*`` and ``method.*`` knobs included)
KEYS = ("task", "method", "backend", "seed", "steps", "inner_steps", "dtype", "device")

USAGE = """usage: mlo-bench verify [KEY=VALUE ...] [--tol FLOAT] [--reference BACKEND] [--steps N]

Cross-backend agreement: every installed backend x every method the task and backend support, from the same seed,
compared with the reference backend running the same method on the first hypergradient and on all parameters after
N outer steps (max over leaves of ||a-b|| / ||b||).

  KEY=VALUE           task=NAME, task.KEY=V, dtype=, seed=, inner_steps=, device=, steps=N (same as --steps),
                      method=A,B (restrict; method.KEY=V applies to the methods that have KEY),
                      backend=A,B (restrict; the reference always runs)
  --tol FLOAT         tolerance (default 1e-6 for float64, 1e-3 for float32)
  --reference NAME    the backend compared against (default torch)
  --steps N           outer steps before the parameters are compared (default 5)

exit codes: 0 every comparison within the tolerance, 1 a comparison failed or a run did not end ok, 2 bad input."""


class BadInput(ValueError):
    """One line naming what is wrong with verify's arguments."""


@dataclass
class Options:
    overrides: list[str] = field(default_factory=list)
    method_overrides: list[tuple[str, str]] = field(default_factory=list)
    backends: list[str] | None = None
    methods: list[str] | None = None
    tol: float | None = None
    reference: str = "torch"
    steps: int = DEFAULT_STEPS


def _names(role: str, value: str) -> list[str]:
    names = [n for n in value.split(",") if n]
    if not names:
        raise BadInput(f"{role}= needs at least one name")
    for name in names:
        if name not in registry.names(role):
            raise BadInput(registry.unknown_name_message(role, name))
    return names


def _steps(value: str, where: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise BadInput(f"{where} must be an integer (got {value!r})") from None
    if n < 1:
        raise BadInput(f"{where} must be >= 1 (got {n})")
    return n


def parse(args: list[str]) -> Options:
    """Parse verify's arguments. Raises :class:`BadInput`."""
    opts = Options()
    steps_flag = steps_key = None
    args = list(args)
    while args:
        arg = args.pop(0)
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name not in ("--tol", "--reference", "--steps"):
                raise BadInput(f"unknown option {name!r}; options: --tol FLOAT, --reference BACKEND, --steps N")
            if not eq:
                if not args:
                    raise BadInput(f"{name} needs a value")
                value = args.pop(0)
            if name == "--tol":
                try:
                    opts.tol = float(value)
                except ValueError:
                    raise BadInput(f"--tol must be a number (got {value!r})") from None
                if not (opts.tol >= 0 and math.isfinite(opts.tol)):
                    raise BadInput(f"--tol must be a finite number >= 0 (got {value!r})")
            elif name == "--reference":
                names = _names("backend", value)
                if len(names) != 1:
                    raise BadInput(f"--reference takes one backend (got {value!r})")
                opts.reference = names[0]
            else:
                steps_flag = _steps(value, "--steps")
            continue
        if arg.startswith("-") or "=" not in arg:
            raise BadInput(f"unexpected argument {arg!r}; expected KEY=VALUE or an option (see mlo-bench verify -h)")
        key, value = arg.split("=", 1)
        root = key.split(".", 1)[0]
        if root not in KEYS or key.startswith(("+", "~")):
            raise BadInput(f"verify does not take {key!r}; keys: {', '.join(KEYS)} (and task.*, method.*)")
        if key == "backend":
            opts.backends = _names("backend", value)
        elif key == "method":
            opts.methods = _names("method", value)
        elif key == "steps":
            steps_key = _steps(value, "steps")
        elif root == "method":
            opts.method_overrides.append((key.split(".", 1)[1], value))
        elif root == "backend":
            raise BadInput(f"verify does not take {key!r}: backends have no knobs")
        else:
            opts.overrides.append(arg)
    if steps_flag is not None and steps_key is not None and steps_flag != steps_key:
        raise BadInput(f"steps={steps_key} and --steps {steps_flag} disagree; give one")
    opts.steps = steps_flag or steps_key or DEFAULT_STEPS
    return opts


def max_rel_diff(a: Any, b: Any) -> float:
    """Max over leaves of ‖a − b‖ / max(‖b‖, tiny) (float64); NaN when the trees' shapes differ."""
    la, lb = tree_leaves(a), tree_leaves(b)
    if len(la) != len(lb):
        return float("nan")
    worst = 0.0
    tiny = np.finfo(np.float64).tiny
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape != y.shape:
            return float("nan")
        diff = float(np.linalg.norm(x - y) / max(float(np.linalg.norm(y)), tiny))
        if not math.isfinite(diff):
            return float("nan")
        worst = max(worst, diff)
    return worst


def _method_knobs(method: str) -> set[str]:
    cfg = getattr(registry.get("method", method), "Config", None)
    return {f.name for f in dataclasses.fields(cfg)} if cfg else set()


def _plans(opts: Options, backends: list[str], methods: list[str], results_dir: str) -> dict[tuple[str, str], Any]:
    """A validated plan for every (backend, method) pair. Raises :class:`BadInput` on a bad value."""
    from mlo_bench.suite.cli import _compose, _first_line
    from mlo_bench.suite.plan import ConfigError, prepare

    for key, _ in opts.method_overrides:
        if not any(key.split(".")[0] in _method_knobs(m) for m in methods):
            raise BadInput(f"method.{key} is not a knob of any selected method ({', '.join(methods)})")
    plans = {}
    for method in methods:
        knobs = _method_knobs(method)
        extra = [f"method.{k}={v}" for k, v in opts.method_overrides if k.split(".")[0] in knobs]
        for backend in backends:
            overrides = [
                *opts.overrides, f"backend={backend}", f"method={method}", *extra, f"steps={opts.steps}",
                "progress=false", "hypergrad_check=false", "log_every=0", f"results_dir={results_dir}",
            ]
            try:
                plans[backend, method] = prepare(_compose(overrides))
            except ConfigError as exc:
                raise BadInput(str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - Hydra/OmegaConf composition errors
                raise BadInput(_first_line(exc)) from None
    return plans


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return "nan" if not math.isfinite(x) else f"{x:.2e}"


def run(opts: Options, out: Any = None) -> int:
    """Run the comparisons and print the table. Returns the exit code (0 pass, 1 fail); raises BadInput."""
    from mlo_bench.suite.runner import execute

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

    with tempfile.TemporaryDirectory(prefix="mlo-bench-verify-") as tmp:
        plans = _plans(opts, backends, methods, tmp)
        first = plans[reference, methods[0]]
        task = first.task_cls(first.task_cfg, first.seed)
        pairs: list[tuple[str, str]] = []
        skipped: dict[tuple[str, str], list[str]] = {}  # (backend, reason) -> methods
        for method in methods:
            why = task.supports(method)
            if why:
                notes.append(f"method {method} skipped: task {task.name} does not support it ({why})")
                continue
            why = registry.get("backend", reference)().supports(method)
            if why:
                notes.append(f"method {method} skipped: the reference {reference} does not support it ({why})")
                continue
            others = []
            for backend in backends[1:]:
                why = registry.get("backend", backend)().supports(method)
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
        tol = opts.tol if opts.tol is not None else DEFAULT_TOL[first.dtype]
        print(
            f"verify {task.name} ({first.dtype}, seed {first.seed}, {opts.steps} outer steps) against {reference}; "
            f"tolerance {tol:g} on max over leaves of ||a-b||/||b||",
            file=out,
        )
        header = f"{'backend':<10} {'method':<12} {'first hypergrad':>16} {f'params @ {opts.steps}':>16}  result"
        print(header, file=out)
        print("-" * len(header), file=out)
        refs: dict[str, dict[str, Any]] = {}
        failures = comparisons = 0
        for backend, method in pairs:
            capture: dict[str, Any] = {}
            record = execute(plans[backend, method], capture)
            ok = record["status"] == "ok"
            if backend == reference:
                refs[method] = capture if ok else {"status": record["status"], "reason": record["reason"]}
                result = "reference" if ok else f"FAIL: reference {record['status']}: {record['reason']}"
                failures += not ok
                print(f"{backend:<10} {method:<12} {'-':>16} {'-':>16}  {result}", file=out)
                continue
            comparisons += 1
            ref = refs[method]
            hg = pr = None
            if not ok:
                result = f"FAIL: {record['status']}: {record['reason']}"
            elif "status" in ref:
                result = f"FAIL: no reference ({ref['status']})"
            else:
                no_hypergradient = capture["first_hypergrad"] is None and ref["first_hypergrad"] is None  # none
                hg = None if no_hypergradient else max_rel_diff(capture["first_hypergrad"], ref["first_hypergrad"])
                pr = max_rel_diff(capture["params"], ref["params"])
                result = "pass" if (hg is None or hg <= tol) and pr <= tol else "FAIL"
            failures += result != "pass"
            print(f"{backend:<10} {method:<12} {_fmt(hg):>16} {_fmt(pr):>16}  {result}", file=out)
    for note in notes:
        print(note, file=out)
    if failures:
        print(f"FAILED: {failures} of {comparisons} comparisons (or reference runs) not within {tol:g}", file=out)
        return 1
    print(f"ok: all {comparisons} comparisons within {tol:g}", file=out)
    return 0


def main(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    registry.discover()
    try:
        return run(parse(args))
    except BadInput as exc:
        print(f"mlo-bench verify: error: {exc}", file=sys.stderr)
        return 2
