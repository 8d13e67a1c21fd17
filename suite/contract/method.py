"""The Method contract: a hypergradient algorithm as the VJP of one lower level's best response.

Every multilevel hypergradient in mlo-bench is computed in reverse mode: one vector is pushed from the top level down
the dependency chain (:func:`mlo_bench.suite.engine.hypergradient.hypergradient`).
At each edge (lower level θ, its upper level λ) the only
thing a method decides is how to approximate

    (dθ*/dλ)ᵀ v,   with θ*(λ) = argmin_θ f(θ, λ)   — by the implicit function theorem, −∂²f/∂λ∂θ · H⁻¹ v.

So a method is one function, written once against the backend protocol; a backend may override it (``override``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

Tree = Any


@dataclass(frozen=True)
class Response:
    """What a method sees of one lower level at the current state.

    - ``loss(lower, upper)``: the lower level's scalar loss f(θ, λ) on its current batch.
    - ``lower``, ``upper``: θ and λ (pytrees of backend arrays).
    - ``step(lower, state, upper) -> (lower, state)``: one differentiable step of the lower level's own optimizer
      (used by ``unroll`` on a single edge); ``state`` is the optimizer state now.
    - ``unroll_steps``: the lower level's optimizer steps per outer step (the unroll depth).
    - ``level``: the lower level's name.
    - ``method_state``: a stateful method's state at this edge from the previous outer step (``None`` otherwise).
    - ``optimizer``: the lower level's optimizer config (:class:`mlo_bench.suite.engine.optim.OptimizerConfig`; ``sama``
      preconditions with its Adam moments in ``state``).
    - ``outer_loss(lower, upper)``: the top level's loss g as a function of this edge's two levels (the others held
      fixed) on the top level's batch — set on the edge whose upper level is the top one, ``None`` deeper. First-order
      and averaging solvers (``f2sa``, ``ma_soba``) evaluate g and its gradients at points other than the current one.
    - ``batch_id`` / ``outer_batch_id``: the number of the lower level's / the top level's batch in its fixed
      partition (``Level.batches``; a 0-d integer array), ``None`` where batches are drawn freely.
    - ``whole_loss`` / ``whole_outer_loss``: f and g (as ``loss`` / ``outer_loss``) on the whole data — set for a
      method that ``steps_lower`` (``srba``'s periodic full-batch directions), ``None`` otherwise.
    """

    loss: Any
    lower: Tree
    upper: Tree
    step: Any
    state: Tree
    unroll_steps: int
    level: str = ""
    method_state: Tree = None
    optimizer: Any = None
    outer_loss: Any = None
    batch_id: Any = None
    outer_batch_id: Any = None
    whole_loss: Any = None
    whole_outer_loss: Any = None


class Method:
    """A hypergradient method: a plugin class subclasses this one (the capabilities below are declared here with their
    defaults, so the suite reads them as plain attributes; a method overrides the ones it has).

    Spec:
    - ``name`` is its registry name; ``Config`` a dataclass of its knobs (with defaults) whose ``validate()`` raises
      ``ValueError("method.<key> ...")`` for a bad value.
    - ``response_vjp(backend, response, v, cfg)`` returns the approximation of (dθ*/dλ)ᵀ v as a pytree shaped like
      ``response.upper``. It is pure: a stateful method's ``response_vjp`` starts from its ``init`` state (cold).
    - Capabilities (:data:`CAPABILITIES`; the contract tests check each registered method has each, of its type):

      - ``init`` / ``update`` (default ``None``: stateless; the optax shape): ``init(backend, lower, cfg) -> state``
        makes the state of one edge from the lower level's parameters, and ``update(backend, response, v, cfg) ->
        (vjp, state)`` computes the VJP from ``response.method_state`` and returns the state for the next outer step.
        A method with both is stateful: the runner keeps ``{level: state}`` in the run's pytree beside the parameters,
        so it is the same on every backend, and ``mlo-bench verify`` compares it after N steps. Example: ``cg`` /
        ``neumann`` with ``method.warm_start=true`` keep their last solution x ≈ H⁻¹v and start the next solve from it.
      - ``init_reads_upper`` (default ``False``): ``init`` takes the upper level's parameters too, as the keyword
        ``upper`` (a state shaped like them: ``ma_soba``'s moving average of the hypergradient).
      - ``unrolls`` (default ``False``): the method differentiates the lower levels' optimizer steps themselves. The
        runner then keeps the graph of the inner steps it actually takes (same start, same batches; one trajectory,
        not a second one recomputed) and pulls the top loss's gradient back through them
        (``Backend.trajectory_vjp``); ``response_vjp`` is used only where one edge is differentiated from a given
        state (the oracle check).
      - ``gradients(cfg, unroll_steps) -> float | None`` (default ``None``: not counted): the gradient-like passes
        one edge of the method costs — a Hessian-vector product, a mixed VJP, a gradient, a pullback through one
        optimizer step count one each (``cg`` / ``neumann``: K + 1, ``darts``: 2, ``unroll``: K, ``first_order``: 0;
        ``None``: not a count of gradients, e.g. ``exact``'s Hessian). With the top loss's own gradient it is the
        method's floor: the report sets a hypergradient's time in units of one lower-level gradient beside it
        (:mod:`mlo_bench.suite.measure.floor`).
      - ``computes_hypergradient`` (default ``True``): ``False`` for a method that trains no upper level (``none``: a
        baseline run with the task's own knobs); the runner skips the hypergradient and outer phases.
      - ``materialises`` (default ``False``): the method forms the lower level's d×d Hessian, O(d³) per
        hypergradient (``exact``; ``budget.max_d_materialised`` applies).
      - ``steps_lower`` (default ``False``): the method moves the lower level itself, in the hypergradient phase —
        the variance-reduced solvers (``saba``, ``srba``), whose lower step is built from the same stochastic
        oracles as the rest of their update. The runner then takes none of the level's own optimizer steps (no inner
        phase), the method's state holds the level's parameters under ``"lower"`` (its ``init`` copies them), and
        after each hypergradient the runner sets the level's parameters from the state. Such a method is stateful,
        takes one step per outer step (``inner_steps`` must be 1) on a task of two levels, one rank, and sees the
        whole data too (``Response.whole_loss``); any other setting is ``unsupported`` with the reason
        (:func:`mlo_bench.suite.engine.levels.lower_step_refusal`).
      - ``init_reads_batches`` (default ``False``): ``init`` takes the keyword ``batches`` — ``{"lower": n, "upper":
        m}``, the fixed minibatches of the edge's two levels (``Level.batches``); a run whose levels are not
        partitioned is ``unsupported`` (``task.sampler=epoch`` partitions benchopt's problems).

    A third-party method class that does not subclass :class:`Method` is given these defaults for the capabilities it
    does not set when it is registered (:func:`mlo_bench.suite.plugins.registry.register`).
    """

    name: ClassVar[str]
    init: Callable[..., Tree] | None = None
    update: Callable[..., tuple[Tree, Tree]] | None = None
    init_reads_upper: ClassVar[bool] = False
    unrolls: ClassVar[bool] = False
    computes_hypergradient: ClassVar[bool] = True
    materialises: ClassVar[bool] = False
    steps_lower: ClassVar[bool] = False
    init_reads_batches: ClassVar[bool] = False
    #: capability → the type of a method's attribute (``Callable``: a method with the documented signature;
    #: ``init`` / ``update`` may also be ``None``)
    CAPABILITIES: ClassVar[dict[str, Any]] = {
        "init": (Callable, type(None)), "update": (Callable, type(None)), "init_reads_upper": bool, "unrolls": bool,
        "computes_hypergradient": bool, "materialises": bool, "gradients": Callable, "steps_lower": bool,
        "init_reads_batches": bool,
    }

    def gradients(self, cfg: Any, unroll_steps: int) -> float | None:
        """Gradient-like passes of one edge (see the class docstring); ``None``: not a count of gradients."""
        return None

    def response_vjp(self, backend: Any, response: Response, v: Tree, cfg: Any) -> Tree:
        raise NotImplementedError(f"method {type(self).__name__} defines no response_vjp")
