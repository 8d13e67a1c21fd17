"""Mixed precision, in one place for every backend: the ``precision`` run key, losses evaluated in a low precision,
and fp16's dynamic loss scaling.

- ``precision=fp32`` (the default) changes nothing: no level is wrapped, no state gains an entry, and the config hash
  is the one records had before the key existed.
- ``precision=bf16`` / ``precision=fp16``: parameters and optimizer states stay in the run's ``dtype`` (master
  weights, float32); every level's loss — and so every derivative of it — is computed in the low precision by the
  backend's :meth:`~mlo_bench.suite.contract.Backend.low_precision` (torch and naive: ``torch.autocast``; jax: a
  ``jmp`` policy casting parameters and inputs to the compute dtype and the loss back). The monitoring loss
  (``outer_loss``) and the oracle / ``exact`` references stay in full precision: they are measurements.
- ``precision.hypergrad=same`` (default): the hypergradient is computed in the training precision;
  ``precision.hypergrad=full``: in full precision (the lower levels still train in half). A method that unrolls
  differentiates the inner steps it took, in the training precision either way; ``full`` puts its top loss and
  pullback seed in full precision.
- fp16 only (bf16 has fp32's exponent range): dynamic loss scaling, for each lower level's training and for the
  hypergradient when it is computed in fp16. The rule is jmp's ``DynamicLossScale`` (and torch's ``GradScaler``):
  start at ``precision.init_scale`` (4096, Betty's), on a non-finite gradient skip the step and divide the scale by
  ``precision.growth_factor`` (2; never below 1), after ``precision.growth_interval`` clean steps in a row multiply it
  by the factor. Neither library's object is used: ``GradScaler`` drives a ``torch.optim`` optimizer and
  ``DynamicLossScale`` is a jax pytree, while the suite's optimizers are one functional implementation for every
  backend (:mod:`mlo_bench.suite.engine.optim`), so the scale is a few arrays in each level's optimizer state
  (:data:`LOSS_SCALE`) updated by :func:`adjust` — traced whole by a compiled step; a test checks :func:`adjust`
  against ``jmp.DynamicLossScale.adjust`` step by step.
  The hypergradient's scale is the top level's: its loss is multiplied by S before any derivative (so every
  cotangent pushed down the chain is S times larger, away from fp16's underflow), the result divided by S before
  the outer update, which skips a non-finite one. darts' perturbation θ ± εv with ε = α/‖v‖ is the same for v and S·v
  (ε·S·v = α·v/‖v‖), so its ε is in effect the unscaled v's.

Records: ``loss_scale_<level>`` (final scale), ``skipped_steps_<level>``, ``overflows_inner`` (lower levels' skipped
steps) and ``overflows_hypergrad`` (the top's). A level that skipped every one of its steps ends the run
``diverged`` with the reason (:func:`every_step_skipped`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mlo_bench.suite.conf.keys import DEFAULT_PRECISION, PRECISIONS
from mlo_bench.suite.engine import optim
from mlo_bench.suite.engine.trees import tree_leaves, tree_map

Tree = Any
NAMES = PRECISIONS
HYPERGRADS = ("same", "full")
#: unit roundoff u = 2^-p (p: the significand's bits, the hidden one included) of each compute precision
UNIT_ROUNDOFF = {"fp32": 2.0**-24, "bf16": 2.0**-8, "fp16": 2.0**-11}
#: the optimizer-state entry that holds a level's loss scale (fp16)
LOSS_SCALE = "loss_scale"


@dataclass(frozen=True)
class Precision:
    """The ``precision`` run key's value (``precision=NAME``, ``precision.KNOB=V``); defaults in
    :data:`mlo_bench.suite.conf.keys.DEFAULT_PRECISION`."""

    name: str = DEFAULT_PRECISION["name"]
    hypergrad: str = DEFAULT_PRECISION["hypergrad"]
    init_scale: float = DEFAULT_PRECISION["init_scale"]
    growth_factor: float = DEFAULT_PRECISION["growth_factor"]
    growth_interval: int = DEFAULT_PRECISION["growth_interval"]

    @classmethod
    def parse(cls, value: Any) -> Precision:
        """From the key's value: a mapping (what Hydra composes) or a bare name (a plain-dict config may say
        ``precision: bf16``). Raises ``ValueError`` with one line naming the knob."""
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, Mapping):
            raise ValueError(f"precision must be one of {', '.join(NAMES)} or a mapping (got {value!r})")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown precision knob(s) {', '.join(unknown)}; knobs: "
                             + ", ".join(f"precision.{k}" for k in known))
        p = cls(**value)
        if p.name not in NAMES:
            raise ValueError(f"precision must be one of {', '.join(NAMES)} (got {p.name!r})")
        if p.hypergrad not in HYPERGRADS:
            raise ValueError(f"precision.hypergrad must be one of {', '.join(HYPERGRADS)} (got {p.hypergrad!r})")
        if isinstance(p.init_scale, bool) or not isinstance(p.init_scale, int | float) or not p.init_scale >= 1:
            raise ValueError(f"precision.init_scale must be a number >= 1 (got {p.init_scale!r})")
        if isinstance(p.growth_factor, bool) or not isinstance(p.growth_factor, int | float) or not p.growth_factor > 1:
            raise ValueError(f"precision.growth_factor must be a number > 1 (got {p.growth_factor!r})")
        if isinstance(p.growth_interval, bool) or not isinstance(p.growth_interval, int) or p.growth_interval < 1:
            raise ValueError(f"precision.growth_interval must be an integer >= 1 (got {p.growth_interval!r})")
        return p

    def as_config(self) -> dict[str, Any]:
        """The key's value as recorded (and hashed): every knob, the scales as floats."""
        out = dataclasses.asdict(self)
        out["init_scale"], out["growth_factor"] = float(self.init_scale), float(self.growth_factor)
        return out

    @property
    def low(self) -> bool:
        return self.name != "fp32"

    @property
    def hyper_name(self) -> str:
        """The precision the hypergradient is computed in."""
        return self.name if self.hypergrad == "same" else "fp32"

    def scales(self, name: str) -> bool:
        """Whether a computation in ``name`` is loss-scaled (fp16 only)."""
        return name == "fp16"


FP32 = Precision()


def check(precision: Precision, dtype: str) -> str | None:
    """Why this precision cannot run with master weights in ``dtype`` (one line), or ``None``."""
    if precision.low and dtype != "float32":
        return (f"precision={precision.name} needs dtype=float32 (master weights in float32; got dtype={dtype}): "
                "autocast leaves float64 untouched")
    return None


def refusal(backend: Any, precision: Precision, method: str | None = None) -> str | None:
    """Why ``backend`` cannot compute in ``precision`` (recorded ``unsupported``) for ``method``, or ``None``."""
    if not precision.low:
        return None
    return backend.precision_refusal(precision.name, method)


def in_precision(backend: Any, levels: list[Any], name: str) -> list[Any]:
    """``levels`` with each loss evaluated in ``name`` by the backend (unchanged for fp32)."""
    if name == "fp32":
        return list(levels)
    return [dataclasses.replace(lv, loss=backend.low_precision(lv.loss, name)) for lv in levels]


# ---- dynamic loss scaling -----------------------------------------------------------------------------------------
def fresh_scale(ops: Any, precision: Precision, like: Any) -> dict[str, Any]:
    """A fresh loss-scale state, its arrays in ``like``'s dtype and device (a scalar of the level's state)."""
    zero = like * 0.0
    return {"scale": zero + float(precision.init_scale), "counter": zero, "skipped": zero,
            "period": zero + float(precision.growth_interval), "factor": zero + float(precision.growth_factor)}


def with_loss_scales(ops: Any, precision: Precision, levels: list[Any], states: dict[str, Tree]) -> dict[str, Tree]:
    """``states`` with a loss scale in each level's optimizer state that fp16 computes: every lower level when
    training in fp16, the top level (the hypergradient's) when the hypergradient is computed in fp16 too."""
    if not precision.scales(precision.name):
        return states
    out = dict(states)
    for level in levels:
        top = level.parent is None
        if top and not precision.scales(precision.hyper_name):
            continue
        out[level.name] = {**states[level.name], LOSS_SCALE: fresh_scale(ops, precision, states[level.name]["count"])}
    return out


def scale_of(state: Any) -> Any:
    """The loss scale in a level's optimizer state, or ``None`` when it has none."""
    return state[LOSS_SCALE]["scale"] if isinstance(state, Mapping) and LOSS_SCALE in state else None


def all_finite(ops: Any, tree: Tree) -> Any:
    """A boolean scalar: every entry of ``tree`` is finite (x·0 is NaN exactly for ±inf and NaN)."""
    total = sum(ops.sum(leaf * 0.0) for leaf in tree_leaves(tree))
    return total == 0.0


def adjust(ops: Any, ls: dict[str, Any], finite: Any) -> dict[str, Any]:
    """The next loss-scale state (jmp's ``DynamicLossScale.adjust``): finite → one more clean step, the scale times
    the factor after ``period`` of them; else the step is skipped, the scale divided by the factor (not below 1)."""
    scale, counter, period, factor = ls["scale"], ls["counter"], ls["period"], ls["factor"]
    zero = counter * 0.0
    grow = counter == period - 1.0
    grown = ops.where(grow, scale * factor, scale)
    grown = ops.where(all_finite(ops, grown), grown, scale)
    new_scale = ops.where(finite, grown, ops.maximum(scale / factor, zero + 1.0))
    new_counter = ops.where(finite, ops.where(grow, zero, counter + 1.0), zero)
    skipped = ls["skipped"] + ops.where(finite, zero, zero + 1.0)
    return {**ls, "scale": new_scale, "counter": new_counter, "skipped": skipped}


def update(ops: Any, cfg: Any, grads: Tree, state: dict[str, Any], params: Tree) -> tuple[Tree, dict[str, Any]]:
    """One optimizer step (:func:`mlo_bench.suite.engine.optim.update`) on unscaled ``grads``; where ``state`` holds a
    loss scale, a step with a non-finite gradient is skipped (parameters and optimizer state kept) and the scale
    adjusted (:func:`adjust`)."""
    if LOSS_SCALE not in state:
        return optim.update(ops, cfg, grads, state, params)
    ls = state[LOSS_SCALE]
    inner = {k: v for k, v in state.items() if k != LOSS_SCALE}
    new_params, new_inner = optim.update(ops, cfg, grads, inner, params)
    finite = all_finite(ops, grads)
    keep = lambda new, old: ops.where(finite, new, old)  # noqa: E731
    new_params = tree_map(keep, new_params, params)
    new_inner = tree_map(keep, new_inner, inner)
    return new_params, {**new_inner, LOSS_SCALE: adjust(ops, ls, finite)}


def scaled_gradient(grad: Callable, loss: Callable, state: Any) -> Callable:
    """``g(θ, λ) = ∂f/∂θ``, through ``S·f`` and divided by S where ``state`` holds a loss scale S."""
    scale = scale_of(state)
    if scale is None:
        return grad(loss)
    g = grad(lambda lower, upper, s: s * loss(lower, upper))
    return lambda lower, upper: tree_map(lambda x: x / scale, g(lower, upper, scale))


def scaled_top(levels: list[Any], states: Mapping[str, Any]) -> tuple[list[Any], Any]:
    """``(levels, S)``: the top level (first of ``levels``) with its loss multiplied by its loss scale S, or the levels
    unchanged and ``None`` when the top's state holds none."""
    top = levels[0]
    scale = scale_of(states.get(top.name))
    if scale is None:
        return levels, None
    loss = top.loss
    return [dataclasses.replace(top, loss=lambda ops, p, b: scale * loss(ops, p, b)), *levels[1:]], scale


def unscale(tree: Tree, scale: Any) -> Tree:
    return tree if scale is None else tree_map(lambda x: x / scale, tree)


def carry_scales(states: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    """``states`` with the loss scale of each level whose state in ``source`` has one."""
    return {name: ({**state, LOSS_SCALE: source[name][LOSS_SCALE]}
                   if isinstance(source.get(name), Mapping) and LOSS_SCALE in source[name] else state)
            for name, state in states.items()}


def without_scales(states: Mapping[str, Any]) -> dict[str, Any]:
    """``states`` with every loss scale left out."""
    return {name: ({k: v for k, v in state.items() if k != LOSS_SCALE} if isinstance(state, Mapping) else state)
            for name, state in states.items()}


def lowered_scale(ops: Any, states: Mapping[str, Any], level: str) -> tuple[dict[str, Any], bool]:
    """``(states, lowered)``: ``level``'s loss scale divided by its factor (not below 1); ``lowered`` is ``False``
    when it was 1 already (or absent)."""
    state = states.get(level)
    if not isinstance(state, Mapping) or LOSS_SCALE not in state:
        return dict(states), False
    ls = state[LOSS_SCALE]
    if float(ops.sum(ls["scale"])) <= 1.0:
        return dict(states), False
    scale = ops.maximum(ls["scale"] / ls["factor"], ls["scale"] * 0.0 + 1.0)
    return {**states, level: {**state, LOSS_SCALE: {**ls, "scale": scale}}}, True


def checked(backend: Any, hyper: Callable, states: dict[str, Any], top: str, scaled: bool) -> Any:
    """``hyper(states)`` as numpy, for the hypergradient check; where the hypergradient is loss-scaled (``scaled``,
    fp16) and overflows, the ``top`` level's scale is divided by its factor and it is taken again — as training would
    on its next step — down to 1."""
    import numpy as np

    while True:
        h = backend.tree_to_numpy(hyper(states))
        if not scaled or all(np.isfinite(x).all() for x in tree_leaves(h)):
            return h
        states, lowered = lowered_scale(backend.ops, states, top)
        if not lowered:
            return h


def scale_metrics(backend: Any, levels: list[Any], states: Mapping[str, Any]) -> dict[str, float]:
    """The record's loss-scale figures (``{}`` without scaling)."""
    out: dict[str, float] = {}
    inner = hyper = 0.0
    for level in levels:
        state = states.get(level.name)
        if not isinstance(state, Mapping) or LOSS_SCALE not in state:
            continue
        ls = state[LOSS_SCALE]
        skipped = float(backend.to_numpy(ls["skipped"]))
        out[f"loss_scale_{level.name}"] = float(backend.to_numpy(ls["scale"]))
        out[f"skipped_steps_{level.name}"] = skipped
        if level.parent is None:
            hyper += skipped
        else:
            inner += skipped
    if out:
        out["overflows_inner"], out["overflows_hypergrad"] = inner, hyper
    return out


def every_step_skipped(metrics: Mapping[str, float], taken: Mapping[str, int]) -> str | None:
    """The reason a run whose level skipped every one of its ``taken[level]`` steps is ``diverged``, or ``None``."""
    for level, n in taken.items():
        skipped = metrics.get(f"skipped_steps_{level}")
        if n and skipped is not None and skipped >= n:
            return (f"fp16 loss scaling skipped every step of level {level} ({int(skipped)} of {n}): its gradient "
                    f"overflowed at every scale down to {metrics.get(f'loss_scale_{level}', 1.0):g}")
    return None
