"""The jax backend: jax.numpy arrays, jax transforms (grad, vjp, jvp, forward-over-reverse HVPs), ahead-of-time jit.

jax is imported lazily (in ``check_available`` / ``setup``), so this module imports where jax is missing and the
backend reports itself unavailable with the import error. Every function the runner calls is compiled ahead of time
(``jax.jit(fn).lower(*args).compile()``), so compile time is measured on its own and never inside a timed phase.
Process-wide jax settings a run needs (64-bit floats, full-precision matmuls) are set in ``setup`` and restored in
``teardown``.

The training loop runs a whole outer step as one compiled function (``fuses_step``;
:mod:`mlo_bench.suite.engine.compiled_step`).
Compiled programs are kept in JAX's persistent compilation cache, shared by every run of a sweep (and later sweeps):
the directory ``$MLO_BENCH_JAX_CACHE`` (default ``<tmp>/mlo-bench-jax-cache``; ``0`` turns it off), every program
cached whatever its compile time. A run records ``compile_s`` as it paid it and how many of its compilations the cache
answered (``compile_cache_hits``) or missed (``compile_cache_misses``): a run with no misses is a warm compile, one with
no hits a cold one (the report can set the two apart). On the Betty-sized MWN step × cg: cold 3.8 s, warm ≈ 1 s.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mlo_bench.backends._jax_mesh import MeshMixin
from mlo_bench.backends._jax_ops import JaxOps
from mlo_bench.suite.contract import Backend, Unavailable
from mlo_bench.suite.measure.instruments import CpuPeakRSS
from mlo_bench.suite.plugins.registry import register

_HLO_SHAPE = re.compile(r"[a-z]+[0-9]*\[([0-9,]*)\]")  # an HLO array shape, e.g. f64[64,64]: its dimensions


def _hlo_shapes(text: str) -> list[list[int]]:
    return [[int(x) for x in m.group(1).split(",") if x] for m in _HLO_SHAPE.finditer(text)]


def _custom_call_flops(hlo: str) -> int:
    """FLOPs of the LAPACK / cuSOLVER custom calls in HLO text (lowered or compiled), which XLA's cost analysis
    counts as zero:
    LU (``getrf``) of n×n: 2/3·n³; Cholesky (``potrf``): 1/3·n³; triangular solve (``trsm``) of an n×n triangle
    against B: n² per column of B — per batch item. The same formulas as the torch backend's dense solve."""
    total = 0
    for line in hlo.splitlines():
        target = re.search(r'custom_call_target="([^"]+)"', line)
        if target is None or "=" not in line:
            continue
        name = target.group(1).lower()
        if "getrf" in name or "potrf" in name:
            result = _hlo_shapes(line.split("=", 1)[1])
            if result and len(result[0]) >= 2:
                *batch, _, n = result[0]
                total += int(np.prod(batch, dtype=np.int64)) * (2 if "getrf" in name else 1) * n**3 // 3
        elif "trsm" in name and "operand_layout_constraints=" in line:
            operands = _hlo_shapes(line.split("operand_layout_constraints=", 1)[1].split("}}", 1)[0])
            if len(operands) >= 2 and len(operands[0]) >= 2:
                total += operands[0][-1] * int(np.prod(operands[1], dtype=np.int64))
    return total


def _first_cotangent(pullback: Any, ct: Any) -> Any:
    return pullback(ct)[0]


_CACHE_EVENTS = {"/jax/compilation_cache/cache_hits": "compile_cache_hits",
                 "/jax/compilation_cache/cache_misses": "compile_cache_misses"}
_cache_counts: dict[str, int] = {}


def _count_cache_event(event: str, **kwargs: Any) -> None:
    key = _CACHE_EVENTS.get(event)
    if key is not None:
        _cache_counts[key] = _cache_counts.get(key, 0) + 1


def cache_dir() -> str | None:
    """The persistent compilation cache's directory (``$MLO_BENCH_JAX_CACHE``; ``None`` when turned off)."""
    value = os.environ.get("MLO_BENCH_JAX_CACHE", os.path.join(tempfile.gettempdir(), "mlo-bench-jax-cache"))
    return None if value.strip() in ("", "0", "off", "false") else value


def _enable_cache(jax: Any) -> None:
    """Point jax at the persistent cache once per process and count its hits and misses."""
    if getattr(_enable_cache, "done", False):
        return
    _enable_cache.done = True
    path = cache_dir()
    if path is None:
        return
    try:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        jax.monitoring.register_event_listener(_count_cache_event)
    except Exception:  # noqa: BLE001 - an older jax without these settings compiles without a cache
        pass


def _import_jax() -> Any:
    try:
        import jax
    except ImportError as exc:
        raise Unavailable(str(exc)) from exc
    return jax


@register("backend")
class JaxBackend(MeshMixin, Backend):
    """JAX with jit (ahead-of-time compiled, compile time kept apart)."""

    name = "jax"
    #: the loop runs each outer step as one compiled function (suite/engine/compiled_step.py)
    fuses_step = True
    @classmethod
    def check_available(cls) -> None:
        _import_jax()

    def setup(self, dtype: str, device: str, seed: int) -> None:
        jax = _import_jax()
        import jax.numpy as jnp

        _enable_cache(jax)
        self._cache_start = dict(_cache_counts)

        self.jax = jax
        self.jnp = jnp
        self.ops = JaxOps(jax)
        self.dtype = dtype
        # Process-wide settings, scoped to this run: remembered here, restored by teardown() (and here, when
        # setup itself fails, since the runner calls teardown only after a successful setup).
        self._saved = {
            "jax_enable_x64": bool(jax.config.jax_enable_x64),
            # torch computes float32 matmuls in full precision on CUDA by default (allow_tf32 is off); XLA would
            # use TF32 on recent GPUs. Ask for full precision so that the backends compute the same thing.
            "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        }
        try:
            if dtype == "float64":
                jax.config.update("jax_enable_x64", True)
            jax.config.update("jax_default_matmul_precision", "highest")
            self._dtype = {"float32": jnp.float32, "float64": jnp.float64}[dtype]
            gpus = self._gpus()
            if device == "auto":
                device = "cuda" if gpus else "cpu"
            if device == "cuda" and not gpus:
                raise RuntimeError("device=cuda was asked for but jax sees no GPU")
        except BaseException:
            self.teardown()
            raise
        self.device = device
        self._dev = gpus[0] if device == "cuda" else jax.devices("cpu")[0]
        self.memory_kind = "jax_device" if device == "cuda" else "cpu_rss_delta"
        self._cpu_mem = CpuPeakRSS()
        self._gpu_baseline = 0

    def _gpus(self) -> list[Any]:
        try:
            return list(self.jax.devices("gpu"))
        except RuntimeError:  # no GPU backend in this jaxlib
            return []

    def teardown(self) -> None:
        saved = getattr(self, "_saved", None)
        if saved:
            for key, value in saved.items():
                self.jax.config.update(key, value)
            self._saved = {}

    # arrays
    def asarray(self, x: np.ndarray) -> Any:
        x = np.asarray(x)
        if np.issubdtype(x.dtype, np.floating):
            x = x.astype(self._dtype)
        return self.jax.device_put(x, self._dev if self._mesh is None else self._mesh.replicated)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    # autodiff
    def grad(self, f: Callable[..., Any]) -> Callable[..., Any]:
        return self.jax.grad(f, argnums=0)

    def vjp(self, f, x):
        out, pullback = self.jax.vjp(f, x)
        return out, lambda ct: pullback(ct)[0]

    def trajectory_vjp(self, f, x):
        """``jax.vjp(..., has_aux=True)``; the pullback is a ``jax.tree_util.Partial`` (a pytree holding the
        residuals), so a compiled forward can return it and a compiled backward take it: the trajectory is computed
        once, in the inner phase, and only pulled back in the hypergradient phase."""
        out, pullback, aux = self.jax.vjp(f, x, has_aux=True)
        return out, aux, self.jax.tree_util.Partial(_first_cotangent, pullback)

    def jvp(self, f, x, t):
        return self.jax.jvp(f, (x,), (t,))

    def hvp(self, f, x, v):
        return self.jax.jvp(self.jax.grad(f), (x,), (v,))[1]

    def hvp_operator(self, f, x):
        """``v ↦ H v`` from ``jax.linearize`` of ∇f: the gradient is traced and its linearisation built once."""
        return self.jax.linearize(self.jax.grad(f), x)[1]

    def hessian(self, f, x):
        return self.jax.hessian(f)(x)

    def solve(self, a, b):
        return self.jnp.linalg.solve(a, b)


    # mixed precision (suite/engine/precision.py)
    def precision_refusal(self, precision: str, method: str | None = None) -> str | None:
        """``None`` where ``jmp`` imports (the ``jax`` extra installs it)."""
        try:
            import jmp  # noqa: F401
        except ImportError as exc:
            return f"precision={precision} on jax needs jmp (pip install jmp): {exc}"
        return None

    def low_precision(self, loss, precision):
        """``loss`` under a ``jmp.Policy`` (params: the run's dtype, compute: bf16 | fp16, output: the run's dtype):
        the floating parameters and inputs are cast to the compute dtype where the loss is evaluated (integer labels
        kept), the loss cast back; jax differentiates through the casts, so the derivatives are computed in the low
        precision and arrive at the parameters in their own dtype."""
        import jmp

        compute = {"bf16": self.jnp.bfloat16, "fp16": self.jnp.float16}[precision]
        policy = jmp.Policy(param_dtype=self._dtype, compute_dtype=compute, output_dtype=self._dtype)

        def low(ops, params, batch):
            return policy.cast_to_output(loss(ops, policy.cast_to_compute(params), policy.cast_to_compute(batch)))

        return low

    # execution and measurement
    def compile(self, fn: Callable[..., Any], example_args: tuple[Any, ...]) -> tuple[Callable[..., Any], float]:
        start = time.perf_counter()
        jitted = self.jax.jit(fn)
        compiled = jitted.lower(*example_args).compile()
        if self._mesh is not None:  # over a mesh: the jitted function, which follows its inputs' shardings
            return jitted, time.perf_counter() - start
        return compiled, time.perf_counter() - start

    def block(self, tree):
        return self.jax.block_until_ready(tree)

    def compile_cache_stats(self) -> dict[str, int]:
        """This run's persistent-cache hits and misses so far (``{}`` with the cache off)."""
        if cache_dir() is None:
            return {}
        start = getattr(self, "_cache_start", {})
        return {key: _cache_counts.get(key, 0) - start.get(key, 0) for key in _CACHE_EVENTS.values()}

    def count_flops(self, fn, args):
        """FLOPs of ``fn(*args)`` from XLA's cost analysis of the program as traced (lowered, not compiled: the
        counting compiled nothing, and it counts what the program asks for, as torch's counter counts the operations
        dispatched; the compiled program's figure, after CSE and fusion, differed by −3 % … +15 % on the demos'
        hypergradients), its loops traced unrolled (the analysis counts a while loop's body once), plus
        :func:`_custom_call_flops` for the LAPACK calls it sees as opaque (a dense solve's LU factorisation and
        triangular solves). Lowering instead of compiling took 0.05 s against 1.05 s for quadratic × cg and 0.56 s
        against 4.8 s for Meta-Weight-Net × cg (cold, this 2-core machine)."""
        self.ops.unroll_loops = True
        try:  # a fresh function object: jit would otherwise reuse its trace of ``fn`` with the loops rolled
            lowered = self.jax.jit(lambda *a: fn(*a)).lower(*args)
        finally:
            self.ops.unroll_loops = False
        cost = lowered.cost_analysis()
        if isinstance(cost, list | tuple):  # a list of one dict per computation in older jax versions
            cost = cost[0] if cost else None
        if not cost or cost.get("flops") is None:
            return None
        return int(cost["flops"]) + _custom_call_flops(lowered.as_text(dialect="hlo"))

    def live_peak_bytes(self, fn, args):
        """XLA's memory analysis of the compiled ``fn``: the temporaries it allocates plus its outputs (arguments,
        i.e. the data and parameters it reads, are not counted) — a static figure, deterministic like torch's."""
        return self.compiled_live_bytes(self.jax.jit(fn).lower(*args).compile())

    def compiled_live_bytes(self, compiled):
        """:meth:`live_peak_bytes`'s figure from a program :meth:`compile` already compiled."""
        analysis = getattr(compiled, "memory_analysis", None)  # a plain function: nothing compiled to read
        mem = analysis() if analysis is not None else None
        return None if mem is None else int(mem.temp_size_in_bytes + mem.output_size_in_bytes)

    def reset_peak_memory(self) -> None:
        if self.device == "cuda":
            # XLA's allocator cannot reset its high-water mark: the window's figure is the peak above the bytes in
            # use now (the data and parameters). It is an upper bound when an earlier part of the process (e.g. the
            # warm-up call before the loop) peaked higher.
            self._gpu_baseline = int((self._dev.memory_stats() or {}).get("bytes_in_use", 0))
        else:
            self._cpu_mem.reset()

    def peak_memory_bytes(self) -> int | None:
        if self.device == "cuda":
            stats = self._dev.memory_stats() or {}
            if "peak_bytes_in_use" not in stats:
                return None
            return max(0, int(stats["peak_bytes_in_use"]) - self._gpu_baseline)
        return self._cpu_mem.peak_bytes()

    def free_memory_bytes(self) -> int | None:
        """On a GPU, XLA's pool left: ``bytes_limit − bytes_in_use`` (suite/measure/headroom.py); ``None`` on CPU."""
        stats = (self._dev.memory_stats() or {}) if self.device == "cuda" else {}
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)) if "bytes_limit" in stats else None

    def versions(self) -> dict[str, str]:
        import jaxlib

        info = {"jax": self.jax.__version__, "jaxlib": jaxlib.__version__}
        dev = getattr(self, "_dev", None)  # absent when setup failed part-way
        if dev is not None:
            info["jax_platform"] = dev.platform
        if dev is not None and self.device == "cuda":
            info["gpu"] = str(getattr(dev, "device_kind", dev))
        return info
