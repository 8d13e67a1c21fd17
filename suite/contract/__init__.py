"""The three roles of mlo-bench as small typed contracts (docstrings are the spec).

- :class:`Ops` — the array operations a backend supplies; models, losses and optimizers are written once against it.
- :class:`Backend` — an autodiff engine: arrays, grad / vjp / jvp / hvp, compile, device, sync, memory.
- :class:`Task` and :class:`Level` — a multilevel program: levels, data, metrics, optional closed-form oracle.
- :class:`Method` — a hypergradient algorithm, expressed as the vector–Jacobian product of one best response.
- :class:`Paper` — what a task declares about its paper: :class:`MetricSpec`, :class:`Variant`, :class:`PaperTable`,
  :class:`Comparison`, :class:`TableClaim`, :class:`ClaimRule` (``paper.py``).

May import: ``engine`` (the pytree helpers and optimizer config its types name). Never ``cli``, ``run``,
``certify``, ``report``, ``measure``, ``models`` or ``plugins``: the contracts are the bottom of the suite.
"""

from mlo_bench.suite.contract.backend import Backend, Unavailable
from mlo_bench.suite.contract.method import Method, Response
from mlo_bench.suite.contract.ops import Ops
from mlo_bench.suite.contract.paper import (
    STANDARD_METRICS,
    ClaimRule,
    Comparison,
    MemoryFamily,
    MetricSpec,
    Paper,
    PaperTable,
    TableClaim,
    Variant,
)
from mlo_bench.suite.contract.task import ExactBudget, Level, Oracle, Selection, Task

__all__ = ["STANDARD_METRICS", "Backend", "ClaimRule", "Comparison", "ExactBudget", "Level", "MemoryFamily", "Method",
           "MetricSpec",
           "Ops", "Oracle", "Paper", "PaperTable", "Response", "Selection", "TableClaim", "Task", "Unavailable",
           "Variant"]
