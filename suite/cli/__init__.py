"""The ``mlo-bench`` command (:mod:`.commands`: ``list``, ``run``, ``verify``, ``report``), the Hydra
application behind ``run`` (:mod:`.hydra_app`) and the sweep callbacks (:mod:`.callbacks`).

The top of the suite: it may import every other sub-package, and none of them imports it.
"""

from mlo_bench.suite.cli.commands import main

__all__ = ["main"]
