"""Where the main job's time goes: the README's first command, timed piece by piece, and every run's stages.

    python benchmarks/profile_main_job.py                 # the job's sweeps + report here, cold, in a temp dir
    python benchmarks/profile_main_job.py --install       # the whole command verbatim in a fresh clone (install too)
    python benchmarks/profile_main_job.py --records DIR   # only the table, from a results directory already written

The command is read from the README (its first ``bash`` block with ``mlo-bench demo`` or ``run``) and split at
``&&``; each piece is timed as it runs in one shell (so ``. .venv/bin/activate`` carries). Without ``--install`` the
pieces that install (everything before the first ``mlo-bench``) are skipped and this environment's ``mlo-bench`` runs
them, in an empty directory. Cold means what a newcomer meets: an empty results directory and an empty jax
compilation cache (``MLO_BENCH_JAX_CACHE`` pointed at a new directory; ``--warm`` keeps this machine's), and with
``--install`` an empty pip cache (``PIP_CACHE_DIR`` pointed at a new directory).

Then, per sweep, from its records: the runs' wall time (``provenance.start`` → ``end``) split into the stages each
run timed (``provenance.stages_s``: set-up, build, compile, the FLOP and byte counting, training, and each
measurement after training), the sweep's start-up (from the moment it could begin — the process start, or in
``mlo-bench demo`` the previous sweep's end — to its first run's start), the time between runs and after the last
one; a ``demo`` piece's report gets its own row. The table ends with the machine's load and a step-benchmark figure
(torch and naive × darts, ms per outer step) so a reader can scale the figures to their machine. ``--json FILE``
writes the same as data.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: each run's stages, in the order they happen; ``compile`` is shown without ``count_flops``, nested in it
STAGES = ("setup", "build", "compile", "count_flops", "count_bytes", "train", "sample_phases", "floor",
          "task_metrics", "evaluate", "hypergrad_check", "commit")
AFTER_TRAINING = ("count_flops", "count_bytes", "sample_phases", "floor", "task_metrics", "hypergrad_check", "commit")


def readme_command(readme: Path = ROOT / "README.md") -> str:
    """The README's main-job command: the first line of a bash block that runs ``mlo-bench demo`` or ``run``."""
    for block in re.findall(r"```bash\n(.*?)```", readme.read_text(), re.S):
        for line in block.splitlines():
            if "mlo-bench demo" in line or "mlo-bench run" in line:
                return line.strip()
    raise SystemExit("profile: error: README.md has no bash block with 'mlo-bench demo' or 'mlo-bench run'")


def pieces(command: str, install: bool) -> list[str]:
    parts = [p.strip() for p in command.split("&&")]
    if install:
        return parts
    first = next(i for i, p in enumerate(parts) if p.startswith("mlo-bench"))
    return parts[first:]


def run_timed(parts: list[str], cwd: Path, env: dict[str, str]) -> list[dict]:
    """Run ``parts`` in one bash, in order, stopping at the first failure; each piece's start, end and exit code."""
    log = cwd / ".profile-times"
    # ``|| rc=$?``: under ``set -e`` a bare failing command would end the shell inside ``__t`` before the failing
    # piece's row is written, and the failure would be blamed on the piece before it
    lines = ["__t() { local s=$(date +%s.%N) rc=0; \"$@\" || rc=$?; "
             "echo \"$s $(date +%s.%N) $rc\" >> " + shlex.quote(str(log)) + "; return $rc; }", "set -e"]
    lines += [f"__t {p}" for p in parts]
    proc = subprocess.run(["bash", "-c", "\n".join(lines)], cwd=cwd, env=env)
    out = []
    for part, row in zip(parts, log.read_text().splitlines() if log.exists() else [], strict=False):
        s, e, rc = row.split()
        out.append({"command": part, "start": float(s), "end": float(e), "rc": int(rc)})
    if proc.returncode:
        print(f"profile: the command stopped with exit {proc.returncode} at: {parts[len(out) - 1]}", file=sys.stderr)
    return out


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def read_records(results: Path) -> list[dict]:
    rows = []
    for path in sorted(results.glob("runs/*/record.json")):
        rec = json.loads(path.read_text())
        prov = rec.get("provenance", {})
        if "start" not in prov or "end" not in prov:
            continue
        rows.append({"task": rec["task"], "status": rec["status"], "start": _ts(prov["start"]),
                     "end": _ts(prov["end"]), "stages": prov.get("stages_s") or {},
                     "compile_s": (rec.get("metrics") or {}).get("compile_s") or 0.0,
                     "loadavg": prov.get("loadavg_max")})
    return sorted(rows, key=lambda r: r["start"])


def read_sweeps(results: Path) -> list[dict]:
    """Each sweep's name (its ``+experiment=``), start (``sweep.json``: the multirun began), end (``summary.json``)."""
    out = []
    for path in sorted(results.glob("multirun/*/sweep.json")):
        meta = json.loads(path.read_text())
        summary = path.with_name("summary.json")
        done = json.loads(summary.read_text()) if summary.exists() else {}
        end = done.get("end", meta["start"] + done["elapsed_s"] if "elapsed_s" in done else None)
        out.append({"name": label(" ".join(meta.get("argv") or [])), "start": meta["start"], "end": end})
    return sorted(out, key=lambda s: s["start"])


def split(piece: dict, sweeps: list[dict], records: list[dict]) -> list[dict]:
    """The rows of one piece of the command: one per sweep it ran (a ``mlo-bench demo`` runs several, then the
    report: a row of its own), else one for the piece. A sweep's start-up runs from the moment it could begin (the
    piece's process start for its first sweep, the previous sweep's end for the others) to its first run's start."""
    inside = [s for s in sweeps if s["end"] is not None and piece["start"] <= s["start"] <= piece["end"]]
    base = {"rc": piece["rc"]}
    if not inside:
        return [{"piece": label(piece["command"]), "wall": piece["end"] - piece["start"], **base}]
    rows, begin = [], piece["start"]
    for sweep in inside:
        runs = [r for r in records if sweep["start"] <= r["start"] <= sweep["end"]]
        rows.append({"piece": sweep["name"], "wall": sweep["end"] - begin, **base,
                     **summarise(runs, begin, sweep["end"])})
        begin = sweep["end"]
    if piece["end"] - begin > 1.0:  # what the piece did after its sweeps: the report (mlo-bench demo)
        rows.append({"piece": "report", "wall": piece["end"] - begin, **base})
    return rows


def summarise(runs: list[dict], start: float | None = None, end: float | None = None) -> dict:
    """Seconds of one sweep: start-up, between runs, after the last, and Σ over its runs of each stage."""
    out: dict[str, float] = {"runs": len(runs), "ok": sum(r["status"] == "ok" for r in runs)}
    if not runs:
        return out
    walls = [r["end"] - r["start"] for r in runs]
    out["in_runs"] = sum(walls)
    out["startup"] = runs[0]["start"] - start if start is not None else None
    out["between"] = sum(max(0.0, b["start"] - a["end"]) for a, b in zip(runs, runs[1:], strict=False))
    out["after_last"] = end - runs[-1]["end"] if end is not None else None
    for stage in STAGES:
        out[stage] = sum(r["stages"].get(stage, 0.0) for r in runs)
    out["compile"] -= out["count_flops"]  # nested in it, shown apart
    out["other_in_runs"] = out["in_runs"] - sum(out[s] for s in STAGES)
    out["after_training"] = sum(out[s] for s in AFTER_TRAINING)
    loads = [r["loadavg"] for r in runs if r["loadavg"] is not None]
    out["loadavg_max"] = max(loads) if loads else None
    return out


def stepbench(env: dict[str, str], python: str = sys.executable) -> str:
    cmd = [python, "-m", "mlo_bench.suite.measure.stepbench", "--backends", "torch,naive", "--methods",
           "darts", "--steps", "20", "--rounds", "5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return proc.stdout.strip() if proc.returncode == 0 else f"(stepbench failed: {proc.stderr.strip()[-200:]})"


COLUMNS = ("wall", "startup", "between", "after_last", "setup", "build", "compile", "train", "evaluate",
           "count_flops", "count_bytes", "sample_phases", "floor", "task_metrics", "hypergrad_check", "commit",
           "other_in_runs")


def table(rows: list[dict]) -> str:
    """Seconds per piece of the command (rows) and stage (columns); a total row; '' where not applicable."""
    def cell(v):
        return "" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))

    head = ["piece", "runs", "ok", *COLUMNS, "after training"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    total: dict[str, float] = {}
    for r in rows:
        vals = [r.get("runs"), r.get("ok"), *(r.get(c) for c in COLUMNS), r.get("after_training")]
        lines.append("| " + " | ".join([r["piece"], *map(cell, vals)]) + " |")
        for k in ("runs", "ok", *COLUMNS, "after_training"):
            if isinstance(r.get(k), int | float):
                total[k] = total.get(k, 0) + r[k]
    vals = [total.get("runs"), total.get("ok"), *(total.get(c) for c in COLUMNS), total.get("after_training")]
    lines.append("| " + " | ".join(["**total**", *map(cell, vals)]) + " |")
    return "\n".join(lines)


def label(command: str) -> str:
    """A row's name: the experiment a sweep runs, else the command itself (shortened)."""
    if command.startswith("mlo-bench report"):
        return "report"
    m = re.search(r"\+experiment=(\S+)", command)
    return m.group(1) if m else (command if len(command) <= 40 else command[:39] + "…")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--install", action="store_true", help="run the whole command in a fresh clone, install too")
    ap.add_argument("--workdir", type=Path, default=None, help="where to run (default: a new temp dir)")
    ap.add_argument("--warm", action="store_true", help="keep this machine's jax compilation cache")
    ap.add_argument("--records", type=Path, default=None, help="only tabulate this results directory")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    ap.add_argument("--no-stepbench", action="store_true")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    rows: list[dict] = []
    work = Path.cwd()
    if args.records is not None:
        rows.append({"piece": str(args.records), **summarise(read_records(args.records))})
    else:
        work = args.workdir or Path(tempfile.mkdtemp(prefix="mlo-bench-profile-"))
        work.mkdir(parents=True, exist_ok=True)
        if args.install:
            subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "mlo-bench")], check=True)
            env["PIP_CACHE_DIR"] = str(work / ".pip-cache")  # cold: no wheel this machine built or unpacked before
            work = work / "mlo-bench"
            env.pop("VIRTUAL_ENV", None)
        if not args.warm:
            env["MLO_BENCH_JAX_CACHE"] = str(work / ".jax-cache")
        t0 = time.time()
        timed = run_timed(pieces(readme_command(), args.install), work, env)
        records, sweeps = read_records(work / "results"), read_sweeps(work / "results")
        for piece in timed:
            rows += split(piece, sweeps, records)
        print(f"ran in {work} ({time.time() - t0:.0f} s)")
    load = os.getloadavg()
    print(table(rows))
    print(f"\nload average now {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min); "
          f"{os.cpu_count()} CPUs")
    venv_python = work / ".venv" / "bin" / "python" if args.records is None else None
    python = str(venv_python) if venv_python is not None and venv_python.exists() else sys.executable
    bench = "" if args.no_stepbench else stepbench(env, python)
    if bench:
        print("\nstep benchmark (ms per outer step, this machine):\n" + bench)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "loadavg": load, "stepbench": bench}, indent=1))
    return 0 if all(r.get("rc", 0) == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
