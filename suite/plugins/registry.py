"""Registries of tasks, backends and methods: the suite's own plugin folders, then third-party plugins.

A plugin is a class decorated with :func:`register`. The suite's own are the modules of ``tasks/``, ``backends/`` and
``methods/`` (names starting with ``_`` — templates, shared helpers — are not plugins). Importing a plugin module must
never fail because an optional package is missing: backends import their framework lazily and report it through
``check_available``.

Third-party plugins are modules imported for their ``@register`` side effect, from three places (in this order):

- the entry-point group ``mlo_bench.plugins`` of every installed distribution (the value is a module, e.g.
  ``weighted_lsq = "mlo_bench_weighted_lsq"``): installed with pip, found by every process, workers included;
- the environment variable ``MLO_BENCH_PLUGINS`` (comma-separated modules), inherited by workers;
- the ``plugins=[mod,...]`` config key (:func:`load_plugins`; the plan loads them again in an isolated worker).

Each registered name remembers where it came from (:func:`origin`: ``builtin``, ``entry point <dist> <version>``,
``plugins= <module>``, ``MLO_BENCH_PLUGINS <module>``). A third-party module that fails to import, or that registers
a name already taken, never stops the others: it becomes one line in :func:`problems` (shown by ``mlo-bench list``
and appended to the unknown-name message, exit 2, when the name asked for is the broken one). A builtin name cannot
be taken over (the plugin's class is refused, the builtin stays); a name two third-party plugins both register is
used from neither (asking for it names both).

Each plugin's ``Config`` dataclass becomes a Hydra config-group option (``task=quadratic``, ``method=cg``…) through
Hydra's ConfigStore, so adding a plugin means adding one file (or one installed module) and nothing else.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import os
import pkgutil
from importlib import metadata
from typing import Any

from mlo_bench.suite.conf.keys import DEFAULT_PRECISION, PRECISIONS

ROLES = {"task": "mlo_bench.tasks", "backend": "mlo_bench.backends", "method": "mlo_bench.methods"}
#: entry-point group through which an installed distribution names its plugin modules
ENTRY_POINT_GROUP = "mlo_bench.plugins"
#: environment variable naming plugin modules (comma-separated)
ENV_VAR = "MLO_BENCH_PLUGINS"
_REGISTRY: dict[str, dict[str, type]] = {role: {} for role in ROLES}
_DISCOVERED = False


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a plugin came from: ``kind`` is ``builtin``, ``entry point``, ``plugins=`` or ``MLO_BENCH_PLUGINS``."""

    kind: str
    module: str
    dist: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.kind == "builtin":
            return "builtin"
        if self.kind == "entry point":
            return f"entry point {self.dist} {self.version} ({self.module})"
        return f"{self.kind} {self.module}"

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


BUILTIN = Origin("builtin", "mlo_bench")
_ORIGINS: dict[tuple[str, str], Origin] = {}
#: names that two third-party plugins both register: used from neither
_CLASHES: dict[tuple[str, str], list[Origin]] = {}
#: one line per third-party problem (a module that failed to import, a refused or clashing name)
_PROBLEMS: list[str] = []
#: modules already imported as plugins, with the origin of their first load
_LOADED: dict[str, Origin] = {}
_FAILED: dict[str, str] = {}
_loading: Origin | None = None


@dataclasses.dataclass
class NoConfig:
    """For plugins without knobs."""

    def validate(self) -> None:
        return None


def declare_capabilities(role: str, cls: type) -> None:
    """A backend or method class that does not subclass its contract (:class:`~mlo_bench.suite.contract.Backend`,
    :class:`~mlo_bench.suite.contract.Method`; e.g. a plugin written before the capabilities were declared there) gets
    the contract's default for each declared capability it does not set, so that the suite reads every capability as a
    plain attribute."""
    from mlo_bench.suite.contract import Backend, Method

    contract = {"backend": Backend, "method": Method}.get(role)
    if contract is None or issubclass(cls, contract):
        return
    for capability in contract.CAPABILITIES:
        if not hasattr(cls, capability):
            setattr(cls, capability, contract.__dict__[capability])


def register(role: str):
    """Class decorator: ``@register("task")`` adds the class under its ``name`` (a backend or method class that does
    not subclass its contract is first given the contract's capability defaults: :func:`declare_capabilities`)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")

    def deco(cls: type) -> type:
        declare_capabilities(role, cls)
        name, here = cls.name, _loading or BUILTIN
        key = (role, name)
        if key in _CLASHES:
            _CLASHES[key].append(here)
            _PROBLEMS.append(f"{role} {name!r} of {here} clashes with " + ", ".join(map(str, _CLASHES[key][:-1])))
            return cls
        existing = _REGISTRY[role].get(name)
        if existing is not None and existing is not cls:
            first = _ORIGINS.get(key, BUILTIN)
            if here.kind == "builtin" and first.kind == "builtin":
                raise ValueError(f"two {role} plugins are named {name!r}")
            if first.kind == "builtin":
                _PROBLEMS.append(f"{role} {name!r} of {here} refused: the name is the suite's own (builtin kept)")
                return cls
            del _REGISTRY[role][name]
            _CLASHES[key] = [first, here]
            _PROBLEMS.append(f"{role} {name!r} is registered by both {first} and {here}: used from neither")
            return cls
        _REGISTRY[role][name] = cls
        _ORIGINS.setdefault(key, here)
        return cls

    return deco


def _import_plugin(module: str, origin: Origin, attr: Any = None) -> str | None:
    """Import one third-party plugin module under ``origin``; ``None`` or the one-line reason it failed. A module
    that fails is rolled back: nothing it registered before failing stays registered."""
    global _loading
    if module in _LOADED:
        return None
    if module in _FAILED:
        return _FAILED[module]
    before = {role: set(names) for role, names in _REGISTRY.items()}
    _loading = origin
    try:
        attr() if attr is not None else importlib.import_module(module)
    except BaseException as exc:  # noqa: BLE001 - a broken plugin is one line, never a crash of the suite
        if isinstance(exc, KeyboardInterrupt):
            raise
        for role, names in _REGISTRY.items():
            for name in set(names) - before[role]:
                del names[name]
                _ORIGINS.pop((role, name), None)
        text = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        _FAILED[module] = f"plugin {module} ({origin}) failed to import: {why}"
        _PROBLEMS.append(_FAILED[module])
        return _FAILED[module]
    finally:
        _loading = None
    _LOADED[module] = origin
    return None


def parse_modules(value: Any) -> list[str]:
    """Module names from a ``plugins`` value: a list, or a string ``a,b`` / ``[a,b]`` (as on a command line)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.strip().strip("[]").split(",")
    return [str(m).strip().strip("'\"") for m in value if str(m).strip().strip("'\"")]


def load_plugins(modules: Any, kind: str = "plugins=") -> list[str]:
    """Import the named plugin modules (idempotent) and register their configs with Hydra; returns one line per
    module that failed (the callers asked for them: a ``plugins=`` key is a ConfigError when one fails)."""
    discover()
    failed = [why for m in parse_modules(modules) if (why := _import_plugin(m, Origin(kind, m)))]
    _register_configs()
    return failed


def _entry_point_plugins() -> None:
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception as exc:  # noqa: BLE001 - broken metadata on the path is a problem line, not a crash
        _PROBLEMS.append(f"entry points {ENTRY_POINT_GROUP} could not be read: {type(exc).__name__}: {exc}")
        return
    for ep in sorted(eps, key=lambda e: (e.module, e.name)):
        dist = getattr(ep, "dist", None)
        origin = Origin("entry point", ep.module, getattr(dist, "name", None) or "?", getattr(dist, "version", None))
        _import_plugin(ep.module, origin, ep.load if ep.attr else None)


def discover() -> None:
    """Import every plugin module once (idempotent) and register their configs with Hydra: the suite's own
    folders, then entry points, then ``MLO_BENCH_PLUGINS``."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for package in ROLES.values():
        pkg = importlib.import_module(package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package}.{info.name}")
    _entry_point_plugins()
    for module in parse_modules(os.environ.get(ENV_VAR, "")):
        _import_plugin(module, Origin(ENV_VAR, module))
    _register_configs()


def origin(role: str, name: str) -> Origin:
    """Where the plugin ``name`` of ``role`` came from."""
    discover()
    return _ORIGINS.get((role, name), BUILTIN)


def problems() -> list[str]:
    """One line per third-party plugin problem (failed import, refused or clashing name), in the order found."""
    discover()
    return list(_PROBLEMS)


def names(role: str) -> list[str]:
    discover()
    return sorted(_REGISTRY[role])


def get(role: str, name: str) -> type:
    """The plugin class registered as ``name``; ``KeyError`` with the valid names otherwise."""
    discover()
    try:
        return _REGISTRY[role][name]
    except KeyError:
        raise KeyError(unknown_name_message(role, name)) from None


def unknown_name_message(role: str, name: str) -> str:
    """One line: a clash names both plugins; otherwise the valid names, and any plugin that failed to import."""
    if (role, name) in _CLASHES:
        return f"{role} {name!r} is registered by " + " and ".join(map(str, _CLASHES[role, name])) + \
            ": used from neither (uninstall or rename one)"
    valid = names(role)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    failed = f"; plugins that failed to import: {'; '.join(_FAILED.values())}" if _FAILED else ""
    return f"unknown {role} {name!r}{hint} valid {role}s: {', '.join(valid)}{failed}"


@functools.cache
def config_class(cls: type) -> type:
    """The plugin's config dataclass with a leading ``name`` field (what Hydra stores for the group option)."""
    base = getattr(cls, "Config", NoConfig)
    fields = [("name", str, dataclasses.field(default=cls.name))]
    return dataclasses.make_dataclass(f"{cls.__name__}Config", fields, bases=(base,))


#: what the ConfigStore was last filled from (:func:`_register_configs`): the plugins registered, and the store
_STORED: list[Any] = [None]


def _register_configs() -> None:
    """Every plugin's config, the presets and the variants as Hydra options — again only when a plugin was added or
    removed since the last call (each ``prepare`` asks: re-storing ≈ 410 nodes cost 0.2 s a run in a sweep)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    _share_store_on_copy(ConfigStore)
    signature = (id(store.repo), tuple((role, name, id(cls)) for role, plugins in _REGISTRY.items()
                                       for name, cls in plugins.items()))
    if _STORED[0] == signature:
        return
    _STORED[0] = signature
    for role, plugins in _REGISTRY.items():
        for name, cls in plugins.items():
            store.store(group=role, name=name, node=config_class(cls))
    _register_presets(store)
    for precision in PRECISIONS:  # the precision group: precision=NAME, precision.KNOB=V (suite/engine/precision.py)
        store.store(group="precision", name=precision, node={**DEFAULT_PRECISION, "name": precision})
    variants = importlib.import_module("mlo_bench.suite.plugins.variants")
    variants.register(store, _REGISTRY["task"], sorted(_REGISTRY["backend"]))


def _share_store_on_copy(store_cls: type) -> None:
    """Hydra deep-copies its config repository at every composition (``CachingConfigRepository``, so that
    initialising sources does not mutate the original), and the repository holds the process-wide ConfigStore
    singleton, so each composition copied every stored node: 0.08–0.15 s, three compositions per run of a sweep
    (the sweeper's validation, the launch, the job's plan), ≈ 60 s of the main job's 553 s. The store is only read
    through ``ConfigStore.load``, which copies the node it returns, so a copy may share it."""
    if "__deepcopy__" not in vars(store_cls):
        store_cls.__deepcopy__ = lambda self, memo: self


#: the preset option that applies nothing (the default of the ``preset`` group in suite/conf/config.yaml)
NO_PRESET = "none"


def presets(task: str) -> list[str]:
    """The preset names that task ``task`` defines (its ``presets`` class attribute)."""
    return sorted(getattr(get("task", task), "presets", {}) or {})


def preset_names() -> list[str]:
    """Every preset name some task defines."""
    return sorted({p for t in names("task") for p in presets(t)})


def preset_problem(task: str, preset: str) -> str | None:
    """One line when ``task`` does not define ``preset`` (``None`` when it does, or for ``none``)."""
    if preset == NO_PRESET or preset in presets(task):
        return None
    own = ", ".join(presets(task)) or "none"
    others = [t for t in names("task") if preset in presets(t)]
    where = f"; tasks with preset {preset!r}: {', '.join(others)}" if others else \
        f"; presets of any task: {', '.join(preset_names()) or 'none'}"
    return f"task {task} has no preset {preset!r} (its presets: {own}){where}"


def _register_presets(store: Any) -> None:
    """Presets as Hydra options. ``preset/<name>`` is an empty marker option for every name some task defines;
    ``task_preset/<task>/<name>`` holds that task's values (package ``_global_``: ``task.*`` and top-level keys).
    The primary config's defaults list ends with ``preset: none`` and ``task_preset@_global_: ${task}/${preset}``,
    a defaults-list interpolation resolved after the task and preset are chosen, so ``preset=demo`` merges the chosen
    task's own demo values after the primary config (command-line overrides still win; ``+preset=`` is accepted by
    the CLI as the same thing). A task without that preset fails composition; the CLI says so in one line first."""
    every = sorted({p for cls in _REGISTRY["task"].values() for p in getattr(cls, "presets", {}) or {}})
    for name in [NO_PRESET, *every]:
        store.store(group="preset", name=name, node={}, package="_global_")
    for task, cls in _REGISTRY["task"].items():
        store.store(group=f"task_preset/{task}", name=NO_PRESET, node={}, package="_global_")
        for name, values in (getattr(cls, "presets", {}) or {}).items():
            if name == NO_PRESET:
                raise ValueError(f"task {task}: a preset cannot be named {NO_PRESET!r}")
            store.store(group=f"task_preset/{task}", name=name, node=values, package="_global_")


def availability(role: str, name: str) -> str | None:
    """``None`` when the plugin can run here, else the reason (e.g. the import error of a missing package)."""
    cls = get(role, name)
    check = getattr(cls, "check_available", None)
    if check is None:
        return None
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - any failure to load is a reason to report
        return f"{type(exc).__name__}: {exc}"
    return None


def backend(name: str, knobs: Any = None) -> Any:
    """An instance of backend ``name`` configured with ``knobs`` (a dict of its ``Config`` fields; defaults when
    ``None``) — what to ask about a configured backend (``supports``, ``materialises``) without setting it up."""
    return get("backend", name)(make_config("backend", name, knobs or {}))


def make_config(role: str, name: str, values: Any) -> Any:
    """The plugin's config dataclass filled from ``values`` (a composed Hydra node or a plain dict), validated.

    Values are merged into the structured schema first, so a plain dict (e.g. a record's ``config``) gets the same
    type checks and nested dataclasses as a composed config.
    """
    from omegaconf import OmegaConf

    cls = get(role, name)
    base = getattr(cls, "Config", NoConfig)
    if OmegaConf.is_config(values):  # a plain container: a config unpickled in a launcher's worker has a copy of
        values = OmegaConf.to_container(values, resolve=True)  # the dynamic schema class, which would not merge
    merged = OmegaConf.merge(OmegaConf.structured(config_class(cls)), values)
    data = OmegaConf.to_object(merged)
    cfg = base(**{f.name: getattr(data, f.name) for f in dataclasses.fields(base)})
    cfg.validate()
    return cfg
