"""The command line's overrides → a composed run config: normalised spellings, names and keys checked before any
work (each bad one a single line), then Hydra's compose. Shared by ``mlo-bench run``
(:mod:`mlo_bench.suite.cli.commands`), ``mlo-bench verify`` and the step benchmark.
"""

from __future__ import annotations

import difflib
from importlib import resources

from mlo_bench.suite.conf.keys import TOP_LEVEL_KEYS
from mlo_bench.suite.plugins import registry


def option_groups() -> list[str]:
    """The config groups kept as folders of YAML files in suite/conf (experiment, complexity_path), added with ``+``."""
    root = resources.files("mlo_bench.suite.conf")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(f.name.endswith(".yaml") for f in p.iterdir()))


def group_options(group: str) -> list[str]:
    folder = resources.files("mlo_bench.suite.conf").joinpath(group)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def experiments() -> list[str]:
    return group_options("experiment")


def normalize_overrides(args: list[str]) -> list[str]:
    """``+preset=NAME`` (and ``++preset=``) → ``preset=NAME``, and the same for ``variant``: the primary config already
    has a default for both (``none``), which Hydra would refuse to append to; both spellings choose the task's own.
    ``level_steps.<level>=N`` → ``++level_steps.<level>=N`` (an entry of a mapping that starts empty)."""
    out = []
    for a in args:
        key = a.split("=", 1)[0]
        if key in ("+preset", "++preset", "+variant", "++variant"):
            a = key.lstrip("+") + "=" + a.split("=", 1)[1]
        elif key.lstrip("+").startswith("level_steps.") and "=" in a:
            a = "++" + a.lstrip("+")  # a per-level entry of an empty mapping: added or overridden alike
        out.append(a)
    return out


def preset_problem(args: list[str], value: str) -> str | None:
    """One line when a preset name is unknown, or not defined by a task chosen on the command line (or the
    default task); tasks chosen by an experiment are left to Hydra."""
    known = registry.preset_names()
    chosen = [n for n in value.split(",") if n]
    for name in chosen:
        if name != registry.NO_PRESET and name not in known:
            return f"unknown preset {name!r}; valid presets: {', '.join(known) or 'none'} (each task defines its own)"
    pairs = [a.split("=", 1) for a in args if "=" in a and not a.startswith("-")]
    if any(k.lstrip("+") == "experiment" for k, _ in pairs):
        return None
    tasks = [t for k, v in pairs if k.lstrip("+") == "task" for t in v.split(",") if t]
    if not tasks:
        tasks = [str(compose([]).task.name)]
    for task in tasks:
        if task in registry.names("task"):
            for name in chosen:
                problem = registry.preset_problem(task, name)
                if problem:
                    return problem
    return None


def check_overrides(args: list[str]) -> str | None:
    """One-line message for the first unknown key or plugin name among ``args``; ``None`` when all are known."""
    args = normalize_overrides(args)
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        plus = key.startswith("+")
        key = key.lstrip("+~")
        root = key.split(".", 1)[0].split("/", 1)[0]
        if root == "hydra":
            continue
        if key == "preset":
            problem = preset_problem(args, value)
            if problem:
                return problem
            continue
        if key == "variant":
            from mlo_bench.suite.plugins import variants

            known = variants.names({n: registry.get("task", n) for n in registry.names("task")})
            for name in value.split(","):
                if name != variants.NONE and name not in known:
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    return f"unknown variant {name!r}{hint} valid variants: {', '.join(known) or 'none'}"
            continue
        if key in option_groups():
            known = group_options(key)
            for name in value.split(","):
                if name not in known:
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    return f"unknown {key} {name!r}{hint} valid options: {', '.join(known)}"
            if not plus:
                return f"{key} is added with a plus sign: +{key}=NAME"
            continue
        if root not in TOP_LEVEL_KEYS:
            close = difflib.get_close_matches(root, TOP_LEVEL_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"unknown config key {root!r}{hint} valid keys: {', '.join(TOP_LEVEL_KEYS)}"
        if key in registry.ROLES:
            for name in value.split(","):
                if name not in registry.names(key):
                    return registry.unknown_name_message(key, name)
    return None


def compose(overrides: list[str]):
    """The run config that ``mlo-bench run OVERRIDES`` composes (Hydra's compose API on ``suite/conf``)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="mlo_bench.suite.conf", version_base=None):
        return compose(config_name="config", overrides=normalize_overrides(overrides))


def first_line(exc: BaseException) -> str:
    """One line for a failed composition or plan: the error's first line, its cause's, and the key Hydra named."""
    parts = [str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__]
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause):
        text = str(cause)
        parts.append(text.splitlines()[0])
        key = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.strip().startswith("full_key:")]
        if key and key[0]:
            parts.append(f"(key {key[0]})")
    return ": ".join(parts[:2]) + (f" {parts[2]}" if len(parts) > 2 else "")


def plugin_args(args: list[str]) -> list[str]:
    """The modules named by ``plugins=`` / ``+plugins=`` arguments (Hydra list syntax ``plugins=[a,b]``)."""
    return [m for a in args if "=" in a and a.split("=", 1)[0].lstrip("+~") == "plugins"
            for m in registry.parse_modules(a.split("=", 1)[1])]
