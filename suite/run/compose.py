"""The command line's overrides → a composed run config: normalised spellings, names and keys checked before any
work (each bad one a single line), then Hydra's compose. Shared by ``mlo-bench run``
(:mod:`mlo_bench.suite.cli.commands`), ``mlo-bench verify`` and the step benchmark.
"""

from __future__ import annotations

import difflib
from importlib import resources

from mlo_bench.suite.conf.keys import DEFAULT_PRECISION, PRECISIONS, TOP_LEVEL_KEYS
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


def duplicate_problem(args: list[str]) -> str | None:
    """One line when a key is given twice among ``args`` (``seed=0 seed=1``: Hydra would silently take the last;
    ``+``, ``++`` and ``~`` spell the same key), else ``None``."""
    seen: dict[str, str] = {}
    for arg in normalize_overrides(args):
        if arg.startswith("-") or "=" not in arg:
            continue
        key = arg.split("=", 1)[0].lstrip("+~")
        if key in seen:
            return (f"{key} is given twice ({seen[key]} and {arg}); give it once (to sweep several values: "
                    f"-m {key}=A,B)")
        seen[key] = arg
    return None


def hydra_group_problem(group: str, value: str) -> str | None:
    """One line when ``hydra/<group>=value`` names no option of that Hydra config group (e.g. a launcher whose
    plugin is not installed), else ``None``."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_module(config_module="mlo_bench.suite.conf", version_base=None):
        known = GlobalHydra.instance().config_loader().get_group_options(group)
    if not known:
        return f"unknown Hydra config group {group!r} ({group}={value})"
    for name in value.split(","):
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            extra = " (joblib and submitit come with the launchers extra)" if group == "hydra/launcher" else ""
            return f"unknown {group} {name!r}{hint} valid options: {', '.join(known)}{extra}"
    return None


def _chosen(args: list[str], role: str) -> list[str]:
    """The names given to ``role=`` on the command line, or its default's."""
    pairs = [a.split("=", 1) for a in args if "=" in a and not a.startswith("-")]
    given = [n for k, v in pairs if k.lstrip("+") == role for n in v.split(",") if n]
    return given or [str(compose([])[role].name)]


def variant_problem(args: list[str], value: str) -> str | None:
    """One line when a variant named by ``variant=`` is not one of the chosen task's (on the chosen backend): it
    lists that task's variants only, and says which task a variant of another task belongs to. Tasks chosen by an
    experiment are left to Hydra (checked against every task's variants)."""
    from mlo_bench.suite.plugins import variants

    tasks = {n: registry.get("task", n) for n in registry.names("task")}
    chosen = [n for n in value.split(",") if n and n != variants.NONE]
    pairs = [a.split("=", 1) for a in args if "=" in a and not a.startswith("-")]
    if any(k.lstrip("+") == "experiment" for k, _ in pairs):
        known = variants.names(tasks)
        for name in chosen:
            if name not in known:
                return f"unknown variant {name!r} valid variants: {', '.join(known) or 'none'}"
        return None
    for task in [t for t in _chosen(args, "task") if t in tasks]:
        own = [v.name for v in variants.declared(tasks[task])]
        for backend in [b for b in _chosen(args, "backend") if b in registry.names("backend")]:
            here = [v.name for v in variants.declared(tasks[task]) if v.backends is None or backend in v.backends]
            listed = f"{task}'s variants" + (f" on {backend}" if here != own else "")
            listed += f": {', '.join(here) or 'none'}"
            for name in chosen:
                if name in own:
                    problem = variants.problem(tasks, task, name, backend)
                    if problem:
                        return f"{problem}; {listed}"
                    continue
                others = [t for t, cls in tasks.items() if name in {v.name for v in variants.declared(cls)}]
                if others:
                    return f"variant {name!r} is not one of {task}'s (it is {' and '.join(others)}'s); {listed}"
                close = difflib.get_close_matches(name, here or own, n=1)
                hint = f" did you mean {close[0]!r}?" if close else ""
                return f"unknown variant {name!r} for task {task};{hint} {listed}"
    return None


def check_overrides(args: list[str]) -> str | None:
    """One-line message for the first unknown key or plugin name among ``args``, or a key given twice; ``None`` when
    all are known."""
    args = normalize_overrides(args)
    problem = duplicate_problem(args)
    if problem:
        return problem
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        plus = key.startswith("+")
        key = key.lstrip("+~")
        root = key.split(".", 1)[0].split("/", 1)[0]
        if root == "hydra":
            if key.startswith("hydra/"):
                problem = hydra_group_problem(key, value)
                if problem:
                    return problem
            continue
        if key == "preset":
            problem = preset_problem(args, value)
            if problem:
                return problem
            continue
        if key == "variant":
            problem = variant_problem(args, value)
            if problem:
                return problem
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
        if key == "precision":
            for name in value.split(","):
                if name not in PRECISIONS:
                    return f"precision must be one of {', '.join(PRECISIONS)} (got {name!r})"
        if root == "precision" and key != "precision" and key.split(".", 1)[1] not in DEFAULT_PRECISION:
            return (f"unknown precision knob {key!r}; knobs: "
                    + ", ".join(f"precision.{k}" for k in DEFAULT_PRECISION if k != "name"))
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
