"""``mlo-bench verify``'s command line: its keys, flags and method knobs, parsed into :class:`Options`, every bad
value one line (:class:`BadInput`, exit 2). The certificate itself is :mod:`mlo_bench.suite.certify.verify`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from mlo_bench.suite.conf import keys
from mlo_bench.suite.plugins import registry

DEFAULT_TOL = {"float32": 1e-3, "float64": 1e-6}
#: in a low precision (``precision=bf16|fp16``) the default tolerance is TOL_PER_ROUNDOFF × the compute precision's
#: unit roundoff u (bf16: u = 2⁻⁸, 16·u = 0.0625; fp16: u = 2⁻¹¹, 16·u = 0.0078), never below the dtype's: two
#: backends round differently (torch's autocast keeps softmax and reductions in float32, jmp casts the whole loss) and
#: the differences of O(u) per step add up over verify's outer steps
TOL_PER_ROUNDOFF = 16
#: … and a column passes within FLOOR_FACTOR × (the reference's + the compared backend's own low-precision error,
#: each its run against its fp32 run of the same config) where that is larger: backends cannot agree better than the
#: precision itself computes on each (a finite difference of two bf16 gradients, darts, is off by O(1) on every one)
FLOOR_FACTOR = 2


def default_tol(dtype: str, precision: str = "fp32") -> float:
    """verify's tolerance without ``--tol``: the dtype's, or in a low precision TOL_PER_ROUNDOFF × its unit
    roundoff (whichever is larger)."""
    from mlo_bench.suite.engine.precision import UNIT_ROUNDOFF

    if precision == "fp32":
        return DEFAULT_TOL[dtype]
    return max(DEFAULT_TOL[dtype], TOL_PER_ROUNDOFF * UNIT_ROUNDOFF[precision])
#: verify's own default for ``steps`` (the run key's default, 100 outer steps, is a training run's, not a check's)
DEFAULT_STEPS = 5
#: config keys verify passes on to every run (``task.*`` and ``method.*`` knobs included): the run keys declared with
#: ``verify=True`` (:mod:`mlo_bench.suite.conf.keys`); every other key is at its ``config.yaml`` default (verify
#: composes its runs as ``mlo-bench run`` does), except ``progress``, ``hypergrad_check``, ``log_every`` and
#: ``results_dir``, which verify sets itself
KEYS = keys.names(verify=True)

USAGE = """usage: mlo-bench verify [KEY=VALUE ...] [--tol FLOAT] [--reference BACKEND] [--steps N] [--strict]

Cross-backend agreement: every installed backend x every method the task and backend support, from the same seed,
compared with the reference backend running the same method on the first hypergradient and on all parameters after
N outer steps (max over leaves of ||a-b|| / ||b||).

  KEY=VALUE           task=NAME, task.KEY=V, dtype=, seed=, inner_steps=, device=, steps=N (same as --steps),
                      method=A,B (restrict), method.NAME.KEY=V (a knob of method NAME), method.KEY=V (the one
                      selected method with KEY; an error when several have it), backend=A,B (restrict; the
                      reference always runs), plugins=[MODULE,...] (third-party plugins to import),
                      parallel.world_size=N (every run data parallel over N ranks: docs/parallel.md), parallel=...
  --tol FLOAT         tolerance (default 1e-6 for float64, 1e-3 for float32; precision=bf16|fp16: 16 x its unit
                      roundoff, 0.0625 | 0.0078, or per column 2 x the sum of the two backends' own errors
                      against their fp32 runs where that is larger; --tol fixes it)
  --reference NAME    the backend compared against (default torch)
  --steps N           outer steps before the parameters are compared (default 5)
  --strict            count the rows that fail by a known library bug (a backend's known_issue, e.g. Betty 0.2.1's
                      cg) in the exit status; by default they are shown, FAIL, and left out of it

Where the task has an oracle, a second table gives each method's error against it (not part of the verdict).

exit codes: 0 every comparison within the tolerance (but those failing by a known library bug, unless --strict),
1 a comparison failed, had a degenerate (all-zero) reference or tested nothing, or a run did not end ok; 2 bad input."""


class BadInput(ValueError):
    """One line naming what is wrong with verify's arguments."""


@dataclass
class Options:
    overrides: list[str] = field(default_factory=list)
    method_overrides: list[tuple[str, str]] = field(default_factory=list)
    #: ``method.NAME.KEY=V``: {NAME: [(KEY, V), ...]}
    per_method: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    backends: list[str] | None = None
    methods: list[str] | None = None
    tol: float | None = None
    reference: str = "torch"
    steps: int = DEFAULT_STEPS
    #: count the rows that fail by a backend's known library bug in the exit status (``--strict``)
    strict: bool = False


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
    from mlo_bench.suite.run.compose import check_overrides, duplicate_problem

    problem = duplicate_problem([a for a in args if not a.startswith("-")])
    if problem:
        raise BadInput(problem)
    opts = Options()
    steps_flag = steps_key = None
    args = list(args)
    while args:
        arg = args.pop(0)
        if arg == "--strict":
            opts.strict = True
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name not in ("--tol", "--reference", "--steps"):
                raise BadInput(f"unknown option {name!r}; options: --tol FLOAT, --reference BACKEND, --steps N, "
                               "--strict")
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
            rest = key.split(".", 1)[1]
            head, dot, knob = rest.partition(".")
            if dot and head in registry.names("method"):
                opts.per_method.setdefault(head, []).append((knob, value))
            else:
                opts.method_overrides.append((rest, value))
        elif root == "backend":
            raise BadInput(f"verify does not take {key!r}: backends have no knobs")
        else:
            opts.overrides.append(arg)
    if steps_flag is not None and steps_key is not None and steps_flag != steps_key:
        raise BadInput(f"steps={steps_key} and --steps {steps_flag} disagree; give one")
    opts.steps = steps_flag or steps_key or DEFAULT_STEPS
    problem = check_overrides(opts.overrides)  # task=, task.*, variant= … as mlo-bench run says them
    if problem:
        raise BadInput(problem)
    return opts


def _method_knobs(method: str) -> set[str]:
    cfg = getattr(registry.get("method", method), "Config", None)
    return {f.name for f in dataclasses.fields(cfg)} if cfg else set()


def knob_overrides(opts: Options, methods: list[str]) -> dict[str, list[str]]:
    """``{method: ["method.KEY=V", ...]}`` from ``method.KEY=V`` (the one selected method with KEY) and
    ``method.NAME.KEY=V``. Raises :class:`BadInput` when a plain knob belongs to several selected methods (their
    knobs of one name are different things: neumann's step α, darts' radius α), to none, or names a method not
    selected."""
    out: dict[str, list[str]] = {m: [] for m in methods}
    for key, value in opts.method_overrides:
        owners = [m for m in methods if key.split(".")[0] in _method_knobs(m)]
        if not owners:
            raise BadInput(f"method.{key} is not a knob of any selected method ({', '.join(methods)})")
        if len(owners) > 1:
            raise BadInput(f"method.{key} is a knob of {' and '.join(owners)}, which mean different things by it; "
                           "give it per method: " + ", ".join(f"method.{m}.{key}={value}" for m in owners))
        out[owners[0]].append(f"method.{key}={value}")
    for method, pairs in opts.per_method.items():
        if method not in methods:
            raise BadInput(f"method.{method}.{pairs[0][0]}: {method} is not among the selected methods "
                           f"({', '.join(methods)})")
        for key, value in pairs:
            if key.split(".")[0] not in _method_knobs(method):
                knobs = ", ".join(sorted(_method_knobs(method))) or "none"
                raise BadInput(f"method.{method}.{key}: {key!r} is not a knob of {method} (its knobs: {knobs})")
            out[method].append(f"method.{key}={value}")
    return out
