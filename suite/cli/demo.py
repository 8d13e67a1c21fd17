"""``mlo-bench demo``: the main job — the named sweeps of ``suite/conf/main_job.yaml``, in order, in one process,
then the report.

It is the same as running ``mlo-bench run -m +experiment=NAME`` for each and then ``mlo-bench report`` (the same
runs, records and report), minus what separate processes repeat: Python, Hydra, torch, jax and scikit-learn are
imported once, not six times, and jax's backend and torch's kernels are set up once (each sweep's process start was
5.5–8.8 s of the main job's 631 s cold, and the report's ≈ 4 s; in one process the sweeps' start-ups were 1.6–5.6 s,
Hydra composing and checking each sweep's jobs, and the cold job 469 s with install, 2026-12-03). Overrides
(``KEY=VALUE``) go to every sweep: the run keys make sense there (``results_dir=``, ``threads=``,
``hypergrad_check=``); the report reads
``<results_dir>`` and writes ``<results_dir>/report``.

Exit status: 2 bad input (one line, before any work: the first sweep checks every override); 130 interrupted (it
stops there; the same command again resumes: finished runs are not run again); otherwise every sweep runs and the
report is written, and the status is 1 when some run failed (as ``run -m``), 3 when a config was busy in another
process, else 0 — or the report's own status when it could not be written.
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = """usage: mlo-bench demo [KEY=VALUE ...]

The main job: every demo sweep listed in suite/conf/main_job.yaml, in one process, then the report
(<results_dir>/report). The sweeps: {names}.
KEY=VALUE overrides go to every sweep, e.g. results_dir=/tmp/demo threads=1.
Each sweep alone: mlo-bench run -m +experiment=NAME. Exit: 0 ok, 1 a run failed (the rest still ran and the report
is written), 2 bad input (nothing was run), 3 a config busy in another process, 130 interrupted (run it again to
resume)."""

MAIN_JOB = Path(__file__).resolve().parent.parent / "conf" / "main_job.yaml"


def experiments(path: Path = MAIN_JOB) -> list[str]:
    """The main job's sweeps, in order (``experiments:`` of ``main_job.yaml``)."""
    from omegaconf import OmegaConf

    return [str(name) for name in OmegaConf.load(path).experiments]


def results_dir(overrides: list[str]) -> Path:
    """Where the sweeps write: the last ``results_dir=`` override, else the config's default (``results``)."""
    given = [a.split("=", 1)[1] for a in overrides if a.split("=", 1)[0].lstrip("+") == "results_dir"]
    return Path(given[-1]) if given else Path("results")


def sweep_dir(results: Path, name: str) -> Path:
    """A new ``<results>/multirun/<time>-<name>`` for one sweep's ledger: Hydra's default is named by the second the
    sweep starts, and two sweeps of one process can start within one second (a resumed sweep takes less), which
    would then share one ledger and its counts."""
    import time

    base = results / "multirun" / f"{time.strftime('%Y%m%dT%H%M%S')}-{name}"
    path, n = base, 1
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


def main(args: list[str], run) -> int:
    """Run the main job with ``overrides``; ``run`` is ``mlo-bench run``'s entry (``cmd_run``)."""
    if any(a in ("-h", "--help") for a in args):
        print(USAGE.format(names=", ".join(experiments())))
        return 0
    bad = [a for a in args if "=" not in a or a.startswith("-") or a.lstrip("+").startswith("experiment=")]
    if bad:
        print(f"mlo-bench demo: error: {bad[0]!r} is not a KEY=VALUE override of a run key "
              "(the sweeps are those of suite/conf/main_job.yaml)", file=sys.stderr)
        return 2
    codes = []
    for name in experiments():
        print(f"[demo] sweep +experiment={name}", flush=True)
        code = run(["-m", f"+experiment={name}", *args, f"hydra.sweep.dir={sweep_dir(results_dir(args), name)}"])
        if code in (2, 130):
            return code
        codes.append(code)
    from mlo_bench.suite.report.command import main as report

    out = results_dir(args)
    code = report([str(out)])
    if code:
        return code
    return 1 if 1 in codes else (3 if 3 in codes else max(codes, default=0))
