"""mlo-bench: a benchmark and reproducibility suite for multilevel optimization.

The harness (this package) knows three roles, each a small typed contract in :mod:`mlo_bench.suite.contract`:
tasks (``tasks/``), backends (``backends/``) and hypergradient methods (``methods/``). Its sub-packages, by role
(each ``__init__`` says what lives there and what it may import; ``tests/test_layout.py`` keeps both true):

- ``contract``: the roles' typed contracts (Task, Level, Backend, Ops, Method) and the paper declarations;
- ``engine``: a run's mathematics — the training loop, the outer step (phase by phase, or compiled whole), the
  hypergradient chain, implicit solves, linear solvers, levels, optimizers, pytrees;
- ``models``: networks and losses written once against the ops protocol and shared by tasks;
- ``measure``: clocks and memory, the floor, threads, provenance, the step benchmark;
- ``run``: one run from overrides to record — composition, the plan, the job (resume, lock, isolation), the
  execution, records, sweep ledgers, progress and summaries;
- ``plugins``: the registry of tasks, backends and methods, and the task variants as Hydra options;
- ``certify``: ``mlo-bench verify`` — cross-backend agreement of hypergradients and trajectories;
- ``cli``: the ``mlo-bench`` command and its Hydra application and callbacks;
- ``report``: ``mlo-bench report`` — records in, tables, figures, Markdown and HTML out;
- ``conf`` (Hydra's YAML config groups and the run keys) and ``data`` (the papers' claims).
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.1.0"

#: module paths before the layout by role (old → new, under ``mlo_bench.suite``): importing an old one still works,
#: with a DeprecationWarning naming the new one, so a plugin written against them runs unmodified
MOVED = {
    "loop": "engine.loop",
    "phases": "engine.step_phases",
    "fused": "engine.compiled_step",
    "hypergrad": "engine.hypergradient",
    "implicit": "engine.implicit",
    "solvers": "engine.linear_solvers",
    "levels": "engine.levels",
    "optim": "engine.optim",
    "trees": "engine.trees",
    "nn": "models.nn",
    "nn_bytes": "models.byte_models",
    "cells": "models.darts_cells",
    "reweight": "models.reweight",
    "floor": "measure.floor",
    "threads": "measure.threads",
    "provenance": "measure.provenance",
    "stepbench": "measure.stepbench",
    "verify": "certify.verify",
    "verify_options": "certify.options",
    "agreement": "certify.agreement",
    "plan": "run.plan",
    "budget": "run.budgets",
    "job": "run.job",
    "isolate": "run.isolate",
    "runner": "run.execute",
    "records": "run.records",
    "summary": "run.summary",
    "progress": "run.progress",
    "registry": "plugins.registry",
    "variants": "plugins.variants",
    "app": "cli.hydra_app",
    "callbacks": "cli.callbacks",
    "report.doc": "report.render.doc",
    "report.fmt": "report.render.fmt",
    "report.html": "report.render.html",
    "report.markdown": "report.render.markdown",
    "report.figures": "report.render.figures",
    "report.bench": "report.sections.bench",
    "report.choice": "report.sections.choice",
    "report.claims": "report.sections.claims",
    "report.complexity_section": "report.sections.complexity",
    "report.complexity": "report.sections.complexity_fit",
    "report.complexity_gap": "report.sections.complexity_gap",
    "report.curves": "report.sections.curves",
    "report.engines": "report.sections.engines",
    "report.floor": "report.sections.floor",
    "report.papers": "report.sections.papers",
    "report.paper_figures": "report.sections.paper_figures",
    "report.tables": "report.sections.tables",
    "report.timing": "report.sections.timing",
}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import ``mlo_bench.suite.<old>`` as the module now at ``mlo_bench.suite.<new>`` (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname[len(__name__) + 1:] if fullname.startswith(__name__ + ".") else None
        if old not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = f"{__name__}.{MOVED[spec.name[len(__name__) + 1:]]}"
        warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self.real_spec = module.__spec__  # the import system sets __spec__ to the alias's: put the real one back
        return module

    def exec_module(self, module):
        module.__spec__ = self.real_spec


if not any(isinstance(f, _Moved) for f in sys.meta_path):
    sys.meta_path.append(_Moved())
