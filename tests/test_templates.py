"""The plugin templates are real: a copy of the task template, once registered, runs with every method."""

from __future__ import annotations

import numpy as np
import pytest

from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.execute import execute
from mlo_bench.suite.run.plan import prepare


@pytest.fixture
def template_task():
    import mlo_bench.tasks._template as tpl

    registry.register("task")(tpl.TemplateTask)
    yield tpl.TemplateTask
    registry._REGISTRY["task"].pop("template")


@pytest.mark.parametrize("method", ["exact", "cg", "neumann", "darts", "unroll", "first_order"])
def test_task_template_runs_with_every_method(template_task, tmp_path, method):
    cfg = {
        "task": {"name": "template"}, "backend": {"name": "torch"}, "method": {"name": method},
        "seed": 0, "steps": 20, "inner_steps": 2, "dtype": "float64", "device": "cpu",
        "results_dir": str(tmp_path), "log_every": 0, "progress": False, "hypergrad_check": True,
    }
    rec = execute(prepare(cfg))
    assert rec["status"] == "ok", rec.get("traceback")
    assert np.isfinite(rec["metrics"]["val_mse"])
    assert "hypergrad_rel_error" not in rec["metrics"], "no oracle, so no oracle error"


def test_method_template_is_not_registered():
    assert "template" not in registry.names("method")
    assert "template" not in registry.names("backend")
