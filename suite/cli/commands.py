"""The ``mlo-bench`` command: ``list``, ``run``, ``demo``, ``verify``, ``report``.

``run`` is a Hydra application (``key=value`` overrides, ``-m`` for sweeps); names and values are checked before any
work starts, and a bad one is a single line on stderr with exit code 2.
"""

from __future__ import annotations

import difflib
import sys

from mlo_bench.suite import __version__
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.compose import (
    check_overrides,
    compose,
    experiments,
    first_line,
    normalize_overrides,
    plugin_args,
)

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
  demo [KEY=VALUE ...]      the main job: every demo sweep (suite/conf/main_job.yaml) in one process, then the
                            report in <results_dir>/report, e.g. mlo-bench demo results_dir=/tmp/demo
  verify [KEY=VALUE ...] [--tol F] [--reference B] [--steps N]
                            cross-backend agreement table (first hypergradient, parameters after N steps)
                            of every installed backend x method against torch, e.g.
                              mlo-bench verify task=quadratic dtype=float64
  report [DIR ...] [--out DIR] [--bench FILE]
                            read run records (and pytest-benchmark JSON) into tables and figures
                            (CSV, Parquet, Markdown, self-contained HTML, PNG)

`mlo-bench run --help` lists every config key and option. Exit codes: 0 ok, 1 a run did not end ok
(its record is still written; a sweep: a run ended diverged, oom, timeout or error), 2 bad input (nothing was run),
3 not run: another process is running the same config (its lock in <results_dir>/locks/), 130 interrupted (SIGINT or
SIGTERM: the run stopped at a step boundary and is recorded `interrupted`; the same command again resumes a sweep).
"""


def _fail(command: str, message: str) -> int:
    print(f"mlo-bench {command}: error: {message}", file=sys.stderr)
    return 2


def cmd_run(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        return _run_help()
    from mlo_bench.suite.run import interrupt

    with interrupt.handling():  # SIGINT / SIGTERM: the run stops at a step boundary and is recorded (exit 130)
        try:
            return _run(args)
        except interrupt.Interrupted:
            print("mlo-bench run: interrupted before the run began; nothing was run", file=sys.stderr)
            return interrupt.EXIT_CODE


def _run(args: list[str]) -> int:
    from mlo_bench.suite.run import interrupt

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
        from mlo_bench.suite.cli.callbacks import LAST, stopped
        from mlo_bench.suite.cli.compose_once import composed_once
        from mlo_bench.suite.cli.hydra_app import app

        sys.argv = ["mlo-bench run", *args]
        LAST.clear()
        try:
            with composed_once():
                code = app() or 0
        except ValueError as exc:  # Hydra's own argument errors (e.g. -m together with --cfg)
            return _fail("run", first_line(exc))
        except SystemExit as exc:  # a job stopped by a signal (130), bad input found by a job or the sweep (2)
            if exc.code == interrupt.EXIT_CODE:
                line = stopped()
                if line:
                    print(line, file=sys.stderr)
            return exc.code if isinstance(exc.code, int) else 1
        return LAST.get("exit_code", code)  # a sweep's: 1 when a run failed (cli/callbacks.py)
    from mlo_bench.suite.run.job import run_job
    from mlo_bench.suite.run.plan import ConfigError, prepare
    from mlo_bench.suite.run.records import BUSY

    try:
        plan = prepare(compose(args))
    except ConfigError as exc:
        return _fail("run", str(exc))
    except Exception as exc:  # noqa: BLE001 - Hydra/OmegaConf composition errors
        return _fail("run", first_line(exc))
    record = run_job(plan)
    return {"ok": 0, BUSY: 3, "interrupted": interrupt.EXIT_CODE}.get(record["status"], 1)


def _run_help() -> int:
    from omegaconf import OmegaConf

    registry.discover()
    cfg = compose([])
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


def cmd_demo(args: list[str]) -> int:
    from mlo_bench.suite.cli.demo import main as demo_main

    return demo_main(args, cmd_run)


def cmd_verify(args: list[str]) -> int:
    from mlo_bench.suite.certify.verify import main as verify_main

    return verify_main(args)


def cmd_report(args: list[str]) -> int:
    from mlo_bench.suite.report.command import main as report_main

    return report_main(args)


COMMANDS = {"list": cmd_list, "run": cmd_run, "demo": cmd_demo, "verify": cmd_verify, "report": cmd_report}


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
    try:
        return COMMANDS[command](rest)
    except KeyboardInterrupt:  # Ctrl-C outside a run's step boundaries (a second one, or verify, list, report)
        print(f"mlo-bench {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
