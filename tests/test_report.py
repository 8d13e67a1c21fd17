"""`mlo-bench report`: tidy tables, Markdown/HTML/figures, failures never dropped, claims verdicts, --bench input."""

from __future__ import annotations

import base64
import copy
import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlo_bench.suite.cli import main as cli_main
from mlo_bench.suite.report import verdicts as V
from mlo_bench.suite.report.command import main
from mlo_bench.suite.report.sections import claims
from mlo_bench.suite.report.stats import loglog_slope, ratio_interval
from mlo_bench.suite.report.tidy import ID_COLUMNS, tidy
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare
from mlo_bench.suite.run.records import commit_run, read_records

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METHODS = ("cg", "exact", "darts")


def _run(results: Path, *overrides: str) -> dict:
    return execute(prepare(compose(["task.d=8", "steps=3", "progress=false", f"results_dir={results}",
                                     *overrides])))


def _synthetic(results: Path, base: dict, run_id: str, **changes) -> dict:
    """A record shaped like a real one (copied from ``base``), with ``changes`` applied, committed to ``results``."""
    rec = copy.deepcopy(base)
    rec.pop("_path", None)
    metrics = changes.pop("metrics", None)
    rec.update(changes)
    if metrics is not None:
        rec["metrics"] = metrics
    commit_run(results, run_id, rec)
    return rec


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A small real sweep (3 methods × 2 seeds; neumann and unroll with seed 0 only) + a synthetic diverged run
    (neumann, seed 1), an unsupported run on another backend, and one corrupt record.json."""
    results = tmp_path_factory.mktemp("results")
    for method in METHODS:
        for seed in (0, 1):
            rec = _run(results, f"method={method}", f"seed={seed}")
            assert rec["status"] == "ok", rec["reason"]
    assert _run(results, "method=unroll", "seed=0")["status"] == "ok"
    base = _run(results, "method=neumann", "seed=0")
    _synthetic(results, base, "synthetic-diverged", seed=1, status="diverged",
               reason="non-finite hypergradient at step 7",
               metrics={**base["metrics"], "outer_loss": None, "diverged_step": 7})
    _synthetic(results, base, "synthetic-unsupported", backend="nosuchbackend", status="unsupported",
               reason="backend nosuchbackend is not installed here (ModuleNotFoundError)", metrics={})
    broken = results / "runs" / "broken-run"
    broken.mkdir()
    (broken / "record.json").write_text('{"status": "ok", "metrics": {')
    return results


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert main([str(sweep), "--out", str(out)]) == 0
    return out


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        for key in ("src", "href"):
            value = attrs.get(key)
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)


def test_every_file_is_written_atomically(report):
    for name in ("results.parquet", "results.csv", "report.md", "report.html"):
        assert (report / name).stat().st_size > 0, name
    figures = sorted((report / "figures").glob("*.png"))
    assert {p.name.rsplit("-", 1)[-1] for p in figures} >= {"metrics.png", "cost.png"}
    assert any(p.name.endswith("quality-vs-cost.png") for p in figures)
    assert not list(report.rglob("*.tmp")), "a temporary file was left behind"


def test_html_is_one_self_contained_file_with_decodable_pngs(report):
    from PIL import Image

    text = (report / "report.html").read_text()
    parser = _Images()
    parser.feed(text)
    assert not parser.external, f"external resources: {parser.external}"
    assert "script" not in parser.tags and "link" not in parser.tags
    assert len(parser.images) == len(list((report / "figures").glob("*.png"))) >= 3
    for src in parser.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        data = base64.b64decode(src[len(prefix):], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "PNG" and img.width > 0 and img.height > 0


def test_the_report_is_its_parts_in_order_each_of_one_shape(sweep, report, tmp_path):
    """Each part of ``build.PARTS`` is ``part(ctx: Context) -> Rendered``, runs alone on a context it leaves as it
    was (without figures: draws none), and the report's sections are theirs, in that order."""
    import typing

    from mlo_bench.suite.report import build
    from mlo_bench.suite.report.sections import Context, Rendered

    loaded = build.load([sweep])
    ctx = build.context(loaded.records, tidy(loaded.records), tmp_path, loaded.corrupt, draw=False)
    wide = ctx.wide.copy()
    titles = []
    for part in build.PARTS:
        assert typing.get_type_hints(part) == {"ctx": Context, "return": Rendered}, part.__module__
        got = part(ctx)
        assert isinstance(got, Rendered) and got.figures == [], part.__module__
        titles += [s.title for s in got.sections]
    pd.testing.assert_frame_equal(ctx.wide, wide)
    md = (report / "report.md").read_text()
    assert titles == [line.split(" ", 1)[1] for line in md.splitlines() if line.startswith(("## ", "### "))]


def test_tidy_table_round_trips_through_csv_and_parquet(sweep, report):
    with pytest.warns(UserWarning, match="broken-run"):
        expected = tidy(read_records([sweep]))
    for name, reader in (("results.csv", pd.read_csv), ("results.parquet", pd.read_parquet)):
        got = reader(report / name)
        assert list(got.columns) == list(expected.columns), name
        assert list(got.columns[: len(ID_COLUMNS)]) == ID_COLUMNS
        assert "task.d" in got.columns and (got["task.d"] == 8).all()
        assert list(got["run_id"]) == list(expected["run_id"]) and list(got["metric"].fillna("")) == list(
            expected["metric"].fillna(""))
        np.testing.assert_allclose(got["value"].to_numpy(float), expected["value"].to_numpy(float), rtol=1e-12,
                                   equal_nan=True)


def test_every_record_is_in_the_table_and_none_is_silently_dropped(sweep, report):
    got = pd.read_csv(report / "results.csv")
    runs = got.drop_duplicates("run_id").set_index("run_id")
    assert len(runs) == 2 * len(METHODS) + 4, "every readable record (ok or not) must be a row"
    assert runs.loc["synthetic-diverged", "status"] == "diverged"
    assert runs.loc["synthetic-unsupported", "status"] == "unsupported"
    assert "broken-run" not in runs.index
    md = (report / "report.md").read_text()
    assert "**10 runs**: 8 ok, 1 diverged, 1 unsupported" in md
    assert "non-finite hypergradient at step 7" in md and "nosuchbackend is not installed here" in md
    assert "1 corrupt record file(s) skipped" in md and "broken-run/record.json" in md
    html_text = (report / "report.html").read_text()
    assert "broken-run/record.json" in html_text and "non-finite hypergradient at step 7" in html_text


def test_partial_sweep_and_best_values_are_shown(report):
    md = (report / "report.md").read_text()
    assert "torch × unroll: 1 of 2 seeds — no run for seed 1" in md
    assert "torch × neumann, seed 1: **diverged**" in md
    assert "nosuchbackend × cg: not run" in md, "with two backends, absent cells of the grid are listed"
    table = md.split("| backend | method | runs |", 1)[1].split("\n\n", 1)[0]
    header = ("| backend | method | runs |" + md.split("| backend | method | runs |", 1)[1].splitlines()[0])
    columns = [c.strip() for c in header.strip("|").split("|")]
    col = columns.index("hypergrad_rel_error ↓")
    rows = {r.split("|")[2].strip(): [c.strip() for c in r.strip().strip("|").split("|")]
            for r in table.splitlines()[2:] if r.startswith("| torch ")}
    cells = {m: row[col] for m, row in rows.items()}
    means = {m: float(c.strip("*").split(" ")[0]) for m, c in cells.items() if c != "–"}
    best = min(means.values())
    bold = {m for m, c in cells.items() if c.startswith("**")}
    assert bold and bold == {m for m, v in means.items() if v == best}, cells
    assert bold <= {"exact", "cg"}, "an exact solve (or CG at d=8) has the lowest error"
    assert " ± " in cells["darts"] and cells["darts"].endswith("(2)"), "mean ± std (n) over seeds"
    assert cells["unroll"].endswith("(1)") and " ± " not in cells["unroll"]


@pytest.mark.parametrize("make", ["empty", "missing", "only_corrupt"])
def test_no_records_is_one_line_and_exit_2(tmp_path, capsys, make):
    target = tmp_path / "results"
    if make != "missing":
        target.mkdir()
    if make == "only_corrupt":
        (target / "runs" / "x").mkdir(parents=True)
        (target / "runs" / "x" / "record.json").write_text("{")
    code = cli_main(["report", str(target), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("mlo-bench report: error:"), err
    assert not (tmp_path / "out" / "report.html").exists()


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "--bench" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------------------
# paper claims


def test_claims_are_packaged_and_not_measured_or_not_compared_by_the_rule(sweep):
    table = claims.load_claims()
    assert len(table) >= 80 and {c.claim_id for c in table} >= {"betty-t1-darts1-mem", "betty-abstract-cplx"}
    with pytest.warns(UserWarning):
        results = claims.evaluate(table, read_records([sweep]))
    assert len(results) == len(table)
    by = {r.claim.claim_id: r for r in results}
    assert {r.verdict for r in results} == {V.NOT_MEASURED, V.NOT_COMPARED}
    assert {i for i, r in by.items() if r.verdict == V.NOT_COMPARED} == {"betty-t1-orig-mem", "betty-t1-orig-time",
                                                                         "betty-t4-base-mem", "betty-t4-base-time",
                                                                         "grangier-speed-base", "betty-t2-base-mem"}, \
        "absolute memory, time and throughput (steps/s) of the paper's hardware are left out by design"
    mem = by["betty-t1-darts1-mem"]
    assert "no ok run of mwn/darts-1, original-unrolled" in mem.why and "2051 / 2381" in mem.paper
    assert mem.owner == "mwn"
    cplx = by["betty-abstract-cplx"]
    assert "quadratic/materialised-chain" in cplx.why, "quadratic torch runs exist: only the naive side is missing"
    assert all(r.owner for r in results), "every claim of the reference list is declared by a task"
    assert "no ok run of weak_supervision" in by["betty-t3-rw-trec"].why, "declared by weak_supervision, not run"


def test_interval_statistics():
    ratio, lo, hi, na, nb = ratio_interval([2.0, 2.2, 1.8], [1.0, 1.1, 0.9])
    assert ratio == pytest.approx(2.0) and lo < 2.0 < hi and (na, nb) == (3, 3)
    assert math.isnan(ratio_interval([2.0], [1.0, 1.1])[1]), "a single seed gives no interval"
    slope, lo, hi, n = loglog_slope([1, 2, 4, 8], [3, 12, 48, 192])
    assert slope == pytest.approx(2.0) and lo == pytest.approx(2.0) and n == 4


# ----------------------------------------------------------------------------------------------------------------
# pytest-benchmark input


def _bench_json(path: Path) -> Path:
    def bench(backend, d, median):
        stats = {"min": median * 0.9, "max": median * 1.3, "mean": median * 1.05, "stddev": median * 0.1,
                 "median": median, "q1": median * 0.95, "q3": median * 1.1, "iqr": median * 0.15, "rounds": 7,
                 "iterations": 1, "outliers": "0;0", "ld15iqr": median, "hd15iqr": median, "ops": 1 / median,
                 "total": 7 * median}
        return {"group": "hypergradient cg", "name": f"test_hypergradient[{backend}-cg-{d}]",
                "fullname": f"benchmarks/test_hypergrad_bench.py::test_hypergradient[{backend}-cg-{d}]",
                "params": {"backend_name": backend, "method": "cg", "d": d}, "param": f"{backend}-cg-{d}",
                "extra_info": {"backend": backend, "method": "cg", "d": d}, "options": {}, "stats": stats}

    data = {"machine_info": {"cpu": {"brand_raw": "Test CPU"}}, "commit_info": {}, "datetime": "2026-01-01T00:00:00",
            "version": "5.2.3", "benchmarks": [bench("torch", 64, 4e-3), bench("jax", 64, 2e-3),
                                               bench("torch", 256, 8e-3), bench("jax", 256, 2e-2)]}
    path.write_text(json.dumps(data))
    return path


def test_bench_json_gets_its_own_section(sweep, tmp_path):
    bench = _bench_json(tmp_path / "bench.json")
    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out), "--bench", str(bench)]) == 0
    md = (out / "report.md").read_text()
    section = md.split("## Micro-benchmarks (pytest-benchmark)", 1)[1].split("\n## ", 1)[0]
    assert "4 benchmarks" in section and "Test CPU" in section
    rows = [r for r in section.splitlines() if r.startswith("| cg |")]
    assert len(rows) == 4
    jax64 = next(r for r in rows if "| 64 | jax |" in r)
    jax256 = next(r for r in rows if "| 256 | jax |" in r)
    assert "| 2 ms |" in jax64 and "| 7 |" in jax64 and "0.5×" in jax64, "median, rounds, ratio vs torch"
    assert "2.5×" in jax256
    assert (out / "figures" / "bench-scaling.png").read_bytes().startswith(PNG_SIGNATURE)
    saved = pd.read_csv(out / "bench.csv")
    assert sorted(saved["ratio_vs_torch"].round(3)) == [0.5, 1.0, 1.0, 2.5]


def test_bad_bench_file_is_exit_2(sweep, tmp_path, capsys):
    bad = tmp_path / "bench.json"
    bad.write_text('{"not": "a benchmark file"}')
    assert main([str(sweep), "--out", str(tmp_path / "out"), "--bench", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not pytest-benchmark JSON" in err
