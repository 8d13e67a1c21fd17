"""The ``mlo-bench`` command: ``list``, ``run``, ``verify``, ``report``.

``run`` is a Hydra application (``key=value`` overrides, ``-m`` for sweeps); names and values are checked before any
work starts, and a bad one is a single line on stderr with exit code 2.
"""

from __future__ import annotations

import difflib
import sys
from importlib import resources

from mlo_bench.suite import __version__, registry

USAGE = f"""mlo-bench {__version__} — benchmark multilevel-optimization backends and hypergradient methods

usage: mlo-bench <command> [args]

commands:
  list [plugins=[MOD,...]]  registered tasks, backends and methods: which are installed here and why not, where
                            each comes from (builtin, entry point, plugins=), third-party plugins that failed
  run [KEY=VALUE ...]       one run -> one record (Hydra overrides), e.g.
                              mlo-bench run task=quadratic backend=torch method=cg seed=0
                              mlo-bench run task=quadratic task.levels=3 method=exact dtype=float64
  run -m [KEY=V1,V2 ...]    a sweep (Hydra multirun), e.g. mlo-bench run -m method=cg,exact seed=0,1,2
                              named experiments: mlo-bench run -m +experiment=demo
  verify [KEY=VALUE ...] [--tol F] [--reference B] [--steps N]
                            cross-backend agreement table (first hypergradient, parameters after N steps)
                            of every installed backend x method against torch, e.g.
                              mlo-bench verify task=quadratic dtype=float64
  report [DIR ...] [--out DIR] [--bench FILE]
                            read run records (and pytest-benchmark JSON) into tables and figures
                            (CSV, Parquet, Markdown, self-contained HTML, PNG)

`mlo-bench run --help` lists every config key and option. Exit codes: 0 ok, 1 a run did not end ok
(its record is still written), 2 bad input (nothing was run), 3 not run: another process is running the same config
(its lock in <results_dir>/locks/).
"""


def _fail(command: str, message: str) -> int:
    print(f"mlo-bench {command}: error: {message}", file=sys.stderr)
    return 2


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


def _preset_problem(args: list[str], value: str) -> str | None:
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
        tasks = [str(_compose([]).task.name)]
    for task in tasks:
        if task in registry.names("task"):
            for name in chosen:
                problem = registry.preset_problem(task, name)
                if problem:
                    return problem
    return None


def check_overrides(args: list[str]) -> str | None:
    """One-line message for the first unknown key or plugin name among ``args``; ``None`` when all are known."""
    from mlo_bench.suite.plan import TOP_LEVEL_KEYS

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
            problem = _preset_problem(args, value)
            if problem:
                return problem
            continue
        if key == "variant":
            from mlo_bench.suite import variants

            known = variants.names()
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


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="mlo_bench.suite.conf", version_base=None):
        return compose(config_name="config", overrides=normalize_overrides(overrides))


def _first_line(exc: BaseException) -> str:
    parts = [str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__]
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause):
        text = str(cause)
        parts.append(text.splitlines()[0])
        key = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.strip().startswith("full_key:")]
        if key and key[0]:
            parts.append(f"(key {key[0]})")
    return ": ".join(parts[:2]) + (f" {parts[2]}" if len(parts) > 2 else "")


def cmd_run(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        return _run_help()
    registry.discover()
    args = normalize_overrides(args)
    failed = registry.load_plugins(plugin_args(args))
    if failed:
        return _fail("run", f"plugins: {failed[0]}")
    problem = check_overrides(args)
    if problem:
        return _fail("run", problem)
    hydra_flags = [a for a in args if a.startswith("-")]
    if hydra_flags:
        # Sweeps and Hydra's own flags (--cfg, -m, --multirun …) go through the Hydra application.
        from mlo_bench.suite.app import app

        sys.argv = ["mlo-bench run", *args]
        try:
            return app() or 0
        except ValueError as exc:  # Hydra's own argument errors (e.g. -m together with --cfg)
            return _fail("run", _first_line(exc))
    from mlo_bench.suite.job import run_job
    from mlo_bench.suite.plan import ConfigError, prepare
    from mlo_bench.suite.records import BUSY

    try:
        plan = prepare(_compose(args))
    except ConfigError as exc:
        return _fail("run", str(exc))
    except Exception as exc:  # noqa: BLE001 - Hydra/OmegaConf composition errors
        return _fail("run", _first_line(exc))
    record = run_job(plan)
    return {"ok": 0, BUSY: 3}.get(record["status"], 1)


def _run_help() -> int:
    from omegaconf import OmegaConf

    registry.discover()
    cfg = _compose([])
    print("usage: mlo-bench run [-m] [KEY=VALUE ...]   (Hydra overrides; -m sweeps comma-separated values)\n")
    print("config groups (choose with GROUP=NAME; their knobs are GROUP.KEY=VALUE):")
    for role in registry.ROLES:
        print(f"  {role:<10} {', '.join(registry.names(role))}")
    print(f"  {'+experiment':<10} {', '.join(experiments())}   (named sweeps, with -m)")
    print(f"  {'+preset':<10} {', '.join(registry.preset_names())}   (the chosen task's own values; "
          "tasks: " + "; ".join(f"{t}: {', '.join(registry.presets(t))}" for t in registry.names("task")
                                if registry.presets(t)) + ")")
    print("  hydra/launcher  basic (default), joblib, submitit_local, submitit_slurm — when installed\n")
    print("defaults (mlo-bench run --cfg job prints the composed config):")
    print("  " + OmegaConf.to_yaml(cfg).replace("\n", "\n  ").rstrip())
    return 0


LIST_USAGE = """usage: mlo-bench list [plugins=[MODULE,...]]

Registered tasks, backends and methods: availability, origin (builtin, entry point <dist> <version>, plugins= <module>,
MLO_BENCH_PLUGINS <module>) and knobs of each; then one line per third-party plugin that failed to import or whose
name clashes with another. plugins= imports those modules first (as the run key does)."""


def plugin_args(args: list[str]) -> list[str]:
    """The modules named by ``plugins=`` / ``+plugins=`` arguments (Hydra list syntax ``plugins=[a,b]``)."""
    return [m for a in args if "=" in a and a.split("=", 1)[0].lstrip("+~") == "plugins"
            for m in registry.parse_modules(a.split("=", 1)[1])]


def cmd_list(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        print(LIST_USAGE)
        return 0
    unknown = [a for a in args if not ("=" in a and a.split("=", 1)[0].lstrip("+") == "plugins")]
    if unknown:
        return _fail("list", f"unexpected argument {unknown[0]!r}; list takes only plugins=[MODULE,...]")
    failed = registry.load_plugins(plugin_args(args))
    import dataclasses

    for role in registry.ROLES:
        print(f"{role}s:")
        for name in registry.names(role):
            cls = registry.get(role, name)
            why = registry.availability(role, name)
            state = "available" if why is None else f"UNAVAILABLE ({why})"
            doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip()
            doc = doc.splitlines()[0] if doc else ""
            cfg = getattr(cls, "Config", None)
            knobs = ", ".join(f"{f.name}" for f in dataclasses.fields(cfg)) if cfg else ""
            print(f"  {name:<12} {state:<12} {doc}")
            print(f"  {'':<12} from: {registry.origin(role, name)}" + (f"; knobs: {knobs}" if knobs else ""))
    problems = registry.problems()
    if problems:
        print("plugin problems (the other plugins are usable):")
        for line in problems:
            print(f"  {line}")
    if failed:
        return _fail("list", failed[0])
    return 0


def cmd_verify(args: list[str]) -> int:
    from mlo_bench.suite.verify import main as verify_main

    return verify_main(args)


def cmd_report(args: list[str]) -> int:
    from mlo_bench.suite.report import main as report_main

    return report_main(args)


COMMANDS = {"list": cmd_list, "run": cmd_run, "verify": cmd_verify, "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return _fail("", f"unknown command {command!r}{hint} commands: {', '.join(COMMANDS)}")
    return COMMANDS[command](rest)


if __name__ == "__main__":
    sys.exit(main())
