"""The Backend contract: an autodiff engine behind the ops protocol."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from mlo_bench.suite.contract.ops import Ops

Tree = Any


class Unavailable(RuntimeError):
    """Raised by ``Backend.check_available`` when the backend's package is missing; the message says why."""


class Backend(ABC):
    """An autodiff engine. Functions it differentiates take and return pytrees (nested dicts) of its arrays.

    Spec:
    - ``name`` is the registry name; ``ops`` implements :class:`mlo_bench.suite.contract.Ops` for this backend's arrays.
    - ``setup(dtype, device, seed)`` is called once per run before any array is made. ``device`` is
      ``cpu``, ``cuda`` or ``auto`` (cuda when present). ``self.device`` then names the device actually used.
      ``teardown()`` is called once at the end of the run (also after a failure) to undo process-wide settings.
    - ``asarray``/``to_numpy`` convert between numpy and backend arrays (``asarray`` keeps integer dtypes and casts
      floating arrays to the run's dtype).
    - ``grad(f)(x, *args)`` is the gradient of scalar ``f`` w.r.t. its first argument; ``vjp(f, x)`` returns
      ``(f(x), pullback)``; ``trajectory_vjp(f, x)`` for ``f(x) -> (out, aux)`` returns ``(out, aux, pullback)`` with
      the forward run once and its graph kept until ``pullback`` (the runner differentiates the inner steps it
      actually takes with it, for methods that ``unroll``; ``pullback`` may be passed between compiled functions);
      ``jvp(f, x, t)`` returns ``(f(x), directional derivative)``; ``hvp(f, x, v)`` is the
      Hessian of scalar ``f`` at ``x`` applied to ``v``; ``hessian(f, x)`` materialises the Hessian of ``f`` over the
      flat vector ``x`` (d×d); ``solve(A, b)`` solves a dense linear system.
    - ``compile(fn, example_args)`` returns ``(callable, seconds spent compiling)``; eager backends return
      ``(fn, 0.0)``. ``block(tree)`` waits until every array of ``tree`` is computed (device sync) and returns it.
    - ``memory_kind`` names what ``peak_memory_bytes`` measures; ``reset_peak_memory()`` starts a new window.
    - ``supports(method)`` returns ``None`` or the reason the backend cannot run that method (recorded as
      ``unsupported``). ``override(method)`` may return an idiomatic replacement for a method's generic
      ``response_vjp``; agreement tests keep the two equal. ``chain()`` may replace the whole multilevel chain.
    - ``versions()`` names the packages whose versions go into a record's provenance.
    - A backend with knobs declares them as a ``Config`` dataclass (``backend.<knob>=`` on the command line, in the
      config hash); the instance is built as ``cls(config)`` and keeps it as ``self.config`` (``cls()``: defaults).
    - Capabilities (:data:`CAPABILITIES`): declared here with their defaults, so the suite reads them as plain
      attributes; a backend overrides the ones it has — ``fuses_step``, ``materialises``, ``hvp_operator``,
      ``compile_cache_stats``, ``known_issue``, ``cuda_visible``, ``low_precision`` / ``precision_refusal``,
      ``free_memory_bytes``, ``fake_peak_bytes`` (each documented below). The contract tests check
      that every registered backend has each, of its declared type.
    """

    name: ClassVar[str]
    ops: Ops
    dtype: str = "float32"
    device: str = "cpu"
    #: whether this backend (as configured) forms dense d×d matrices along the chain: O(d³) per hypergradient
    #: (``budget.max_d_materialised`` applies; the complexity report counts it as a materialised path). Read it from
    #: an instance: it may depend on ``self.config``.
    materialises: bool = False
    #: whether a run compiles each whole outer step into one function when the ``fused`` key is null (its default;
    #: :mod:`mlo_bench.suite.engine.compiled_step`): jax (a tracing compiler gains from seeing the whole step); an
    #: eager engine (the default, ``False``) runs the step phase by phase
    fuses_step: bool = False
    #: capability → the type of an instance's attribute (``Callable``: a method with the documented signature)
    CAPABILITIES: ClassVar[dict[str, type]] = {
        "fuses_step": bool, "materialises": bool, "hvp_operator": Callable, "compile_cache_stats": Callable,
        "known_issue": Callable, "cuda_visible": Callable, "low_precision": Callable, "precision_refusal": Callable,
        "free_memory_bytes": Callable, "fake_peak_bytes": Callable,
    }

    def __init__(self, config: Any = None) -> None:
        cfg_cls = getattr(type(self), "Config", None)
        self.config = config if config is not None or cfg_cls is None else cfg_cls()

    @classmethod
    def check_available(cls) -> None:
        """Raise :class:`Unavailable` with the reason when this backend cannot run here."""

    @classmethod
    def cuda_visible(cls) -> bool | None:
        """Whether this backend's framework sees a CUDA device here, asked before any work and without creating a CUDA
        context (the plan refuses ``device=cuda`` in one line when it is ``False``). ``None`` (the default): it cannot
        tell that cheaply, and ``device=cuda`` is let through where the machine has an NVIDIA device (the backend's own
        ``setup`` says the rest). Backends on torch answer ``torch.cuda.is_available()``."""
        return None

    @abstractmethod
    def setup(self, dtype: str, device: str, seed: int) -> None: ...

    def teardown(self) -> None:
        """Undo any process-wide setting made by ``setup`` (called once per run, also after a failure)."""

    @abstractmethod
    def asarray(self, x: np.ndarray) -> Any: ...

    @abstractmethod
    def to_numpy(self, x: Any) -> np.ndarray: ...

    @abstractmethod
    def grad(self, f: Callable[..., Any]) -> Callable[..., Tree]: ...

    @abstractmethod
    def vjp(self, f: Callable[[Tree], Tree], x: Tree) -> tuple[Tree, Callable[[Tree], Tree]]: ...

    def trajectory_vjp(self, f: Callable[[Tree], tuple[Tree, Tree]], x: Tree) -> tuple[Tree, Tree, Callable]:
        """``(out, aux, pullback)`` for ``f(x) = (out, aux)``: the VJP of ``out`` only, ``aux`` (e.g. optimizer
        states) returned as values. This default goes through :meth:`vjp` and suits an eager engine whose
        differentiated values can leave the transform; a backend that traces (jax) or wraps values (torch.func)
        overrides it with its own ``has_aux`` form."""
        box: dict[str, Tree] = {}

        def out_only(z: Tree) -> Tree:
            out, box["aux"] = f(z)
            return out

        out, pullback = self.vjp(out_only, x)
        return out, box["aux"], pullback

    @abstractmethod
    def jvp(self, f: Callable[[Tree], Tree], x: Tree, t: Tree) -> tuple[Tree, Tree]: ...

    @abstractmethod
    def hvp(self, f: Callable[[Tree], Any], x: Tree, v: Tree) -> Tree: ...

    def hvp_operator(self, f: Callable[[Tree], Any], x: Tree) -> Callable[[Tree], Tree] | None:
        """``u ↦ ∇²f(x) u`` with the gradient's graph (torch) or linearisation (jax) built once and reused by every
        product, so K products of a solver cost one gradient and K backward passes instead of K of each; ``None`` (the
        default): every product from scratch through :meth:`hvp` (:func:`mlo_bench.suite.engine.implicit.hessian_matvec`
        asks once per solve)."""
        return None

    @abstractmethod
    def hessian(self, f: Callable[[Any], Any], x: Any) -> Any: ...

    @abstractmethod
    def solve(self, a: Any, b: Any) -> Any: ...

    def compile(self, fn: Callable[..., Any], example_args: tuple[Any, ...]) -> tuple[Callable[..., Any], float]:
        return fn, 0.0

    @abstractmethod
    def block(self, tree: Tree) -> Tree: ...

    memory_kind: str = "cpu_rss_delta"

    @abstractmethod
    def reset_peak_memory(self) -> None: ...

    @abstractmethod
    def peak_memory_bytes(self) -> int | None: ...

    def live_peak_bytes(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> int | None:
        """Peak bytes of arrays allocated by ``fn(*args)`` and alive at the same time, counted at allocator level.

        Deterministic (it does not depend on the machine's noise, as counted FLOPs are for time); ``None`` when the
        backend cannot count it."""
        return None

    def compiled_live_bytes(self, compiled: Callable[..., Any]) -> int | None:
        """:meth:`live_peak_bytes` read off a function this backend's :meth:`compile` returned, without running or
        compiling anything again; ``None`` (the default) when the backend cannot, and the harness counts it with
        :meth:`live_peak_bytes` on the uncompiled function."""
        return None

    def count_flops(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> int | None:
        """Floating-point operations of one call ``fn(*args)``, counted by the framework (not timed); ``None`` when
        the backend cannot count them."""
        return None

    def precision_refusal(self, precision: str, method: str | None = None) -> str | None:
        """Why this backend cannot compute in ``precision`` (``bf16`` | ``fp16``; recorded ``unsupported``), or
        ``None``: a backend that overrides :meth:`low_precision` overrides this too. ``method``: the run's method,
        for a refusal that depends on it (a peer library whose own code for that method bypasses the suite's
        low-precision path or its fp16 loss scale); ``None``: asked of the backend as a whole, which then refuses only
        what it refuses for every method. Asked before ``setup`` (the plan's admission) and again after it."""
        return f"backend {self.name} has no mixed-precision path (precision={precision})"

    def low_precision(self, loss: Callable[..., Any], precision: str) -> Callable[..., Any]:
        """``loss(ops, params, batch)`` evaluated in ``precision`` (``bf16`` | ``fp16``) with the parameters kept in
        the run's dtype (master weights): the returned function takes and returns what ``loss`` does (the scalar
        cast back to the run's dtype), and its derivatives are computed in the low precision. Only asked where
        :meth:`precision_refusal` is ``None`` (:mod:`mlo_bench.suite.engine.precision`)."""
        raise NotImplementedError(self.precision_refusal(precision))

    def supports(self, method: str) -> str | None:
        """Why this backend cannot run ``method`` at all, or ``None``."""
        return None

    def supports_knobs(self, method: str, knobs: Any) -> str | None:
        """Why this backend cannot run ``method`` with these knobs (the method's config), or ``None``: e.g. a peer
        library whose cg has no counterpart of the suite's ``negative_curvature=stop`` must not run classic CG under
        that name."""
        return None

    def refusal(self, method: str, knobs: Any = None) -> str | None:
        """:meth:`supports`, then :meth:`supports_knobs` when the knobs are known: what every caller asks."""
        return self.supports(method) or (self.supports_knobs(method, knobs) if knobs is not None else None)

    def override(self, method: str) -> Callable[..., Tree] | None:
        return None

    def chain(self) -> Callable[..., Tree] | None:
        """A replacement for :func:`mlo_bench.suite.engine.hypergradient.hypergradient` (same signature), or ``None``
        for the reverse-mode chain. Only a backend that measures a different chaining strategy (``naive`` materialises
        best-response Jacobians and multiplies them) sets this."""
        return None

    def known_issue(self, method: str) -> str | None:
        """A known defect of the released library behind this backend's ``method`` (``mlo-bench verify`` prints it
        beside the row, which still fails with its measured error), or ``None`` (the default)."""
        return None

    def fake_peak_bytes(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> int | None:
        """:meth:`live_peak_bytes` of ``fn(*args)`` counted without running anything for real (torch: on fake tensors,
        where the arguments are large), asked before compiling by the memory guard; ``None`` (the default): it cannot
        be counted so (the guard then checks the count made after compiling)."""
        return None

    def free_memory_bytes(self) -> int | None:
        """The bytes free for this run on its device now (a GPU's free memory, with what the framework's allocator
        holds unused), compared with the counted peak before the first step (suite/measure/headroom.py); ``None``
        (the default): the suite reads the host's ``MemAvailable`` on CPU and guards nothing elsewhere."""
        return None

    def compile_cache_stats(self) -> dict[str, int]:
        """This run's counters of the framework's persistent compilation cache (e.g. hits and misses), merged into the
        record's metrics after compiling; ``{}`` (the default) for a backend without such a cache."""
        return {}

    def versions(self) -> dict[str, str]:
        return {}

    # data parallel (``parallel.world_size``; :mod:`mlo_bench.suite.run.ranks`) ----------------------------------
    #: how this backend runs ``parallel.world_size`` > 1: ``"processes"`` (one process per rank that the suite's
    #: launcher starts; the class's ``distributed(rank, world_size, timeout_s)`` returns the rank's backend: torch,
    #: naive), ``"mesh"`` (one process; ``setup_parallel(world_size)`` lays a device mesh out: jax), ``None``: none
    parallel: ClassVar[str | None] = None
    #: this instance's rank and world size (set by a data-parallel backend; one rank otherwise)
    rank: int = 0
    world_size: int = 1

    def parallel_refusal(self, world_size: int) -> str | None:
        """Why this backend cannot run ``parallel.world_size=world_size`` here (recorded ``unsupported``), or
        ``None``; the default refuses every world size above 1 unless :attr:`parallel` is set."""
        if world_size == 1 or self.parallel is not None:
            return None
        return f"backend {self.name} has no data-parallel path (parallel.world_size={world_size})"

    def shard_batch(self, extra: dict[str, Any]) -> dict[str, Any]:
        """One level's per-step arrays (:meth:`mlo_bench.suite.contract.Task.batch`: per-example, split along axis 0)
        as this rank's backend arrays: this default (one rank) converts them whole; a data-parallel backend keeps its
        rank's contiguous shard (processes) or lays them out along the mesh's batch axis (mesh)."""
        return self.tree_asarray(extra)

    def gather_scores(self, scores: Any) -> np.ndarray:
        """A selecting level's scores of this rank's candidates (the shard :meth:`shard_batch` gave) as numpy, all of
        them in candidate order: so every rank keeps the same examples. One rank: :meth:`to_numpy`."""
        return self.to_numpy(scores)

    def tree_to_numpy(self, tree: Tree) -> Any:
        from mlo_bench.suite.engine.trees import tree_map

        return tree_map(self.to_numpy, tree)

    def tree_asarray(self, tree: Any) -> Tree:
        from mlo_bench.suite.engine.trees import tree_map

        return tree_map(self.asarray, tree)
