"""The Hydra application behind ``mlo-bench run``: one job = one run = one record.

A job stopped by SIGINT / SIGTERM (its run recorded ``interrupted``, or asked before it started) ends the sweep:
``SystemExit(130)``, which Hydra's launcher does not catch (it catches ``Exception``: a failed job would not stop it).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from mlo_bench.suite.plugins import registry
from mlo_bench.suite.run import interrupt
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
    try:
        record = run_job(plan)
    except interrupt.Interrupted:
        raise SystemExit(interrupt.EXIT_CODE) from None
    if record["status"] == "interrupted":
        raise SystemExit(interrupt.EXIT_CODE)
    return 0 if record["status"] == "ok" else 1
