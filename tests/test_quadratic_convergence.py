"""The quadratic oracle task's derived step sizes converge at every depth, and sustained growth ends a run diverged.

The step-size rule is tasks/quadratic.py's docstring; these tests check it on the runs themselves (the trace's
``outer_gap``), on the joint iteration matrix of the whole chain, and its input errors.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import make_task

from mlo_bench.suite.engine import loop
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare
from mlo_bench.tasks.quadratic import Quadratic, QuadraticConfig, coupling, lag_margin, outer_lr


def _run(tmp_path, *overrides):
    args = ["method=exact", "dtype=float64", "progress=false", "hypergrad_check=false", f"results_dir={tmp_path}",
            *overrides]
    return execute(prepare(compose(args)))


def _trace(record, column):
    rows = csv.DictReader((Path(record["_path"]).with_name("trace.csv")).open())
    return np.array([float(r[column]) for r in rows if r.get(column)])


@pytest.mark.parametrize("levels", [2, 3, 4, 5])
def test_the_outer_gap_shrinks_steadily_to_below_one_percent(tmp_path, levels):
    """At the defaults (derived step sizes, and the steps the task takes at this depth when none are given), every
    100-step window of the outer gap grows by at most 10%, and the last step's gap is below 1% of the first step's."""
    record = _run(tmp_path, "task.d=16", f"task.levels={levels}", "eval_every=1")
    assert record["status"] == "ok", record.get("reason")
    steps = Quadratic.DEFAULT_STEPS_BY_LEVELS[levels]
    assert record["config"]["steps"] == steps, "the record holds the steps taken"
    gap = _trace(record, "outer_gap")
    assert len(gap) == steps and np.all(gap > -1e-9)
    window = min(100, steps // 2)  # 100-step windows (50 in a 100-step run)
    growth = gap[window:] / gap[:-window]
    assert growth.max() <= 1.1, (int(growth.argmax()) + 1, float(growth.max()))
    assert gap[-1] < 0.01 * gap[0], (gap[0], gap[-1])


def test_steps_given_win_and_a_default_run_keeps_its_hash():
    """``steps`` null takes the task's default_steps; the plan's config holds the number, so the hash is the one of
    the same run with ``steps=`` given (records written before the key's default became null are found by resume);
    a task that declares none takes 100."""
    from mlo_bench.suite.run.records import config_hash

    deep = prepare(compose(["task.levels=4", "results_dir=/tmp/unused"]))
    assert deep.steps == 2000 and deep.config["steps"] == 2000
    assert prepare(compose(["task.levels=4", "steps=7", "results_dir=/tmp/unused"])).steps == 7
    default = prepare(compose(["results_dir=/tmp/unused"]))
    given = prepare(compose(["steps=100", "results_dir=/tmp/unused"]))
    assert default.steps == 100 and config_hash(default.config) == config_hash(given.config)
    mwn = prepare(compose(["task=mwn", "+preset=demo", "results_dir=/tmp/unused"]))
    assert mwn.steps == 300, "a preset's steps still win over the task's default"


def test_the_old_defaults_did_not_converge_at_three_levels(tmp_path):
    """The steps this rule replaced (inner 1.0, outer 0.01): the README's 3-level example of issue 24 — its gap grows
    over 100-step windows (up to 40×) and is still 40% of step 100's after 1,000 steps."""
    record = _run(tmp_path, "task.levels=3", "task.d=100", "steps=1000", "eval_every=100", "task.inner.lr=1.0",
                  "task.outer.lr=0.01")
    gap = _trace(record, "outer_gap")
    assert (gap[1:] / gap[:-1]).max() > 1.1 and gap[-1] > 0.01 * gap[0], gap


def _iteration_matrix(task, eta_in: float, eta_out: float) -> np.ndarray:
    """The run's outer step as one linear map of (x_0, …, x_{L−1}): one Gauss–Seidel SGD sweep down the lower levels,
    then an SGD step of x_0 on the exact hypergradient at the bottom level's iterate."""
    cfg, a = task.cfg, task.data()
    d, levels, s = cfg.d, cfg.levels, coupling(cfg)
    n = d * levels

    def block(k):
        return slice(k * d, (k + 1) * d)

    t = np.eye(n)
    for k in range(1, levels):
        step = np.eye(n)
        step[block(k), block(k)] -= eta_in * a[f"A{k}"]
        step[block(k), block(k - 1)] = eta_in * s * a[f"B{k}"]
        t = step @ t
    adjoint = np.eye(d)
    for k in range(1, levels):
        adjoint = adjoint @ (s * a[f"B{k}"].T @ np.linalg.inv(a[f"A{k}"]))
    step = np.eye(n)
    step[block(0), block(0)] *= 1 - eta_out * cfg.ridge
    step[block(0), block(levels - 1)] = -eta_out * adjoint
    return step @ t


@pytest.mark.parametrize("levels", [2, 3, 4, 5])
@pytest.mark.parametrize(("condition", "ridge"), [(10.0, 0.1), (30.0, 0.0), (3.0, 1.0)])
def test_the_derived_steps_keep_a_margin_of_two(levels, condition, ridge):
    """Spectral radius of the joint iteration < 1 at the derived steps, and still < 1 at 1.5× the outer step."""
    task = make_task(d=12, levels=levels, condition=condition, ridge=ridge)
    eta_in, eta_out = task.step_sizes()
    assert eta_in == pytest.approx(2 * condition / (condition + 1))
    for factor in (1.0, 1.5):
        radius = max(abs(np.linalg.eigvals(_iteration_matrix(task, eta_in, factor * eta_out))))
        assert radius < 1, (factor, radius)


def test_the_old_three_level_defaults_are_unstable():
    task = make_task(d=100, levels=3)
    assert max(abs(np.linalg.eigvals(_iteration_matrix(task, 1.0, 0.01)))) > 1
    eta_in, eta_out = task.step_sizes()
    assert max(abs(np.linalg.eigvals(_iteration_matrix(task, eta_in, eta_out)))) < 1


def test_the_outer_step_formula():
    cfg = QuadraticConfig(levels=2)
    assert outer_lr(cfg, 10.0) == 0.00999  # 1/(0.1 + 10²), three significant digits, rounded down
    assert lag_margin(1) == math.inf and lag_margin(2) == pytest.approx(2.0)
    cfg3 = QuadraticConfig(levels=3)
    assert outer_lr(cfg3, 6.0) == pytest.approx(0.5 * (2 / 11) * 2 / 36.1, rel=1e-2)
    assert outer_lr(cfg3, 6.0) <= 0.5 * (2 / 11) * 2 / 36.1
    task = make_task(d=12, levels=3)
    task.cfg.outer.lr, task.cfg.inner.lr = 0.003, 0.5
    assert task.step_sizes() == (0.5, 0.003)
    assert [lv.optimizer.lr for lv in task.levels()] == [0.003, 0.5, 0.5]


def test_a_null_step_with_adam_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match=r"task.outer.lr must be set for task.outer.name=adam"):
        prepare(compose(["task.outer.name=adam", f"results_dir={tmp_path}"]))
    plan = prepare(compose(["task.outer.name=adam", "task.outer.lr=0.01", f"results_dir={tmp_path}"]))
    assert plan is not None


def test_sustained_growth_below_the_explosion_limit_ends_diverged(tmp_path, monkeypatch):
    """A lower-level step past GD's stable range (2/λmax = 2: here 2.05, |1 − 2.05·1| = 1.05 per step) grows the outer
    loss ~10× every 30 steps: far below 10⁶× in 100 steps, so only the sustained-growth rule catches it."""
    overrides = ("task.d=6", "steps=100", "task.inner.lr=2.05")
    record = _run(tmp_path, *overrides)
    assert record["status"] == "diverged", record["status"]
    assert "consecutive logs" in record["reason"] and record["metrics"]["diverged_step"] < 100
    loss = _trace(record, "outer_loss")
    assert np.all(np.diff(loss[-loop.SUSTAINED_LOGS:]) > 0) and loss.max() < loop.GROWTH_LIMIT
    monkeypatch.setattr(loop, "SUSTAINED_LOGS", 10 ** 9)  # the explosion rule alone lets the same run end ok
    assert _run(tmp_path / "alone", *overrides, "repeat=1")["status"] == "ok"
    stable = _run(tmp_path / "stable", "task.d=6", "steps=100", "log_every=1")  # the defaults, checked every step
    assert stable["status"] == "ok"
