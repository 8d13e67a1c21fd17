"""The Hydra application behind ``mlo-bench run``: one job = one run = one record."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run.job import run_job
from mlo_bench.suite.run.plan import ConfigError, prepare

registry.discover()


@hydra.main(config_path="../conf", config_name="config", version_base=None)
def app(cfg: DictConfig) -> int:
    try:
        plan = prepare(cfg)
    except ConfigError as exc:
        print(f"mlo-bench run: error: {exc}", file=sys.stderr)
        sys.exit(2)
    record = run_job(plan)
    return 0 if record["status"] == "ok" else 1
