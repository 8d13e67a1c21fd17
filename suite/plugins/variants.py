"""Task variants as Hydra options: ``variant=NAME`` (``+variant=NAME``) applies the chosen task's variant NAME — a row
of its paper table, declared in the task's ``paper.variants`` (:class:`~mlo_bench.suite.contract.paper.Variant`).

Registered by :func:`register` (called from the registry with the plugins' configs):

- ``variant/<name>``: for every name some task declares, an option that selects the variant's method (``override
  /method``: its knobs are that method's defaults), and ``none`` (the default). A name stands for one method in
  every task that declares it;
- ``variant_values/<task>/<backend>/<name>`` (package ``_global_``): that task's values on that backend — the
  variant's overrides (flat keys unflattened: ``task.reweight`` → ``task: {reweight: ...}``), the
  backend's knobs, and the top-level key ``variant: <name>`` so the record says which variant it ran.

The primary config's defaults list ends with ``variant: none`` and ``variant_values@_global_:
${task}/${backend}/${variant}`` (a defaults-list interpolation resolved once task, backend and variant are chosen),
so the variant's values override the primary config's; command-line overrides still win. A backend a variant does not
exist on gets no option: composing it fails (:func:`problem` says so in one line).

Top-level keys the run plan does not accept yet (``mlo_bench.suite.conf.keys.TOP_LEVEL_KEYS``, e.g. ``variant`` and
``ordering`` before they land there) are left out of the values, so a variant always runs; the report then knows the
variant by its method and overrides, and takes a missing key at its default (``ordering``: ``inner_first``).
"""

from __future__ import annotations

from typing import Any

from mlo_bench.suite.conf.keys import TOP_LEVEL_KEYS

NONE = "none"


def declared(task_cls: type) -> list[Any]:
    """The variants a task class declares (its ``paper.variants``), in order."""
    paper = getattr(task_cls, "paper", None)
    return list(getattr(paper, "variants", ()) or ())


def names(tasks: dict[str, type]) -> list[str]:
    """Every variant name some task of ``tasks`` (name → class) declares."""
    return sorted({v.name for cls in tasks.values() for v in declared(cls)})


def problem(tasks: dict[str, type], task: str, name: str, backend: str | None = None) -> str | None:
    """One line when task ``task`` of ``tasks`` (name → class) declares no variant ``name`` (or it does not exist on
    ``backend``), else ``None``."""
    if name == NONE:
        return None
    cls = tasks.get(task)
    own = {v.name: v for v in declared(cls)} if cls else {}
    if name not in own:
        return (f"task {task} has no variant {name!r} (its variants: {', '.join(own) or 'none'}); "
                f"variants of any task: {', '.join(names(tasks)) or 'none'}")
    v = own[name]
    if backend is not None and v.backends is not None and backend not in v.backends:
        return f"variant {name!r} of task {task} exists on backend(s) {', '.join(v.backends)} only (got {backend})"
    return None


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def values(variant: Any, backend: str, accepted: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The config values of ``variant`` on ``backend`` (nested), keeping only top-level keys in ``accepted``."""
    flat = {**dict(variant.overrides), "variant": variant.name}
    flat.update({f"backend.{k}": v for k, v in (variant.backend_knobs.get(backend) or {}).items()})
    nested = _unflatten(flat)
    if accepted is not None:
        nested = {k: v for k, v in nested.items() if k in accepted}
    return nested


def register(store: Any, tasks: dict[str, type], backends: list[str]) -> None:
    """Store the ``variant`` and ``variant_values`` options (see the module docstring) in Hydra's ConfigStore, for
    the task classes ``tasks`` (name → class) and the backend names ``backends``."""
    method: dict[str, tuple[str, str]] = {}  # variant name -> (its method, the task that declared it first)
    for task, cls in tasks.items():
        for v in declared(cls):
            first = method.setdefault(v.name, (v.method, task))
            if first[0] != v.method:
                raise ValueError(f"variant {v.name!r} runs method {first[0]} in task {first[1]} but {v.method} in "
                                 f"task {task}: a variant name stands for one method; rename one")
    store.store(group="variant", name=NONE, node={}, package="_global_")
    for name, (m, _) in sorted(method.items()):
        store.store(group="variant", name=name, node={"defaults": [{"override /method": m}, "_self_"]},
                    package="_global_")
    for task, cls in tasks.items():
        for backend in backends:
            group = f"variant_values/{task}/{backend}"
            store.store(group=group, name=NONE, node={}, package="_global_")
            for v in declared(cls):
                if v.name == NONE:
                    raise ValueError(f"task {task}: a variant cannot be named {NONE!r}")
                if v.backends is None or backend in v.backends:
                    store.store(group=group, name=v.name, node=values(v, backend, TOP_LEVEL_KEYS),
                                package="_global_")
