"""The report's convergence section (suite/report/sections/convergence.py): median and 20–80% band over seeds against
time and oracle calls, the best config of a grid per backend × method, and the ranking sentence by time to the
tolerance — from synthetic runs whose traces have known values."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlo_bench.suite.report import specs
from mlo_bench.suite.report.command import main
from mlo_bench.suite.report.sections import convergence
from mlo_bench.suite.run.execute import trace_csv
from mlo_bench.suite.run.records import commit_run, read_records

TASK = "bilevel_quadratic"  # a registered task that declares convergence metrics; the report itself names none


def _write(results: Path, method: str, seed: int, gaps: list[float], dt: float, lr: float = 0.1,
           backend: str = "jax", per_step: tuple[int, int] = (1, 3)) -> None:
    config = {"task": {"name": TASK, "outer": {"lr": lr}}, "backend": {"name": backend}, "method": {"name": method},
              "seed": seed, "steps": 10 * len(gaps), "inner_steps": per_step[0], "eval_every": 10}
    record = {"schema": 1, "run_id": None, "task": TASK, "backend": backend, "method": method, "seed": seed,
              "status": "ok", "reason": None, "config": config, "config_hash": f"{method}-{lr}-{seed}-{backend}",
              "metrics": {"outer_loss": 1.0, "inner_step_evals": per_step[0], "gradient_count": per_step[1]},
              "provenance": {"cpu_count": 2, "loadavg_start": 0.1, "loadavg_end": 0.1}}
    rows = [{"step": 10 * (i + 1), "elapsed_s": dt * (i + 1), "suboptimality": g} for i, g in enumerate(gaps)]
    commit_run(results, f"{method}-{lr}-{seed}-{backend}", record, {"trace.csv": trace_csv(rows)})


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("convergence")
    for seed in range(5):  # fast: reaches 1e-3 at its 3rd point (0.3 s); seeds spread around the median
        _write(results, "amigo", seed, [1e-1, 1e-2, 1e-3 * (0.5 + 0.25 * seed), 1e-4], dt=0.1, per_step=(10, 12))
        _write(results, "soba", seed, [1e-1, 5e-2, 1e-2, 1e-3 * (0.5 + 0.25 * seed)], dt=0.2)
        _write(results, "soba", seed, [1.0, 1.0, 1.0, 1.0], dt=0.2, lr=0.3)  # a worse config of the grid
        _write(results, "f2sa", seed, [1.0, 0.5, 0.3, 0.2], dt=0.1)  # never reaches the tolerance
    return results


def test_the_task_declares_a_tolerance():
    assert specs.paper(TASK).convergence["suboptimality"] > 0


def test_median_band_best_config_and_oracle_calls(results):
    records = read_records([results])
    best, configs = convergence.lines(TASK, records)
    assert configs == {"jax · amigo": 1, "jax · f2sa": 1, "jax · soba": 2}
    assert all(r.config["task"]["outer"]["lr"] == 0.1 for r in best["jax · soba"])  # the grid's better config
    c = convergence.curve(best["jax · amigo"], "suboptimality", convergence.record_paths(records))
    third = c.iloc[2]
    assert third["median"] == pytest.approx(1e-3) and third["n"] == 5
    assert third["lo"] < third["median"] < third["hi"]
    assert third["calls"] == 30 * (10 + 12)  # 30 outer steps × (inner gradients + the hypergradient's count)
    assert convergence.time_to(c, 1e-3) == pytest.approx(0.3)


def test_the_ranking_sentence_is_computed(results):
    records = read_records([results])
    best, _ = convergence.lines(TASK, records)
    data = {k: convergence.curve(v, "suboptimality", convergence.record_paths(records)) for k, v in best.items()}
    text = convergence.ranking(TASK, "suboptimality", 1e-3, data)
    assert text.index("jax · amigo") < text.index("jax · soba") < text.index("not reached")
    assert "f2sa" in text.split("not reached")[1]


def test_the_report_has_the_section_and_its_figure(results, tmp_path):
    out = tmp_path / "report"
    assert main([str(results), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert f"{TASK}: convergence of the solvers" in md and "ranked by the time" in md
    assert (out / "figures" / f"{TASK.replace('_', '-')}-suboptimality-convergence.png").exists() or list(
        (out / "figures").glob("*convergence*.png"))


def test_the_figure_colours_by_method_and_styles_by_backend(tmp_path, monkeypatch):
    """Nine solvers on two backends: a colour per method (18 colours would repeat), a line style per backend."""
    import pandas as pd
    from matplotlib.figure import Figure as MplFigure

    from mlo_bench.suite.report.sections import convergence

    drawn = {}
    original = MplFigure.savefig

    def savefig(self, *args, **kwargs):
        drawn["fig"] = self
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MplFigure, "savefig", savefig)
    curve = pd.DataFrame({"step": [1, 2], "median": [1.0, 0.5], "lo": [0.9, 0.4], "hi": [1.1, 0.6],
                          "time_s": [0.1, 0.2], "calls": [10, 20], "n": [3, 3]})
    data = {f"{b} · {m}": curve for b in ("jax", "torch") for m in ("saba", "soba", "srba")}
    convergence.figure("t", "suboptimality", data, tmp_path / "f.png")
    lines = {ln.get_label(): ln for ln in drawn["fig"].axes[0].get_lines()}
    color, style = (lambda label: lines[label].get_color()), (lambda label: lines[label].get_linestyle())
    assert color("jax · saba") == color("torch · saba") != color("jax · soba")
    assert style("jax · saba") == style("jax · srba") != style("torch · saba")


def test_a_repeat_of_a_config_and_seed_counts_once(results, tmp_path):
    """A grid point equal to the experiment's defaults, in another results directory, repeats its seeds: each seed
    of a config counts once (the later run), so the median is over distinct seeds."""
    for seed in range(3):
        _write(tmp_path, "amigo", seed, [1e-1, 1e-2, 1e-3 * (0.5 + 0.25 * seed), 1e-4], dt=0.1, per_step=(10, 12))
    records = read_records([results, tmp_path])
    best, configs = convergence.lines(TASK, records)
    assert configs["jax · amigo"] == 1 and len(best["jax · amigo"]) == 5
    c = convergence.curve(best["jax · amigo"], "suboptimality", convergence.record_paths(records))
    assert c.iloc[2]["n"] == 5 and c.iloc[2]["median"] == pytest.approx(1e-3)
