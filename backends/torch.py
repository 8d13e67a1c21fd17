"""The torch backend: torch.func transforms (grad, vjp, jvp), eager execution.

Second-order products are reverse-over-reverse: on CPU with torch 2.13, ``jvp(grad(f))`` (forward-over-reverse) was
5–7× slower than ``vjp(grad(f))`` for a dense quadratic (d = 1000: 5.1 ms vs 0.70 ms per HVP; d = 4000: 110 ms vs
23 ms), and ``torch.func.hessian`` (jacfwd of jacrev) 7× slower than ``jacrev(grad(f))`` (d = 1000: 366 ms vs 50 ms).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mlo_bench.suite.contract import Backend
from mlo_bench.suite.measure import CpuPeakRSS
from mlo_bench.suite.registry import register


class TorchOps:
    """The ops protocol on torch tensors."""

    def __init__(self, torch: Any) -> None:
        self.t = torch

    def zeros_like(self, x):
        return self.t.zeros_like(x)

    def ones_like(self, x):
        return self.t.ones_like(x)

    def reshape(self, x, shape):
        return self.t.reshape(x, shape)

    def concatenate(self, xs, axis=0):
        return self.t.cat(list(xs), dim=axis)

    def transpose(self, x):
        return x.T

    def matmul(self, a, b):
        return self.t.matmul(a, b)

    def exp(self, x):
        return self.t.exp(x)

    def log(self, x):
        return self.t.log(x)

    def sqrt(self, x):
        return self.t.sqrt(x)

    def tanh(self, x):
        return self.t.tanh(x)

    def relu(self, x):
        return self.t.relu(x)

    def sigmoid(self, x):
        return self.t.sigmoid(x)

    def maximum(self, a, b):
        return self.t.maximum(a, b)

    def where(self, cond, a, b):
        return self.t.where(cond, a, b)

    def sum(self, x, axis=None):
        return self.t.sum(x) if axis is None else self.t.sum(x, dim=axis)

    def mean(self, x, axis=None):
        return self.t.mean(x) if axis is None else self.t.mean(x, dim=axis)

    def max(self, x, axis=None):
        return self.t.max(x) if axis is None else self.t.amax(x, dim=axis)

    def argmax(self, x, axis=-1):
        return self.t.argmax(x, dim=axis)

    def log_softmax(self, x, axis=-1):
        return self.t.log_softmax(x, dim=axis)

    def take_along_last(self, x, index):
        return self.t.gather(x, -1, index[:, None])[:, 0]

    def stop_gradient(self, x):
        return x.detach()

    def conv2d(self, x, w, stride=1, padding=0, dilation=1, groups=1):
        return self.t.nn.functional.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)

    def avg_pool2d(self, x, size, stride=None, padding=0):
        return self.t.nn.functional.avg_pool2d(x, size, stride=stride or size, padding=padding,
                                               count_include_pad=False)

    def max_pool2d(self, x, size, stride=None, padding=0):
        return self.t.nn.functional.max_pool2d(x, size, stride=stride or size, padding=padding)

    def pad2d(self, x, padding):
        top, bottom, left, right = padding
        return self.t.nn.functional.pad(x, (left, right, top, bottom))

    def softmax(self, x, axis=-1):
        return self.t.softmax(x, dim=axis)


@register("backend")
class TorchBackend(Backend):
    """PyTorch with torch.func: the reference implementation of every method."""

    name = "torch"

    @classmethod
    def check_available(cls) -> None:
        import torch  # noqa: F401

    def setup(self, dtype: str, device: str, seed: int) -> None:
        import torch

        self.torch = torch
        self.func = torch.func
        self.ops = TorchOps(torch)
        self.dtype = dtype
        self._dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device=cuda was asked for but torch sees no CUDA device")
        self.device = device
        self._dev = torch.device(device)
        self.memory_kind = "cuda_allocated" if device == "cuda" else "cpu_rss_delta"
        self._cpu_mem = CpuPeakRSS()
        torch.manual_seed(seed)

    # arrays
    def asarray(self, x: np.ndarray) -> Any:
        x = np.asarray(x)
        dtype = self._dtype if np.issubdtype(x.dtype, np.floating) else None
        return self.torch.as_tensor(x, dtype=dtype, device=self._dev)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    # autodiff
    def grad(self, f: Callable[..., Any]) -> Callable[..., Any]:
        return self.func.grad(f, argnums=0)

    def vjp(self, f, x):
        out, pullback = self.func.vjp(f, x)
        return out, lambda ct: pullback(ct)[0]

    def trajectory_vjp(self, f, x):
        out, pullback, aux = self.func.vjp(f, x, has_aux=True)
        return out, aux, lambda ct: pullback(ct)[0]

    def jvp(self, f, x, t):
        return self.func.jvp(f, (x,), (t,))

    def hvp(self, f, x, v):
        return self.func.vjp(self.func.grad(f), x)[1](v)[0]

    def hessian(self, f, x):
        return self.func.jacrev(self.func.grad(f))(x)

    def solve(self, a, b):
        return self.torch.linalg.solve(a, b)

    # execution and measurement
    def block(self, tree):
        if self.device == "cuda":
            self.torch.cuda.synchronize()
        return tree

    def reset_peak_memory(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        else:
            self._cpu_mem.reset()

    def peak_memory_bytes(self) -> int | None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()
            return int(self.torch.cuda.max_memory_allocated())
        return self._cpu_mem.peak_bytes()

    def live_peak_bytes(self, fn, args):
        from torch.multiprocessing.reductions import StorageWeakRef
        from torch.utils._pytree import tree_leaves

        # Views of the arguments (e.g. ``A.T`` of the task's data) share the arguments' storage: not allocated by fn.
        inputs = {StorageWeakRef(t.untyped_storage()).cdata for t in tree_leaves(args)
                  if isinstance(t, self.torch.Tensor)}
        tracker = _live_bytes_mode(self.torch, exclude=inputs)
        with tracker:
            self.block(fn(*args))
        return tracker.peak

    def count_flops(self, fn, args):
        """FLOPs of ``fn(*args)`` with the formulas of ``torch.utils.flop_counter.FlopCounterMode`` (matmuls,
        convolutions, attention) and those it lacks, added as its ``custom_mapping`` (:func:`_flop_formulas`: mv, dot,
        addmv, dense solves). Like FlopCounterMode, elementwise ops and reductions are not counted (O(size)).

        The ops are seen by a lean dispatch mode over FlopCounterMode's formula registry rather than by
        FlopCounterMode itself, which per op also tries a decomposition and tracks modules: on the naive backend's
        row-by-row Jacobians (10⁵ small ops) that costs 2–3× more for the same count (the tests compare the two)."""
        from torch.utils.flop_counter import FlopCounterMode

        formulas = FlopCounterMode(display=False, custom_mapping=_flop_formulas(self.torch)).flop_registry
        counter = _flop_mode(formulas)
        with counter:
            self.block(fn(*args))
        return int(counter.total)

    def versions(self) -> dict[str, str]:
        info = {"torch": self.torch.__version__, "torch_threads": str(self.torch.get_num_threads())}
        if self.device == "cuda":
            info["cuda"] = str(self.torch.version.cuda)
            info["gpu"] = self.torch.cuda.get_device_name()
        return info


def _prod(shape: Any) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _flop_formulas(torch: Any) -> dict[Any, Any]:
    """FLOP formulas (FlopCounterMode's ``custom_mapping``: called with the arguments' shapes) for the ops that
    torch's counter leaves out and our programs dispatch: a multiply-add is 2 FLOPs, as in its ``mm`` formula.

    - ``mv`` (m×n matrix, n vector): 2mn; ``addmv``: 2mn (the add is not counted, as for ``addmm``);
      ``dot`` / ``vdot``: 2n.
    - dense solve ``_linalg_solve_ex`` (what ``torch.linalg.solve`` dispatches to) of an n×n system with k right-hand
      sides: an LU factorisation, 2/3·n³, and a forward and a back substitution per right-hand side, 2·n²·k;
      ``linalg_lu_factor_ex``: 2/3·n³; ``linalg_lu_solve``: 2·n²·k; ``linalg_solve_triangular``: n²·k; per batch item.
    """
    aten = torch.ops.aten

    def mv(a, x, *args, out_shape=None, **kwargs):
        return 2 * int(a[0]) * int(a[1])

    def addmv(c, a, x, *args, out_shape=None, **kwargs):
        return 2 * int(a[0]) * int(a[1])

    def dot(a, b, *args, out_shape=None, **kwargs):
        return 2 * int(a[0])

    def _rhs(a, b) -> int:
        return 1 if len(b) == len(a) - 1 else int(b[-1])

    def solve(a, b, *args, out_shape=None, **kwargs):
        n = int(a[-1])
        return _prod(a[:-2]) * (2 * n**3 // 3 + 2 * n * n * _rhs(a, b))

    def lu_factor(a, *args, out_shape=None, **kwargs):
        n = int(a[-1])
        return _prod(a[:-2]) * (2 * n**3 // 3)

    def lu_solve(lu, pivots, b, *args, out_shape=None, **kwargs):
        n = int(lu[-1])
        return _prod(lu[:-2]) * 2 * n * n * _rhs(lu, b)

    def triangular(a, b, *args, out_shape=None, **kwargs):
        n = int(a[-1])
        return _prod(a[:-2]) * n * n * _rhs(a, b)

    return {aten.mv: mv, aten.addmv: addmv, aten.dot: dot, aten.vdot: dot, aten._linalg_solve_ex: solve,
            aten.linalg_lu_factor_ex: lu_factor, aten.linalg_lu_solve: lu_solve,
            aten.linalg_solve_triangular: triangular}


def _flop_mode(formulas: dict[Any, Any]) -> Any:
    """A dispatch mode that adds up ``formulas[op](*args, out_val=out)`` (FlopCounterMode's registry: op packet →
    shape-wrapped formula) over every op ``fn`` dispatches."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Flops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = formulas.get(func.overloadpacket)
            if formula is not None:
                self.total += int(formula(*args, **kwargs, out_val=out))
            return out

    return Flops()


def _live_bytes_mode(torch: Any, exclude: set[int] = frozenset()) -> Any:
    """A dispatch mode that sees every tensor an op creates and tracks, through weak references to the C++ storages
    (so tensors held only by autograd graphs or torch.func count too), the peak of bytes alive at once. Storages
    in ``exclude`` (the arguments', whose views cost nothing) are never counted."""
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    expired = torch.UntypedStorage._expired  # what StorageWeakRef.expired() calls, without its Python layers

    class LiveBytes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live: dict[int, tuple[Any, int]] = {}
            self.total = 0
            self.peak = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    storage = t.untyped_storage()
                    ref = StorageWeakRef(storage)  # held: its storage's address is not reused while tracked
                    if ref.cdata not in self.live and ref.cdata not in exclude:
                        self.live[ref.cdata] = (ref, storage.nbytes())
                        self.total += storage.nbytes()
            # ``total`` still counts storages that died since the last sweep, so it bounds the bytes alive from
            # above: only when it exceeds the peak can this be a new peak, and only then are the dead swept out
            # (exact, and far cheaper than a sweep after every op when many storages are alive).
            if self.total > self.peak:
                for dead in [k for k in self.live if expired(k)]:
                    self.total -= self.live.pop(dead)[1]
                self.peak = max(self.peak, self.total)
            return out

    return LiveBytes()
