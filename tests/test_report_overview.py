"""The report's opening (issue 26): time to a result with compile counted, the compiled-versus-eager crossover, the
quality–time Pareto front, the per-task figure, and folded dumps in both writers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mlo_bench.suite.report.render import figures, frontier, html, markdown
from mlo_bench.suite.report.render.doc import Cards, Details, Document, Figure, Para, Section, Table, cell
from mlo_bench.suite.report.sections import figures_in
from mlo_bench.suite.report.sections.choice import Row, crossover, front, verdict


def _row(backend, label, quality, step, compile_s=0.0, steps=300.0, memory=1e5):
    return Row(backend, label, {"quality": quality, "time": step, "memory": memory}, n=2, compile=compile_s,
               steps=steps)


def test_time_to_result_counts_compile_and_the_crossover_is_delta_compile_over_delta_step():
    eager, compiled = _row("torch", "cg", 0.80, 3e-3), _row("jax", "cg", 0.80, 1e-3, compile_s=2.0)
    assert eager.ttr == pytest.approx(0.9) and compiled.ttr == pytest.approx(2.3)
    assert crossover(compiled, eager) == pytest.approx(1000.0)
    assert math.isnan(crossover(_row("jax", "cg", 0.8, 4e-3, compile_s=2.0), eager)), "a slower step never overtakes"
    pick, line = verdict("t", "setting A", [eager, compiled], "acc", "higher")
    assert pick is eager, "at 300 steps the eager one is done first, though its step is 3× slower"
    assert "**torch × cg**" in line and "**900 ms to a result** (300 × 3 ms, no compile)" in line
    assert "compiled **jax × cg** steps faster (1 ms vs 3 ms)" in line and "overtakes from **1,000 steps**" in line


def test_a_long_run_picks_the_compiled_engine_and_says_from_when_it_pays_off():
    eager = _row("torch", "cg", 0.80, 3e-3, steps=5000)
    compiled = _row("jax", "cg", 0.799, 1e-3, compile_s=2.0, steps=5000)
    worse = _row("naive", "cg", 0.5, 1e-4, steps=5000)  # fastest of all, but far from the best quality
    pick, line = verdict("t", "setting A", [eager, compiled, worse], "acc", "higher")
    assert pick is compiled and "**7 s to a result** (2 s compile + 5,000 × 1 ms)" in line
    assert "pays off against the fastest eager one, torch × cg (3 ms per step), from **1,000 steps**" in line
    assert "naive" not in line


def test_the_front_minimises_time_and_optimises_quality_in_its_direction():
    rows = [_row("a", "x", 0.9, 3.0), _row("b", "y", 0.8, 1.0), _row("c", "z", 0.7, 2.0), _row("d", "w", 0.95, 5.0)]
    assert [r.backend for r in front(rows, "higher")] == ["b", "a", "d"]
    assert [r.backend for r in front(rows, "lower")] == ["b", "c"], "lower is better: c beats b on quality"


def test_the_task_figure_is_a_small_palette_png_and_needs_two_points(tmp_path):
    if figures.available():
        pytest.skip(f"no figures here: {figures.available()}")
    from PIL import Image

    pts = pd.DataFrame([
        {"backend": b, "label": m, "time": t, "time_sd": 0.1 * t, "quality": q, "quality_sd": 0.01, "memory": mem,
         "n": 2, "front": f, "pick": p}
        for b, m, t, q, mem, f, p in (("torch", "cg", 3e-3, 0.8, 1e5, False, False),
                                      ("jax", "cg", 1e-3, 0.8, 4e6, True, True),
                                      ("naive", "unroll", 5e-4, 0.6, 2e4, True, False))])
    fig = frontier.frontier(pts, tmp_path / "t.png", "t · setting A", "acc", "higher", "peak_live_bytes")
    assert isinstance(fig, Figure) and "Pareto front" in fig.caption and "std" in fig.caption
    with Image.open(fig.path) as img:
        assert img.mode == "P" and 300 <= img.width <= 700, (img.mode, img.size)
    assert fig.path.stat().st_size < 60_000
    assert frontier.frontier(pts.iloc[:1], tmp_path / "one.png", "t", "acc", "higher", "peak_live_bytes") is None


def test_a_folded_section_keeps_its_heading_and_lead_in_view_in_both_writers(tmp_path):
    png = tmp_path / "f.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    sec = Section("Dump", folded=True).add(Para("The lead."), Table(["a"], [[cell("1")]]),
                                           Cards([[Figure(png, "cap"), Para("beside")]]))
    assert [type(b) for b in sec.shown()] == [Para, Details]
    assert sec.shown()[1].summary == "show 1 table, 1 card"
    assert figures_in(sec.blocks) == [sec.blocks[2].cards[0][0]], "a figure in cards is still the part's figure"
    doc = Document("r", sections=[sec])
    page = html.render(doc)
    assert page.index('id="dump"') < page.index("<p>The lead.</p>") < page.index("<details><summary>show 1 table")
    assert page.index("<details>") < page.index("<table>") < page.index("</details>")
    assert '<div class="cards"><div class="card">' in page
    md = markdown.render(doc, tmp_path)
    lead, rest = md.split("<details><summary>show 1 table, 1 card</summary>\n\n", 1)
    assert "## Dump" in lead and "The lead." in lead and "| a |" not in lead
    assert "| a |" in rest.split("</details>")[0] and "![cap](f.png)" in rest
