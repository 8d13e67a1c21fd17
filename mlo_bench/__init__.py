"""mlo-bench: a benchmark and reproducibility suite for multilevel optimization.

Everything the distribution installs lives under this one import package, so a research project's own ``tasks`` or
``methods`` package never collides with the suite's. The repository keeps its folders at the top (``suite/``,
``tasks/``, ``backends/``, ``methods/``); ``pyproject.toml`` maps them to ``mlo_bench.suite``, ``mlo_bench.tasks``,
``mlo_bench.backends`` and ``mlo_bench.methods``.

A plugin written outside the suite imports what it needs from here::

    from mlo_bench import Level, Oracle, Task, register
"""

from mlo_bench.suite.contract import Backend, Level, Method, Ops, Oracle, Response, Task, Unavailable
from mlo_bench.suite.plugins.registry import register

__all__ = ["Backend", "Level", "Method", "Ops", "Oracle", "Response", "Task", "Unavailable", "register"]
