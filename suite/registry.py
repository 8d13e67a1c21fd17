"""Registries of tasks, backends and methods, discovered from their plugin folders.

A plugin is one module in ``tasks/``, ``backends/`` or ``methods/`` that decorates its class with
:func:`register`. Modules whose names start with ``_`` (templates, shared helpers) are not plugins. Importing a
plugin module must never fail because an optional package is missing: backends import their framework lazily and
report it through ``check_available``.

Each plugin's ``Config`` dataclass becomes a Hydra config-group option (``task=quadratic``, ``method=cg``…) through
Hydra's ConfigStore, so adding a plugin means adding one file and nothing else.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import pkgutil
from typing import Any

ROLES = {"task": "mlo_bench.tasks", "backend": "mlo_bench.backends", "method": "mlo_bench.methods"}
_REGISTRY: dict[str, dict[str, type]] = {role: {} for role in ROLES}
_DISCOVERED = False


@dataclasses.dataclass
class NoConfig:
    """For plugins without knobs."""

    def validate(self) -> None:
        return None


def register(role: str):
    """Class decorator: ``@register("task")`` adds the class under its ``name``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")

    def deco(cls: type) -> type:
        name = cls.name
        if name in _REGISTRY[role] and _REGISTRY[role][name] is not cls:
            raise ValueError(f"two {role} plugins are named {name!r}")
        _REGISTRY[role][name] = cls
        return cls

    return deco


def discover() -> None:
    """Import every plugin module once (idempotent) and register their configs with Hydra."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    for package in ROLES.values():
        pkg = importlib.import_module(package)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package}.{info.name}")
    _register_configs()
    _DISCOVERED = True


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
    valid = names(role)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {role} {name!r}{hint} valid {role}s: {', '.join(valid)}"


@functools.cache
def config_class(cls: type) -> type:
    """The plugin's config dataclass with a leading ``name`` field (what Hydra stores for the group option)."""
    base = getattr(cls, "Config", NoConfig)
    fields = [("name", str, dataclasses.field(default=cls.name))]
    return dataclasses.make_dataclass(f"{cls.__name__}Config", fields, bases=(base,))


def _register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for role, plugins in _REGISTRY.items():
        for name, cls in plugins.items():
            store.store(group=role, name=name, node=config_class(cls))
    _register_presets(store)
    importlib.import_module("mlo_bench.suite.variants").register(store, _REGISTRY["task"], sorted(_REGISTRY["backend"]))


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
