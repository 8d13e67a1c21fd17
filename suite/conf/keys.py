"""The run keys: every top-level key of a run's config, declared once (:data:`RUN_KEYS`) with its default, what a
config without it runs with, and its hash rule.

The lowest module of the suite's configuration: it imports nothing from the suite, so everything that knows a run key
reads it from here —

- ``config.yaml`` beside this file holds the same defaults for Hydra (``mlo-bench run``, ``verify``, the step
  benchmark compose it); ``tests/test_run_keys.py`` keeps the two equal;
- the plan (:func:`mlo_bench.suite.run.plan.prepare`) refuses a key not declared here and fills in, in a plain-dict
  config (a record's config, a test's, the isolated worker's), each key missing from it (:attr:`RunKey.absent`);
- the config hash (:func:`mlo_bench.suite.run.records.config_hash`) follows each key's :attr:`RunKey.hash` rule;
- ``mlo-bench verify`` takes the keys marked :attr:`RunKey.verify` (:mod:`mlo_bench.suite.certify.options`);
- the variants (:mod:`mlo_bench.suite.plugins.variants`) and the CLI's override check read :data:`TOP_LEVEL_KEYS`.

Where a run key's values are checked (ranges, types) stays with the plan: this module says what the keys are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: hash rules: the key enters the config hash …
HASHED = "hashed"  #: … always
UNHASHED = "unhashed"  #: … never: it changes no number a run produces
UNLESS_DEFAULT = "unless_default"  #: … only away from its default (or null): a key added after the first records
HASH_RULES = (HASHED, UNHASHED, UNLESS_DEFAULT)


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: :attr:`RunKey.absent`: a plain-dict config must give the key (the plan refuses one without it)
REQUIRED = _Marker("REQUIRED")
#: :attr:`RunKey.absent`: the key's :attr:`RunKey.default`
DEFAULT = _Marker("DEFAULT")
#: :attr:`RunKey.default` or :attr:`RunKey.absent`: no value: the config has no such key unless one is chosen
OMITTED = _Marker("OMITTED")


@dataclass(frozen=True)
class RunKey:
    """One top-level run key.

    - ``name``: the key (``seed``, ``threads``…).
    - ``default``: its value in ``config.yaml``, i.e. in every config Hydra composes; for ``task``, ``backend`` and
      ``method`` the name of the default option; :data:`OMITTED`: the composed config has no such key unless it is
      chosen (``variant``).
    - ``absent``: what a plain-dict config without the key runs with (the plan fills it in); :data:`REQUIRED`: such a
      config must give it; :data:`DEFAULT`: ``default``; :data:`OMITTED`: left out. It differs from ``default`` only
      where configs written before the key existed ran otherwise (``isolate``, ``resume``: in-process;
      ``threads``: every library at its own default).
    - ``hash``: one of :data:`HASH_RULES`. :data:`UNLESS_DEFAULT` keys at ``default`` or null are left out of the
      hash, so a record written before the key existed keeps its hash (and is found by ``resume``).
    - ``verify``: ``mlo-bench verify`` passes ``KEY=VALUE`` on to every run it makes.
    - ``doc``: one line on what it means.
    """

    name: str
    default: Any
    hash: str = HASHED
    absent: Any = REQUIRED
    verify: bool = False
    doc: str = ""

    def __post_init__(self) -> None:
        if self.hash not in HASH_RULES:
            raise ValueError(f"run key {self.name}: hash must be one of {', '.join(HASH_RULES)} (got {self.hash!r})")

    @property
    def absent_value(self) -> Any:
        """``absent`` with :data:`DEFAULT` resolved (a fresh copy: defaults that are lists and mappings are shared)."""
        value = self.default if self.absent is DEFAULT else self.absent
        return type(value)(value) if isinstance(value, list | dict) else value


NO_LIMITS = {"time_s": None, "memory_gb": None}
NO_BUDGET = {"max_d_materialised": None, "max_dense_gb": None}
#: ``precision``'s default (a config group: ``precision=bf16`` picks the option, ``precision.KNOB=V`` a knob; the
#: knobs are read by :class:`mlo_bench.suite.engine.precision.Precision`)
PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_PRECISION = {"name": "fp32", "hypergrad": "same", "init_scale": 4096.0, "growth_factor": 2.0,
                     "growth_interval": 2000}
#: one rank (``parallel.world_size``) and the collectives' timeout (``parallel.timeout_s``: a rank that hangs ends
#: the run as ``error`` after it; :mod:`mlo_bench.suite.run.ranks`)
ONE_RANK = {"world_size": 1, "timeout_s": 120}

#: every top-level run key, in the order messages list them
RUN_KEYS = (
    RunKey("task", "quadratic", verify=True, doc="the task (task=NAME; task.KNOB=V)"),
    RunKey("backend", "torch", verify=True, doc="the backend (backend=NAME; backend.KNOB=V)"),
    RunKey("method", "cg", verify=True, doc="the hypergradient method (method=NAME; method.KNOB=V)"),
    RunKey("seed", 0, verify=True, doc="drives data, splits, initialisation and batch order"),
    RunKey("steps", None, verify=True, doc="outer steps (null: the task's default_steps, else 100)"),
    RunKey("inner_steps", 1, verify=True, doc="inner steps per outer step; the unroll depth of method=unroll"),
    RunKey("dtype", "float32", verify=True, doc="float32 | float64"),
    RunKey("device", "auto", verify=True, doc="cpu | cuda | auto (cuda when available)"),
    RunKey("results_dir", "results", UNHASHED, doc="where records go"),
    RunKey("log_every", 0, UNHASHED, doc="outer steps between loss checks and progress lines (0: every 10%)"),
    RunKey("progress", True, UNHASHED, doc="progress bar / lines while a run trains"),
    RunKey("hypergrad_check", True, doc="measure hypergrad_rel_error against the task's oracle after training"),
    RunKey("isolate", True, UNHASHED, absent=False, doc="run in a worker process of its own"),
    RunKey("resume", True, UNHASHED, absent=False, doc="skip a config that already has a finished record"),
    RunKey("malloc_mmap_threshold", None, UNHASHED, absent=None,
           doc="bytes: pin glibc's mmap threshold, so RSS follows the bytes held alive (null: glibc's own)"),
    RunKey("memory_guard", True, UNHASHED, absent=True,
           doc="refuse (status oom) a run whose counted peak exceeds its device's free memory"),
    RunKey("limits", NO_LIMITS, absent=DEFAULT, doc="limits.time_s, limits.memory_gb of the worker (isolate=true)"),
    RunKey("budget", NO_BUDGET, UNHASHED, absent=DEFAULT, doc="sweep points too costly to run: recorded skipped"),
    RunKey("ordering", "inner_first", UNLESS_DEFAULT, absent=DEFAULT, doc="inner_first | lookahead"),
    RunKey("eval_every", 0, UNLESS_DEFAULT, absent=DEFAULT, doc="task metrics every N outer steps (0: at the end)"),
    RunKey("level_steps", {}, UNLESS_DEFAULT, absent=DEFAULT, doc="per lower level: level_steps.<level>=N"),
    RunKey("plugins", [], UNLESS_DEFAULT, absent=DEFAULT, verify=True, doc="third-party plugin modules to import"),
    RunKey("repeat", 0, UNLESS_DEFAULT, absent=DEFAULT, doc="> 0: a deliberate repeat of the same config"),
    RunKey("variant", OMITTED, UNHASHED, absent=OMITTED, doc="the variant a run was composed with (variant=NAME)"),
    RunKey("threads", 1, UNLESS_DEFAULT, absent=0, doc="intra-op / BLAS / XLA threads (0: each library's default)"),
    RunKey("precision", DEFAULT_PRECISION, UNLESS_DEFAULT, absent=DEFAULT, verify=True,
           doc="fp32 | bf16 | fp16 (precision.hypergrad=same|full; fp16's loss scale: precision.init_scale, ...)"),
    RunKey("floor", True, UNLESS_DEFAULT, absent=DEFAULT,
           doc="after training, time one hypergradient against one lower gradient (false: skip, e.g. at 110M)"),
    RunKey("fused", None, UNLESS_DEFAULT, absent=DEFAULT, doc="one compiled function per outer step (null: backend's)"),
    RunKey("parallel", ONE_RANK, UNLESS_DEFAULT, absent=DEFAULT, verify=True,
           doc="data parallel: parallel.world_size=N ranks, each level's batch split (parallel.timeout_s)"),
)
BY_NAME = {k.name: k for k in RUN_KEYS}
TOP_LEVEL_KEYS = tuple(BY_NAME)

#: the same rule as :data:`UNLESS_DEFAULT` for fields of nested config groups, at any depth (an optimizer's
#: ``eps_root``, cg's ``negative_curvature``: added after records were written with the same configs)
NESTED_UNLESS_DEFAULT = {"eps_root": 0.0, "negative_curvature": "continue", "sampler": "draw"}
#: nested fields that change no number a run produces, left out of the hash at any value (``parallel.timeout_s``)
NESTED_UNHASHED = ("timeout_s",)


def run_key(name: str) -> RunKey:
    """The declaration of run key ``name``; ``KeyError`` naming the valid keys otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown run key {name!r}; valid keys: {', '.join(TOP_LEVEL_KEYS)}") from None


def names(rule: str | None = None, verify: bool | None = None) -> tuple[str, ...]:
    """The keys with hash rule ``rule`` and/or this ``verify`` flag, in declaration order."""
    return tuple(k.name for k in RUN_KEYS
                 if (rule is None or k.hash == rule) and (verify is None or k.verify == verify))


def in_hash(name: str, value: Any) -> bool:
    """Whether top-level key ``name`` at ``value`` enters the config hash (an undeclared key always does)."""
    key = BY_NAME.get(name)
    if key is None or key.hash == HASHED:
        return True
    if key.hash == UNHASHED:
        return False
    return value is not None and _hashed_part(value) != _hashed_part(key.default)


def _hashed_part(value: Any) -> Any:
    """``value`` without the :data:`NESTED_UNHASHED` fields of a mapping (``parallel.timeout_s``)."""
    return {k: v for k, v in value.items() if k not in NESTED_UNHASHED} if isinstance(value, dict) else value
