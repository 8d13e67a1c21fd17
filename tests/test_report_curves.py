"""The report's trace curves (suite/report/sections/curves.py): the trace.csv columns a task declares in
``Paper.curves``, per variant, mean over seeds, read from synthetic runs whose traces have known values."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlo_bench.suite.report import specs
from mlo_bench.suite.report.command import main
from mlo_bench.suite.report.sections import curves
from mlo_bench.suite.run.execute import trace_csv
from mlo_bench.suite.run.records import commit_run, read_records

TASK = "darts"  # any registered task that declares curves; the report itself never names one


def _record(variant: str, method: str, seed: int, backend: str = "torch", steps: int = 4) -> dict:
    config = {"task": {"name": TASK, "channels": 4}, "backend": {"name": backend}, "method": {"name": method},
              "seed": seed, "steps": steps, "inner_steps": 1, "eval_every": 2, "variant": variant}
    declared = next(v for v in specs.paper(TASK).variants if v.name == variant)
    for key, value in declared.overrides.items():  # as +variant=NAME applies them (a record is what it ran)
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return {"schema": 1, "run_id": None, "task": TASK, "backend": backend, "method": method, "seed": seed,
            "status": "ok", "reason": None, "config": config, "config_hash": f"{variant}-{seed}",
            "metrics": {"outer_loss": 1.0, "derived_accuracy": 0.5, "skip_share": 0.0},
            "provenance": {"cpu_count": 2, "loadavg_start": 0.1, "loadavg_end": 0.1}}


def _write(results: Path, variant: str, method: str, seed: int, eig: list[float] | None, **kw) -> None:
    files = None
    if eig is not None:  # eig at steps 2, 4; outer_loss at every step (blank cells where a step measured nothing)
        rows = [{"step": s, "outer_loss": 2.0 - 0.1 * s, "elapsed_s": 0.1 * s} for s in (1, 2, 3, 4)]
        for row, e in zip(rows[1::2], eig, strict=True):
            row.update({"hessian_eig": e, "skip_share": 0.5 * seed})
        files = {"trace.csv": trace_csv(rows)}
    commit_run(results, f"{variant}-{seed}-{kw.get('backend', 'torch')}", _record(variant, method, seed, **kw), files)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("curves")
    _write(results, "darts-1", "darts", 0, [1.0, 2.0])
    _write(results, "darts-1", "darts", 1, [3.0, 4.0])
    _write(results, "original-darts", "darts", 0, [-1.0, -5.0])
    _write(results, "first-order", "first_order", 0, None)  # ran without eval_every: no trace
    _write(results, "darts-1", "darts", 0, [7.0, 7.0], steps=8)  # another config: its own group, not pooled
    return results


def test_task_declares_curves_the_trace_has():
    assert {"hessian_eig", "skip_share"} <= set(specs.paper(TASK).curves)


def test_curves_are_means_over_seeds_per_variant_and_groups_are_not_pooled(results):
    records = read_records([results])
    found, paths = curves.groups(TASK, records), curves.record_paths(records)
    lines, n_groups = found["torch"]
    assert n_groups == 2  # the 8-step run is a group of its own
    assert list(lines) == ["original-darts", "darts-1", "first-order"]  # declared order
    agg, n = curves.summarise(lines["darts-1"], "hessian_eig", paths)
    assert n == 2
    assert agg["step"].tolist() == [2, 4]
    assert agg["mean"].tolist() == pytest.approx([2.0, 3.0])  # (1 + 3) / 2, (2 + 4) / 2
    assert agg["std"].tolist() == pytest.approx([2 ** 0.5, 2 ** 0.5])
    skip, _ = curves.summarise(lines["darts-1"], "skip_share", paths)
    assert skip["mean"].tolist() == pytest.approx([0.25, 0.25])
    loss, _ = curves.summarise(lines["original-darts"], "outer_loss", paths)
    assert loss["step"].tolist() == [1, 2, 3, 4]  # rows where another metric is blank still count for this one
    assert curves.summarise(lines["first-order"], "hessian_eig", paths)[1] == 0


def test_report_has_the_curve_section_table_and_figure(results, tmp_path):
    out = tmp_path / "report"
    assert main([str(results), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    section = md[md.index(f"## {TASK}: curves during training"):]
    assert "1 other group(s) of runs on torch not drawn" in section
    row = next(line for line in section.splitlines() if "**darts-1**" in line)
    assert "2 (step 2) → 3 (step 4) (2)" in row
    assert "no trace" in next(line for line in section.splitlines() if "**first-order**" in line)
    png = out / "figures" / f"{TASK}-curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "skip_share" in md[md.index("Rows: the variants"):]  # the skip share is also a column of the paper table


def test_a_task_without_curves_gets_no_section(results, monkeypatch):
    paper = specs.paper(TASK)
    monkeypatch.setattr(specs, "paper", lambda task: type(paper)(**{**paper.__dict__, "curves": ()}))
    assert curves.section(TASK, read_records([results]), None) is None
