"""The stochastic bilevel solvers (soba, ma_soba, amigo, stocbio, f2sa, bome, saba, srba, mrbo) on benchopt's problems
(bilevel_quadratic, logreg_hyper, data_cleaning): they approach x* on the quadratic, torch and jax agree after 10
steps in float64, the ground truths are right (finite differences; the suite's ``exact``), and the libsvm loader
reads and refuses files in one line."""

from __future__ import annotations

import numpy as np
import pytest

from mlo_bench.suite.cli import main
from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare
from mlo_bench.tasks.bilevel_quadratic import BilevelQuadraticConfig, problem
from mlo_bench.tasks.data import libsvm

SOLVERS = ["soba", "ma_soba", "amigo", "stocbio", "f2sa", "bome", "saba", "srba", "mrbo"]
#: benchmark_bilevel's inner steps per outer step (n_inner_steps) for each solver
INNER = {"soba": 1, "ma_soba": 1, "amigo": 10, "stocbio": 10, "f2sa": 10, "bome": 10, "saba": 1, "srba": 1, "mrbo": 1}
SMALL = {"dim_inner": 20, "dim_outer": 5, "n_inner": 256, "n_outer": 256}
SMALL_ARGS = ["task=bilevel_quadratic", *(f"task.{k}={v}" for k, v in SMALL.items())]


def _run(tmp_path, *args):
    return execute(prepare(compose([*args, "dtype=float64", "progress=false", f"results_dir={tmp_path}"])))


def test_the_quadratic_closed_form_is_the_value_functions_gradient_and_minimum():
    pb = problem(BilevelQuadraticConfig(**SMALL))
    x = np.random.default_rng(0).standard_normal(5)
    eye = 1e-6 * np.eye(5)
    fd = np.array([(pb.value(x + e) - pb.value(x - e)) / 2e-6 for e in eye])
    np.testing.assert_allclose(fd, pb.grad(x), atol=1e-7)
    assert np.linalg.norm(pb.grad(pb.x_star)) < 1e-10
    assert all(pb.value(pb.x_star + 0.1 * d) > pb.h_star for d in np.eye(5))


#: bome: full batches, below; saba and srba against soba on the epoch sampler: tests/test_variance_reduced.py
@pytest.mark.parametrize("solver", [s for s in SOLVERS if s not in ("bome", "saba", "srba")])
def test_each_solver_approaches_x_star_on_the_quadratic(tmp_path, solver):
    """600 outer steps at the defaults (stocbio and mrbo: α = 1, in benchmark_bilevel's grid; the default 0.1 with
    10 terms of their series underestimates H⁻¹ tenfold at μ = 0.1 and stalls: mrbo ends at 1.4× the initial gap):
    h(x) − h* falls below 0.3 of its value at x = 0. Measured (jax float64, seed 0): soba 0.19, ma_soba 0.08, amigo
    0.016, stocbio 0.09, f2sa 0.20, mrbo 0.27 of it (mrbo on the epoch sampler, its decaying steps the slowest)."""
    knobs = ["method.alpha=1.0"] if solver in ("stocbio", "mrbo") else []
    knobs += ["task.sampler=epoch"] if solver == "mrbo" else []
    record = _run(tmp_path, *SMALL_ARGS, "backend=jax", f"method={solver}", f"inner_steps={INNER[solver]}",
                  "steps=600", "eval_every=600", "hypergrad_check=false", *knobs)
    assert record["status"] == "ok", record.get("reason")
    pb = problem(BilevelQuadraticConfig(**SMALL))
    start = pb.value(np.zeros(5)) - pb.h_star
    assert 0 <= record["metrics"]["suboptimality"] < 0.3 * start


def test_bome_approaches_x_star_on_the_quadratic_with_full_batches(tmp_path):
    """BOME as benchmark_bilevel runs it (deterministic: the whole sample per step, ``task.batch_size=0``; 10 inner
    steps): 600 outer steps
    take h(x) − h* below 0.1 of its value at x = 0. Measured (jax float64, seed 0): 0.038 of it (minibatches of 64:
    2.7×, it drifts — docs/solvers.md)."""
    record = _run(tmp_path, *SMALL_ARGS, "task.batch_size=0", "backend=jax", "method=bome", "inner_steps=10",
                  "steps=600", "eval_every=600", "hypergrad_check=false")
    assert record["status"] == "ok", record.get("reason")
    pb = problem(BilevelQuadraticConfig(**SMALL))
    assert 0 <= record["metrics"]["suboptimality"] < 0.1 * (pb.value(np.zeros(5)) - pb.h_star)


def test_torch_and_jax_agree_on_every_solver_after_10_steps(capsys):
    pytest.importorskip("jax")
    code = main(["verify", *SMALL_ARGS, "task.sampler=epoch", "dtype=float64", "--steps", "10", "backend=torch,jax",
                 f"method={','.join(SOLVERS)}"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [line.split() for line in out.splitlines() if line.startswith("jax ")]
    assert sorted(r[1] for r in rows) == sorted(SOLVERS) and all(r[-1] == "pass" for r in rows), out


@pytest.mark.parametrize("solver", SOLVERS)
def test_the_solvers_declare_their_gradients_and_keep_their_state_shaped(solver):
    cls = registry.get("method", solver)
    assert cls().gradients(cls.Config(), 1) >= 2


def test_logreg_ground_truth_is_the_suites_exact_hypergradient(tmp_path):
    """The task's numpy ∇h (Newton + dense implicit solve) against the suite's ``exact`` method on torch float64 at
    the exact best response (the oracle check), and against finite differences of h."""
    from mlo_bench.tasks.logreg_hyper import LogRegConfig
    from mlo_bench.tasks.logreg_hyper import problem as logreg_problem

    record = _run(tmp_path, "task=logreg_hyper", "task.reg=single", "backend=torch", "method=exact", "steps=1")
    assert record["status"] == "ok", record.get("reason")
    assert record["metrics"]["hypergrad_rel_error"] < 1e-8
    pb = logreg_problem(LogRegConfig(reg="single"))
    x = np.array([-1.0])
    fd = (pb.value(x + 1e-6) - pb.value(x - 1e-6)) / 2e-6
    assert abs(fd - pb.grad(x)[0]) < 1e-7
    assert pb.h_star <= pb.value(x) and abs(pb.h_star - pb.value(pb.x_star)) < 1e-10


def _write_libsvm(path, rng, n, d):
    x = rng.standard_normal((n, d))
    y = np.where(x[:, 0] + 0.3 * rng.standard_normal(n) > 0, 1, -1)
    lines = [f"{y[i]} " + " ".join(f"{j + 1}:{x[i, j]:.6f}" for j in range(d) if abs(x[i, j]) > 0.2)
             for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def test_libsvm_files_are_read_and_logreg_runs_on_them(tmp_path):
    rng = np.random.default_rng(0)
    _write_libsvm(tmp_path / "tiny", rng, 80, 6)
    _write_libsvm(tmp_path / "tiny.t", rng, 40, 6)
    x, y = libsvm.load(tmp_path / "tiny")
    assert x.shape[0] == 80 and set(np.unique(y)) == {-1.0, 1.0}
    record = _run(tmp_path / "runs", "task=logreg_hyper", "task.data=libsvm", f"task.train_path={tmp_path / 'tiny'}",
                  f"task.val_path={tmp_path / 'tiny.t'}", "task.batch_size=16", "backend=torch", "method=soba",
                  "steps=5", "eval_every=5")
    assert record["status"] == "ok", record.get("reason")
    assert record["metrics"]["suboptimality"] >= -1e-9 and np.isfinite(record["metrics"]["hypergrad_sq_norm"])


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    ("1 1:0.5 2:abc\n", "not a readable libsvm file"),
    ("1 1:0.5\n2 1:0.1\n3 2:0.3\n", "3 distinct labels"),
])
def test_a_bad_libsvm_file_is_one_line_naming_the_key_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad"
    if content is not None:
        path.write_text(content)
    code = main(["run", "task=logreg_hyper", "task.data=libsvm", f"task.train_path={path}",
                 f"task.val_path={path}", f"results_dir={tmp_path}", "progress=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].count("task.train_path") >= 1 and message in err[0] and str(path) in err[0]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("problem_name,task", [("quadratic", "bilevel_quadratic"), ("logreg", "logreg_hyper"),
                                               ("datacleaning", "data_cleaning")])
def test_the_experiments_cases_compose_to_benchmark_bilevels_settings(solver, problem_name, task):
    cfg = compose(["+experiment=bilevel_solvers", f"+bilevel_problem={problem_name}", f"+bilevel_solver={solver}",
                   "results_dir=/tmp/unused"])
    plan = prepare(cfg)
    assert plan.method.name == solver and cfg.task.name == task and cfg.dtype == "float64"
    assert plan.inner_steps == INNER[solver] and plan.steps == 1000 and cfg.eval_every == 50
    assert (cfg.task.batch_size == 0) == (solver == "bome"), "bome alone runs full batch, as benchmark_bilevel's"
    assert cfg.task.sampler == "epoch"


def test_every_solver_is_in_the_sweep_and_every_problem_draws_as_benchmark_bilevel():
    """One sweep runs every solver, bome's full batches included (its solver config sets task.batch_size; measured:
    a two-problem × soba,bome multirun composes each job's config with it), on the epoch sampler of every problem."""
    from pathlib import Path

    from mlo_bench.suite.plugins import registry as reg

    text = (Path(__file__).resolve().parents[1] / "suite" / "conf" / "experiment" / "bilevel_solvers.yaml").read_text()
    swept = text.split("+bilevel_solver: ")[1].splitlines()[0].split(",")
    assert sorted(swept) == sorted(SOLVERS) and set(swept) <= set(reg.names("method"))
    for name in ("quadratic", "logreg", "datacleaning"):
        cfg = compose(["+experiment=bilevel_solvers", f"+bilevel_problem={name}", "+bilevel_solver=saba",
                       "results_dir=/tmp/unused"])
        assert cfg.task.sampler == "epoch"


def test_batch_size_zero_is_the_whole_sample_and_negative_is_one_line(tmp_path):
    from mlo_bench.suite.models.batch import draw

    rng = np.random.default_rng(0)
    assert draw(rng, 5, 0).tolist() == [0, 1, 2, 3, 4]
    some = draw(rng, 5, 3).tolist()
    assert len(set(some)) == 3 and set(some) <= set(range(5))
    with pytest.raises(Exception) as err:
        prepare(compose([*SMALL_ARGS, "task.batch_size=-1", "results_dir=/tmp/unused"]))
    assert "task.batch_size must be >= 1, or 0 for the whole sample" in str(err.value)
