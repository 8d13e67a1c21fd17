"""The ``mlo-bench report`` command: its argument parser and ``main`` (exit 0 written, 2 bad input)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """Read run records into one tidy table and write a comparison report.

Writes into --out: results.parquet and results.csv (one row per run × metric), report.md, report.html (one
self-contained file: figures embedded, no external resources) and figures/*.png; with --bench, also bench.csv.
Runs that did not end ok are counted and listed with their reason; a corrupt record.json is reported by path and
skipped."""

EPILOG = """examples:
  mlo-bench report                                   results/ -> results/report/
  mlo-bench report /tmp/demo --out /tmp/demo/report
  pytest benchmarks --benchmark-json=bench.json && mlo-bench report --bench bench.json

exit codes: 0 report written; 2 bad input (no records, unreadable directory, bad --bench file)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlo-bench report", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="*", metavar="RESULTS_DIR", type=Path,
                   help="results directories (or run directories / record.json files) to read; default: results")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where to write the report; default: <first RESULTS_DIR>/report (results/report)")
    p.add_argument("--bench", type=Path, action="append", default=[], metavar="FILE",
                   help="pytest-benchmark JSON (pytest benchmarks --benchmark-json=FILE); repeatable")
    p.add_argument("--no-figures", action="store_true", help="skip the figures (faster; tables only)")
    return p


def main(args: list[str] | None = None) -> int:
    """The ``report`` command. Returns the exit code (0 written, 2 bad input)."""
    from mlo_bench.suite.report.build import InputError, build, print_done
    from mlo_bench.suite.report.sections.bench import BenchError

    try:
        ns = parser().parse_args(sys.argv[1:] if args is None else args)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed by argparse)
        return int(exc.code or 0)
    dirs = ns.dirs or [Path("results")]
    out = ns.out or dirs[0] / "report"
    if out.exists() and not out.is_dir():
        print(f"mlo-bench report: error: --out {out} exists and is not a directory", file=sys.stderr)
        return 2
    try:
        info = build(dirs, out, ns.bench, draw=not ns.no_figures)
    except (InputError, BenchError) as exc:
        print(f"mlo-bench report: error: {exc}", file=sys.stderr)
        return 2
    print_done(info)
    return 0
