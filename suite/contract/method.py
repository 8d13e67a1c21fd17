"""The Method contract: a hypergradient algorithm as the VJP of one lower level's best response.

Every multilevel hypergradient in mlo-bench is computed in reverse mode: one vector is pushed from the top level down
the dependency chain (:func:`mlo_bench.suite.hypergrad.hypergradient`).
At each edge (lower level θ, its upper level λ) the only
thing a method decides is how to approximate

    (dθ*/dλ)ᵀ v,   with θ*(λ) = argmin_θ f(θ, λ)   — by the implicit function theorem, −∂²f/∂λ∂θ · H⁻¹ v.

So a method is one function, written once against the backend protocol; a backend may override it (``override``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

Tree = Any


@dataclass(frozen=True)
class Response:
    """What a method sees of one lower level at the current state.

    - ``loss(lower, upper)``: the lower level's scalar loss f(θ, λ) on its current batch.
    - ``lower``, ``upper``: θ and λ (pytrees of backend arrays).
    - ``step(lower, state, upper) -> (lower, state)``: one differentiable step of the lower level's own optimizer
      (used by ``unroll``); ``state`` is the optimizer state now.
    - ``unroll_steps``: how many inner steps make up one outer step (the unroll depth).
    """

    loss: Any
    lower: Tree
    upper: Tree
    step: Any
    state: Tree
    unroll_steps: int


class Method(Protocol):
    """A hypergradient method.

    ``name`` is its registry name; ``Config`` a dataclass of its knobs (with defaults) whose ``validate()`` raises
    ``ValueError("method.<key> ...")`` for a bad value; ``response_vjp(backend, response, v, cfg)`` returns the
    approximation of (dθ*/dλ)ᵀ v as a pytree shaped like ``response.upper``.
    """

    name: ClassVar[str]

    def response_vjp(self, backend: Any, response: Response, v: Tree, cfg: Any) -> Tree: ...
