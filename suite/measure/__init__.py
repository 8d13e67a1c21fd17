"""Measurement: synchronised timers and the run's own peak memory (:mod:`.instruments`), the floor of a
hypergradient in lower-level gradients (:mod:`.floor`), the ``threads`` key (:mod:`.threads`), provenance and machine
load (:mod:`.provenance`), and the step benchmark that times configs interleaved (:mod:`.stepbench`).

May import: ``contract``, ``engine``, ``plugins``, ``run`` (the step benchmark sets up runs), ``conf``. Never ``cli``,
``certify`` or ``report``.
"""

# the timers and memory peak, where ``mlo_bench.suite.measure`` (a module before the layout by role) kept them
from mlo_bench.suite.measure.instruments import CpuPeakRSS, PhaseTimer  # noqa: E402

__all__ = ["CpuPeakRSS", "PhaseTimer"]
