"""The report as a reader meets it: corrupt records skipped by path, metrics of every kind, a template task's own
paper table found in the report, runs timed under load flagged, and report.html rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlo_bench.suite.plugins import registry
from mlo_bench.suite.report.command import main
from mlo_bench.suite.run.records import commit_run, read_records
from mlo_bench.tasks._template_paper import TemplateTaskWithPaper


def _record(task: str, backend: str, method: str, seed: int, metrics: dict, inner_steps: int = 1,
            provenance: dict | None = None, **task_knobs) -> dict:
    config = {"task": {"name": task, **task_knobs}, "backend": {"name": backend}, "method": {"name": method},
              "seed": seed, "steps": 50, "inner_steps": inner_steps, "dtype": "float32"}
    return {"schema": 1, "run_id": None, "task": task, "backend": backend, "method": method, "seed": seed,
            "status": "ok", "reason": None, "config": config, "config_hash": f"{task}{backend}{method}{seed}",
            "metrics": {"time_inner_s": 1e-3, "time_hypergrad_s": 2e-3, "time_outer_s": 1e-4, **metrics},
            "provenance": provenance or {}}


def _mwn_records(rng: np.random.Generator, provenance: dict | None = None) -> list[dict]:
    out = []
    for backend, method in (("torch", "darts"), ("torch", "cg"), ("jax", "darts")):
        for seed in range(2):
            out.append(_record("mwn", backend, method, seed, {
                "test_accuracy": 0.7 + 0.01 * rng.standard_normal(), "per_class_accuracy": [0.9, 0.5, 0.1],
                "train_class_sizes": [100, 10, 1], "clamped_classes": 0, "noisy_labels": 3,
                "genotype": "normal: sep_conv_3x3 x2, skip_connect", "peak_live_bytes": 1e5,
                "hypergrad_rel_error": 0.1, "time_total_s": 1.0}, provenance=provenance,
                imbalance_factor=100.0, reweight=True, dataset="digits"))
    return out


def _commit(results: Path, records: list[dict]) -> Path:
    for i, rec in enumerate(records):
        commit_run(results, f"run-{i:03d}-{rec['task']}-{rec['backend']}-{rec['method']}-s{rec['seed']}", rec)
    return results


def test_records_with_bad_config_or_null_metrics_are_reported_by_path_and_skipped(tmp_path, capsys):
    results = _commit(tmp_path / "r", _mwn_records(np.random.default_rng(0)))
    bad = {"config-is-a-list": {**_mwn_records(np.random.default_rng(1))[0], "config": ["not", "a", "mapping"]},
           "metrics-null": {**_mwn_records(np.random.default_rng(2))[0], "metrics": None},
           "provenance-string": {**_mwn_records(np.random.default_rng(3))[0], "provenance": "x"}}
    for name, rec in bad.items():
        (results / "runs" / name).mkdir()
        (results / "runs" / name / "record.json").write_text(json.dumps(rec))
    with pytest.warns(UserWarning, match="not a run record"):
        assert len(read_records([results])) == 6
    assert main([str(results), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "**6 runs**" in md and "3 corrupt record file(s) skipped" in md
    for name in bad:
        assert f"{name}/record.json" in md
    assert "'config' is list" in md and "'metrics' is NoneType" in md
    assert "3 corrupt skipped" in capsys.readouterr().out


def test_list_and_text_metrics_and_diagnostics_are_never_ranked_or_plotted(tmp_path):
    results = _commit(tmp_path / "r", _mwn_records(np.random.default_rng(0)))
    assert main([str(results), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| backend | method | runs |"))
    assert "test_accuracy ↑" in header and "hypergrad_rel_error ↓" in header
    for diagnostic in ("per_class_accuracy", "train_class_sizes", "clamped_classes", "noisy_labels", "genotype"):
        assert diagnostic not in header, diagnostic
    frame = pd.read_csv(tmp_path / "out" / "results.csv")
    assert "per_class_accuracy.2" in set(frame["metric"]), "lists are spread into the tidy table"
    assert "genotype" not in set(frame["metric"]), "text stays in the record"
    assert frame["value"].map(lambda v: isinstance(v, float)).all()


def test_a_template_task_declares_its_paper_table_and_the_report_finds_it(tmp_path, monkeypatch):
    registry.discover()
    monkeypatch.setitem(registry._REGISTRY["task"], "template", TemplateTaskWithPaper)
    rng = np.random.default_rng(0)
    records = []
    for n in (64, 128):
        for seed in range(3):
            shift = 0.1 * rng.standard_normal()
            for method, inner, mse in (("cg", 1, 1.0), ("unroll", 1, 1.3)):
                records.append(_record("template", "torch", method, seed, {
                    "val_mse": mse + shift + 0.01 * rng.standard_normal(), "time_total_s": 1.0 + 0.1 * inner},
                    inner_steps=inner, n=n))
    results = _commit(tmp_path / "r", records)
    assert main([str(results), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    section = md.split("## template: Template paper table: implicit vs unrolled", 1)[1].split("\n## ", 1)[0]
    assert "val_mse ↓ · n 64" in section and "val_mse ↓ · n 128" in section
    assert "**implicit reaches a lower validation error than unrolled** — supported" in section
    assert "(paired, n=3)" in section
    assert "val_mse by row of the table above" in section, "the table's declared figure sits beside it"
    choice = md.split("## Which one should I use?", 1)[1].split("\n## ", 1)[0]
    assert "template/setting" in choice and "`val_mse`" in choice


def test_runs_timed_under_load_are_flagged(tmp_path):
    busy = {"loadavg_start": 3.5, "loadavg_end": 4.1, "cpu_count": 2}
    records = _mwn_records(np.random.default_rng(0), provenance=busy)[:2] + _mwn_records(
        np.random.default_rng(1), provenance={"loadavg_start": 0.5, "loadavg_end": 0.6, "cpu_count": 2})[2:]
    results = _commit(tmp_path / "r", records)
    assert main([str(results), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "**2 of 6 runs were timed under load**" in md
    timing = md.split("## Timing", 1)[1].split("\n## ", 1)[0]
    assert "2 run(s) timed under load" in timing and "load 2.05 per core" in timing


CHECK = """<script>window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const box = el => { if (!el) return "none"; const r = el.getBoundingClientRect();
    return `${Math.round(r.left)},${Math.round(r.top)},${Math.round(r.right)},${Math.round(r.bottom)}`; };
  const fig = document.querySelector(".cards .card img");
  const line = document.querySelector(".cards .card li");
  const out = document.createElement("div"); out.id = "imgcheck";
  out.textContent = `images ${ok}/${imgs.length} tables ${document.querySelectorAll("table").length} ` +
    `view ${window.innerWidth}x${window.innerHeight} figure ${box(fig)} sentence ${box(line)} ` +
    `open ${document.querySelectorAll("details[open]").length} folds ${document.querySelectorAll("details").length} ` +
    `wide ${document.documentElement.scrollWidth}`;
  document.body.appendChild(out);
});</script>"""


def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _timed_records() -> list[dict]:
    """Two eager combinations and one compiled one of equal quality: the compiled one steps 3× faster but compiles
    for 2 s, so at 300 steps the eager torch × darts is done first and jax × darts overtakes from 1,000 steps."""
    out = []
    for backend, method, step, compile_s, acc in (("torch", "darts", 3e-3, 0.0, 0.700), ("torch", "cg", 4e-3, 0.0,
                                                   0.702), ("jax", "darts", 1e-3, 2.0, 0.701)):
        for seed in range(2):
            out.append(_record("mwn", backend, method, seed, {
                "test_accuracy": acc + 0.001 * seed, "per_class_accuracy": [0.9, 0.5, 0.1], "noisy_labels": 3,
                "peak_live_bytes": 1e5 * (1 + seed + (method == "cg")), "hypergrad_rel_error": 0.1,
                "time_step_s": step, "compile_s": compile_s, "steps_done": 300, "time_total_s": 300 * step},
                imbalance_factor=100.0, reweight=True, dataset="digits"))
    return out


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_report_html_first_screen_is_the_figure_and_the_sentences_in_headless_chromium(tmp_path):
    results = _commit(tmp_path / "r", _timed_records())
    out = tmp_path / "out"
    assert main([str(results), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    n_images = html.count("<img ")
    assert n_images >= 2
    page = tmp_path / "page.html"
    page.write_text(html.replace("</body>", CHECK + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--window-size=1400,900"]
    dom = subprocess.run([_chromium(), *flags, "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'id="imgcheck">images (\d+)/(\d+) tables (\d+) view (\d+)x(\d+) figure (\S+) sentence '
                      r'(\S+) open (\d+) folds (\d+) wide (\d+)<', dom.stdout)
    assert found, dom.stderr[-2000:]
    ok, total, tables, width, height = map(int, found.groups()[:5])
    assert ok == total == n_images, "every embedded figure decodes in the browser"
    assert tables >= 3 and "Which one should I use?" in dom.stdout
    assert width == 1400 and 700 <= height <= 900, (width, height)
    fig_box, line_box = (tuple(map(int, b.split(","))) for b in found.groups()[5:7])
    for name, (left, top, right, bottom) in (("figure", fig_box), ("sentence", line_box)):
        assert 0 <= left < right <= width and 0 <= top < bottom <= height, f"the {name} is off the first screen"
    assert fig_box[3] <= line_box[1], "the sentence is under its figure"
    assert int(found.group(8)) == 0 < int(found.group(9)), "the dumps are folded, none open"
    assert int(found.group(10)) <= width, "nothing scrolls sideways (the contents line wraps between its links)"
    nav = re.search(r'<nav class="toc">(.*?)</nav>', html, re.S).group(1)
    assert nav.count("<a ") >= 3 and nav.count("</a> <a ") == nav.count("<a ") - 1, "a break between every link"
    first = re.search(r'<div class="card">.*?</div>', dom.stdout, re.S).group(0)
    assert "<img " in first and "overview-mwn" not in first  # embedded, not linked
    sentence = re.sub(r"<[^>]+>", "", re.search(r"<li>(.*?)</li>", first, re.S).group(1))
    assert "torch × darts" in sentence and "to a result" in sentence and "900 ms" in sentence, sentence
    assert "jax × darts" in sentence and "1,000 steps" in sentence, "the compiled engine's crossover, computed"
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, f"--screenshot={shot}", (out / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("L"))
    assert pixels.shape == (900, 1400) and pixels.std() > 5, "the page rendered content, not a blank screen"


def test_pareto_front_and_the_computed_sentence():
    from mlo_bench.suite.report.sections.choice import Row, mark_pareto, sentence

    rows = [Row("torch", "cg", {"quality": 0.80, "time": 2.0, "memory": 10.0}),
            Row("jax", "darts", {"quality": 0.795, "time": 1.0, "memory": 10.0}),   # within 1%, fastest
            Row("naive", "unroll", {"quality": 0.70, "time": 1.5, "memory": 20.0}),  # dominated by jax × darts
            Row("torch", "neumann", {"quality": 0.70, "time": 0.5, "memory": 30.0})]  # fastest, far less accurate
    mark_pareto(rows, {"quality": "higher", "time": "lower", "memory": "lower"})
    assert [r.pareto for r in rows] == [True, True, False, True]
    line = sentence("t", "setting A", rows, "test_accuracy", "higher")
    assert "**jax × darts** is the fastest per outer step" in line and "within 1% of the best `test_accuracy`" in line
    assert "torch × cg" in line, "the best one is named beside the pick"
