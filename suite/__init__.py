"""mlo-bench: a benchmark and reproducibility suite for multilevel optimization.

The harness (this package) knows three roles, each a small typed contract in :mod:`mlo_bench.suite.contract`:
tasks (``tasks/``), backends (``backends/``) and hypergradient methods (``methods/``).
"""

__version__ = "0.1.0"
