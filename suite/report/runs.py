"""Records → comparable runs: flat configs, the task variant each run stands for, the seed pairing, and whether its
time figures were taken on a loaded machine.

- **variant**: the task's declared :class:`~mlo_bench.suite.contract.paper.Variant` whose method, backends, overrides
  and backend knobs the run's config matches; the record's own ``variant`` key, when it has one, picks among
  variants that match alike, and a run overridden away from its recorded variant stands for none. Keys that some
  variant of the task overrides are compared for every variant of the task, at their run default
  (:data:`RUN_DEFAULTS`) when a variant does not set them, so ``unroll-1`` never matches a ``lookahead`` run, nor
  ``darts-1`` an fp16 run where a sibling variant sets ``precision.name``. A record without a key takes its run
  default (old records: ``ordering`` = ``inner_first``).
- **loaded**: the run's 1-minute load average, at its start or end (``provenance.loadavg_start`` /
  ``loadavg_end``), exceeded its CPU count (``provenance.cpu_count``): other work competed for the cores, so its
  wall times are not comparable. ``None`` when the record did not measure its load.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from mlo_bench.suite.report import specs
from mlo_bench.suite.report.tidy import COMPARED_KEYS, flatten, load_of, setting_key

#: run keys added after schema 1's first records, and what a record without them ran with
RUN_DEFAULTS: dict[str, Any] = {"ordering": "inner_first", "precision.name": "fp32"}


@dataclass
class Run:
    task: str
    backend: str
    method: str
    seed: Any
    flat: dict[str, Any]
    metrics: dict[str, Any]
    config: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""

    @property
    def recorded_variant(self) -> str | None:
        return recorded_variant(self.config)

    def value(self, key: str) -> Any:
        """A flat config value, at its run default when the record lacks it."""
        return self.flat.get(key, RUN_DEFAULTS.get(key))


def _mapping(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def loaded(provenance: dict[str, Any]) -> bool | None:
    """Whether the load average exceeded the core count during the run (``None``: not recorded)."""
    load = load_of(provenance)
    return None if load is None else load > 1.0


def recorded_variant(config: Any) -> str | None:
    """The variant a run was run as (its config's ``variant`` key: ``+variant=NAME``), or ``None``."""
    v = config.get("variant") if isinstance(config, dict) else None
    return str(v) if v not in (None, "none", "") else None


def prepare(records: list[dict[str, Any]]) -> list[Run]:
    """The ok runs as :class:`Run` (records that are not mappings are left out)."""
    out = []
    for rec in records:
        if not isinstance(rec, dict) or rec.get("status") != "ok":
            continue
        config = _mapping(rec.get("config"))
        out.append(Run(str(rec.get("task")), str(rec.get("backend")), str(rec.get("method")), rec.get("seed"),
                       flatten(config, ""), dict(_mapping(rec.get("metrics"))), config,
                       _mapping(rec.get("provenance")), str(rec.get("run_id") or "")))
    return out


def equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, str) and a.lower() == str(b).lower())
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return str(a) == str(b)


def _expected(variant: Any, keys: set[str], backend: str) -> dict[str, Any]:
    want = {k: variant.overrides.get(k, RUN_DEFAULTS.get(k)) for k in keys}
    want.update({f"backend.{k}": v for k, v in (variant.backend_knobs.get(backend) or {}).items()})
    return {k: v for k, v in want.items() if v is not None}


def variant_of(run: Run) -> str | None:
    """The task variant ``run`` stands for (see the module docstring), or ``None``."""
    declared = specs.paper(run.task).variants
    keys = {k for v in declared for k in v.overrides}
    recorded = run.recorded_variant
    for v in declared:
        if v.method != run.method or (v.backends is not None and run.backend not in v.backends):
            continue
        if recorded is not None and recorded != v.name:
            continue
        if all(equal(run.value(k), want) for k, want in _expected(v, keys, run.backend).items()):
            return v.name
        if recorded is not None:
            return None  # run as the variant, then overridden away from it (e.g. ``+variant=darts-1 precision=bf16``)
    return None


def metric_value(run: Run, metric: str) -> float | None:
    v = run.metrics.get(metric)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def group_key(run: Run, drop: tuple[str, ...] = ()) -> str:
    """Runs compared side by side share this key: the config without backend, method, seed, the variant key and the
    flat keys in ``drop`` (e.g. a table's column and the variants' overrides)."""
    config = json.loads(json.dumps(run.config, default=str))
    for key in drop:
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return setting_key(config, COMPARED_KEYS)
