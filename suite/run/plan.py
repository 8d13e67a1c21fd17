"""Turn a composed config into a validated run plan, before any work is done.

Every bad value is reported as one line naming the key (``ConfigError``); the CLI exits with code 2 on it. The task
built to check its levels stays on the plan (``Plan.task``) for the run: :func:`take_task` hands it to the run, so a
run builds its task once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlo_bench.suite.conf.keys import OMITTED, REQUIRED, RUN_KEYS, TOP_LEVEL_KEYS
from mlo_bench.suite.measure import host_malloc, threads
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run import budgets as budget

ROLES = ("task", "backend", "method")
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda", "auto")
ORDERINGS = ("inner_first", "lookahead")


class ConfigError(ValueError):
    """A config value that cannot be run; the message is one line naming the key."""


@dataclass
class Plan:
    """A validated run: the plugins' classes and configs, and every run key's value (``config``: the whole resolved
    config, as recorded and hashed). Built by :func:`prepare` only, which gives every field: the keys' defaults are
    declared once, in :mod:`mlo_bench.suite.conf.keys`."""

    task_cls: type
    task_cfg: Any
    backend_cls: type
    backend_cfg: Any
    method: Any
    method_cfg: Any
    seed: int
    steps: int
    inner_steps: int
    dtype: str
    device: str
    results_dir: str
    log_every: int
    progress: bool
    hypergrad_check: bool
    isolate: bool
    resume: bool
    config: dict[str, Any]
    ordering: str
    eval_every: int
    level_steps: dict[str, int]
    threads: int
    fused: bool | None
    #: time the hypergradient against one lower gradient after training (suite/measure/floor.py)
    floor: bool = True
    #: the ``precision`` key parsed (:class:`mlo_bench.suite.engine.precision.Precision`; fp32 unless chosen)
    precision: Any = None
    #: the task :func:`prepare` built to check its levels, until a run takes it (:func:`take_task`); not config
    task: Any = field(default=None, repr=False, compare=False)
    #: whether the backend can run the method here, asked once (``mlo_bench.suite.run.execute.admission``)
    admission: Any = field(default=None, repr=False, compare=False)
    #: ``parallel.world_size``: data-parallel ranks (1: one process, one device); ``parallel.timeout_s``
    world_size: int = 1
    parallel_timeout_s: float = 120.0
    #: refuse a run whose counted peak exceeds the free memory (suite/measure/headroom.py)
    memory_guard: bool = True


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def prepare(cfg: DictConfig | dict) -> Plan:
    """Validate ``cfg`` (names, ranges, types) and build the plan. Raises :class:`ConfigError`."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    unknown = sorted(set(config) - set(TOP_LEVEL_KEYS))
    _check(not unknown, f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(TOP_LEVEL_KEYS)}")
    # a plain-dict config (a record's, a test's) without a key runs as the key's declaration says (conf/keys.py:
    # RunKey.absent): keys added after the first records at the value those ran with; the rest it must give
    for key in RUN_KEYS:
        if key.name not in config and key.absent not in (REQUIRED, OMITTED):
            config[key.name] = key.absent_value
    missing = [k.name for k in RUN_KEYS if k.absent is REQUIRED and k.name not in config and k.name not in ROLES]
    _check(not missing, f"config key(s) {', '.join(missing)} missing (a config without them cannot be run)")
    # third-party plugin modules named by the config: imported before any name is looked up (again in a worker)
    config["plugins"] = registry.parse_modules(config["plugins"])
    failed = registry.load_plugins(config["plugins"])
    _check(not failed, f"plugins: {failed[0] if failed else ''}")
    classes, plugin_cfgs = {}, {}
    for role in ROLES:
        node = cfg.get(role)
        _check(node is not None and "name" in node, f"no {role} given; choose one with {role}=NAME")
        name = node["name"]
        try:
            classes[role] = registry.get(role, name)
            plugin_cfgs[role] = registry.make_config(role, name, node)
        except KeyError as exc:
            raise ConfigError(exc.args[0]) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc).splitlines()[0]) from None
    if config.get("steps") is None:  # null: the task's own default (Task.default_steps), recorded as a number
        config["steps"] = _default_steps(classes["task"], plugin_cfgs["task"])
    for key in ("seed", "steps", "inner_steps", "log_every", "eval_every", "repeat"):
        _check(isinstance(config.get(key), int), f"{key} must be an integer (got {config.get(key)!r})")
    _check(config["seed"] >= 0, f"seed must be >= 0 (got {config['seed']})")
    _check(config["steps"] >= 1, f"steps must be >= 1 (got {config['steps']})")
    _check(config["inner_steps"] >= 1, f"inner_steps must be >= 1 (got {config['inner_steps']})")
    _check(config["log_every"] >= 0, f"log_every must be >= 0 (got {config['log_every']})")
    _check(config["eval_every"] >= 0, f"eval_every must be >= 0 (got {config['eval_every']})")
    _check(config["ordering"] in ORDERINGS,
           f"ordering must be one of {', '.join(ORDERINGS)} (got {config['ordering']!r})")
    level_steps = config["level_steps"] or {}
    _check(isinstance(level_steps, dict), f"level_steps must be a mapping level=steps (got {level_steps!r})")
    for name, value in level_steps.items():
        _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
               f"level_steps.{name} must be an integer >= 1 (got {value!r})")
    _check(config["fused"] in (None, True, False), f"fused must be true, false or null (got {config['fused']!r})")
    problem = host_malloc.validate(config.get("malloc_mmap_threshold"))
    _check(problem is None, problem or "")
    guard = config.get("memory_guard", True)
    _check(isinstance(guard, bool), f"memory_guard must be true or false (got {guard!r})")
    problem = threads.validate(config["threads"])
    _check(problem is None, problem or "")
    _check(config["repeat"] >= 0, f"repeat must be >= 0 (got {config['repeat']})")
    _check(config["dtype"] in DTYPES, f"dtype must be one of {', '.join(DTYPES)} (got {config['dtype']!r})")
    precision = _precision(config)
    limits = config.get("limits") or {}
    extra = sorted(set(limits) - {"time_s", "memory_gb"})
    _check(not extra, f"unknown limits key(s) {extra}; valid: limits.time_s, limits.memory_gb")
    for key in ("time_s", "memory_gb"):
        value = limits.get(key)
        _check(value is None or (isinstance(value, int | float) and value > 0),
               f"limits.{key} must be a positive number or null (got {value!r})")
        _check(value is None or config["isolate"], f"limits.{key} needs isolate=true (the parent enforces it)")
    world_size, timeout_s = _parallel(config.get("parallel"))
    problem = budget.validate(config.get("budget"))
    _check(problem is None, problem or "")
    problem = results_dir_problem(str(config["results_dir"]))
    _check(problem is None, problem or "")
    _check(config["device"] in DEVICES, f"device must be one of {', '.join(DEVICES)} (got {config['device']!r})")
    task = _check_levels(classes["task"], plugin_cfgs["task"], config)
    if config["device"] == "cuda":
        problem = cuda_problem(classes["backend"])
        _check(problem is None, problem or "")
    return Plan(
        task_cls=classes["task"], task_cfg=plugin_cfgs["task"],
        backend_cls=classes["backend"], backend_cfg=plugin_cfgs["backend"],
        method=classes["method"](), method_cfg=plugin_cfgs["method"],
        seed=config["seed"], steps=config["steps"], inner_steps=config["inner_steps"],
        dtype=config["dtype"], device=config["device"], results_dir=str(config["results_dir"]),
        log_every=config["log_every"], progress=bool(config["progress"]),
        hypergrad_check=bool(config["hypergrad_check"]), isolate=bool(config["isolate"]),
        resume=bool(config["resume"]), config=config, ordering=config["ordering"],
        eval_every=config["eval_every"], level_steps=dict(level_steps), threads=config["threads"],
        fused=config["fused"], floor=bool(config.get("floor", True)), precision=precision, task=task,
        world_size=world_size, parallel_timeout_s=timeout_s, memory_guard=guard,
    )


def _precision(config: dict[str, Any]) -> Any:
    """The ``precision`` key parsed and checked against ``dtype``; recorded as the whole mapping Hydra composes (a bare
    name or a partial mapping in a plain-dict config filled in), so that equal precisions hash alike."""
    from mlo_bench.suite.engine.precision import Precision, check

    try:
        precision = Precision.parse(config["precision"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    config["precision"] = precision.as_config()
    problem = check(precision, config["dtype"])
    _check(problem is None, problem or "")
    return precision


def _parallel(node: Any) -> tuple[int, float]:
    """``parallel.world_size`` (an integer >= 1) and ``parallel.timeout_s`` (a positive number); one line naming the
    key otherwise."""
    from mlo_bench.suite.conf.keys import ONE_RANK

    node = ONE_RANK if node is None else node
    _check(isinstance(node, dict), f"parallel must be a mapping (parallel.world_size=N), got {node!r}")
    extra = sorted(set(node) - set(ONE_RANK))
    _check(not extra, f"unknown parallel key(s) {extra}; valid: parallel.world_size, parallel.timeout_s")
    world = node.get("world_size", ONE_RANK["world_size"])
    _check(isinstance(world, int) and not isinstance(world, bool) and world >= 1,
           f"parallel.world_size must be an integer >= 1 (got {world!r})")
    timeout = node.get("timeout_s", ONE_RANK["timeout_s"])
    _check(isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0,
           f"parallel.timeout_s must be a positive number of seconds (got {timeout!r})")
    return world, float(timeout)


def _default_steps(task_cls: Any, task_cfg: Any) -> Any:
    from mlo_bench.suite.contract.task import DEFAULT_STEPS

    declared = getattr(task_cls, "default_steps", None)  # a duck-typed plugin task may not subclass Task
    return DEFAULT_STEPS if declared is None else declared(task_cfg)


def results_dir_problem(results_dir: str) -> str | None:
    """Why records cannot be written under ``results_dir`` (one line), or ``None``: it, or the nearest of its parents
    that exists, must be a writable directory."""
    import os
    from pathlib import Path

    path = Path(results_dir)
    for here in (path, *path.absolute().parents):
        if not here.exists():
            continue
        if not here.is_dir():
            what = "is a file" if here == path else f"is under {here}, which is a file"
            return f"results_dir={results_dir} {what}, not a directory; give a directory (made if missing)"
        if not os.access(here, os.W_OK | os.X_OK):
            return f"results_dir={results_dir}: {here} is not writable here"
        return None
    return None


def take_task(plan: Plan) -> Any:
    """The plan's task for a run: the one :func:`prepare` built, handed over once (a task holds one run's state —
    compiled functions, batch streams —, so a second run of the plan gets a new one)."""
    task, plan.task = plan.task, None
    return task if task is not None else plan.task_cls(plan.task_cfg, plan.seed)


def _check_levels(task_cls: type, task_cfg: Any, config: dict[str, Any]) -> Any:
    """The task's levels form a chain and ``level_steps`` names its lower levels (one line naming the level); returns
    the task. A task that cannot even be built here (e.g. a missing data path) is left to the run, which records why
    (``None``)."""
    from mlo_bench.suite.engine.levels import LevelError, chain, steps_per_level

    try:
        task = task_cls(task_cfg, config["seed"])
        levels = task.levels()
    except Exception:  # noqa: BLE001 - recorded by the run itself
        return None
    try:
        steps_per_level(chain(levels), config["inner_steps"], config["level_steps"] or {})
    except LevelError as exc:
        raise ConfigError(f"task {task_cls.name}: {exc}") from None
    return task


def cuda_problem(backend_cls: type) -> str | None:
    """Why ``device=cuda`` cannot run on this machine (``None`` when it may): checked before any work, so that a run
    on a machine without CUDA is one line (exit 2), not a worker's traceback. A backend that can tell
    (``Backend.cuda_visible()``: those built on torch) answers for itself; any other needs at least an NVIDIA device on
    the machine (its own setup says the rest). Cheap: no CUDA context is created."""
    import os

    visible = backend_cls.cuda_visible()
    if visible is not None:
        return None if visible else \
            f"device=cuda: backend {backend_cls.name} sees no CUDA device here; use device=cpu or device=auto"
    try:
        import torch

        torch_cuda = bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - torch is a dependency, but a broken install is still a reason
        torch_cuda = False
    if torch_cuda or os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia"):
        return None
    return f"device=cuda: no CUDA device on this machine (backend {backend_cls.name}); use device=cpu or device=auto"
