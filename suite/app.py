"""The Hydra application behind ``mlo-bench run``: one job = one run = one record."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from suite import registry
from suite.plan import ConfigError, prepare
from suite.runner import execute
from suite.summary import print_summary

registry.discover()


@hydra.main(config_path="conf", config_name="config", version_base=None)
def app(cfg: DictConfig) -> int:
    try:
        plan = prepare(cfg)
    except ConfigError as exc:
        print(f"mlo-bench run: error: {exc}", file=sys.stderr)
        sys.exit(2)
    record = execute(plan)
    print_summary(record)
    return 0 if record["status"] == "ok" else 1
