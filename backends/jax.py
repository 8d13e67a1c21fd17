"""The jax backend: jax.numpy arrays, jax transforms (grad, vjp, jvp, forward-over-reverse HVPs), ahead-of-time jit.

jax is imported lazily (in ``check_available`` / ``setup``), so this module imports where jax is missing and the
backend reports itself unavailable with the import error. Every function the runner calls is compiled ahead of time
(``jax.jit(fn).lower(*args).compile()``), so compile time is measured on its own and never inside a timed phase.
Process-wide jax settings a run needs (64-bit floats, full-precision matmuls) are set in ``setup`` and restored in
``teardown``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from suite.contract import Backend, Unavailable
from suite.measure import CpuPeakRSS
from suite.registry import register


class JaxOps:
    """The ops protocol on jax arrays."""

    def __init__(self, jax: Any) -> None:
        self.np = jax.numpy
        self.nn = jax.nn
        self.lax = jax.lax

    def zeros_like(self, x):
        return self.np.zeros_like(x)

    def ones_like(self, x):
        return self.np.ones_like(x)

    def reshape(self, x, shape):
        return self.np.reshape(x, shape)

    def concatenate(self, xs, axis=0):
        return self.np.concatenate(list(xs), axis=axis)

    def transpose(self, x):
        return x.T

    def matmul(self, a, b):
        return self.np.matmul(a, b)

    def exp(self, x):
        return self.np.exp(x)

    def log(self, x):
        return self.np.log(x)

    def sqrt(self, x):
        return self.np.sqrt(x)

    def tanh(self, x):
        return self.np.tanh(x)

    def relu(self, x):
        return self.nn.relu(x)

    def sigmoid(self, x):
        return self.nn.sigmoid(x)

    def maximum(self, a, b):
        return self.np.maximum(a, b)

    def where(self, cond, a, b):
        return self.np.where(cond, a, b)

    def sum(self, x, axis=None):
        return self.np.sum(x, axis=axis)

    def mean(self, x, axis=None):
        return self.np.mean(x, axis=axis)

    def max(self, x, axis=None):
        return self.np.max(x, axis=axis)

    def argmax(self, x, axis=-1):
        return self.np.argmax(x, axis=axis)

    def log_softmax(self, x, axis=-1):
        return self.nn.log_softmax(x, axis=axis)

    def take_along_last(self, x, index):
        return self.np.take_along_axis(x, index[:, None], axis=-1)[:, 0]

    def stop_gradient(self, x):
        return self.lax.stop_gradient(x)

    def fori_loop(self, lower, upper, body, init):
        """Traced once (``lax.fori_loop``): compile time does not grow with a solver's iteration count."""
        return self.lax.fori_loop(lower, upper, body, init)


def _import_jax() -> Any:
    try:
        import jax
    except ImportError as exc:
        raise Unavailable(str(exc)) from exc
    return jax


@register("backend")
class JaxBackend(Backend):
    """JAX with jit (ahead-of-time compiled, compile time kept apart)."""

    name = "jax"

    @classmethod
    def check_available(cls) -> None:
        _import_jax()

    def setup(self, dtype: str, device: str, seed: int) -> None:
        jax = _import_jax()
        import jax.numpy as jnp

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
        return self.jax.device_put(x, self._dev)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    # autodiff
    def grad(self, f: Callable[..., Any]) -> Callable[..., Any]:
        return self.jax.grad(f, argnums=0)

    def vjp(self, f, x):
        out, pullback = self.jax.vjp(f, x)
        return out, lambda ct: pullback(ct)[0]

    def jvp(self, f, x, t):
        return self.jax.jvp(f, (x,), (t,))

    def hvp(self, f, x, v):
        return self.jax.jvp(self.jax.grad(f), (x,), (v,))[1]

    def hessian(self, f, x):
        return self.jax.hessian(f)(x)

    def solve(self, a, b):
        return self.jnp.linalg.solve(a, b)


    # execution and measurement
    def compile(self, fn: Callable[..., Any], example_args: tuple[Any, ...]) -> tuple[Callable[..., Any], float]:
        start = time.perf_counter()
        compiled = self.jax.jit(fn).lower(*example_args).compile()
        return compiled, time.perf_counter() - start

    def block(self, tree):
        return self.jax.block_until_ready(tree)

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

    def versions(self) -> dict[str, str]:
        import jaxlib

        info = {"jax": self.jax.__version__, "jaxlib": jaxlib.__version__}
        dev = getattr(self, "_dev", None)  # absent when setup failed part-way
        if dev is not None:
            info["jax_platform"] = dev.platform
        if dev is not None and self.device == "cuda":
            info["gpu"] = str(getattr(dev, "device_kind", dev))
        return info
