"""The torch backend: plain ``torch.autograd`` for gradients, VJPs and HVPs, ``torch.func`` for Hessians; eager.

Gradients, VJPs, HVPs (reverse over reverse: H v = ∇⟨∇f, v⟩) and JVPs (the double-backward trick) are
``torch.autograd.grad`` calls, with ``create_graph`` only where the result is differentiated again — inside another
derivative (a nesting depth the backend tracks) or when an input is itself on a graph — and the graph of a
derivative nobody differentiates again freed at once. torch.func is kept where it earns its place: the Hessian,
``jacrev(grad(f))``, whose rows are VJPs batched by ``vmap`` (7× faster than ``torch.func.hessian``, jacfwd of jacrev,
at d = 1000: 50 ms vs 366 ms; far faster than row-by-row autograd, the naive backend's).

Why not torch.func everywhere (as until issue #18): each ``torch.func.grad`` / ``vjp`` call wraps its inputs and
flattens pytrees on entry and exit, ≈ 0.27 ms per call on the Betty-sized Meta-Weight-Net step (MLP 64 → 100 → 10,
batch 64), where the arithmetic of a gradient is about as long: that step took 1.5–1.8× the plain-autograd (naive
``chain=reverse``) time on every method, cg 1.7× (26 ms vs 15 ms: one functorch ``vjp(grad)`` per CG iteration).
With autograd the two run the same arithmetic; the figures before and after are in docs/floor.md.
``torch.compile`` was not chosen: on this 2-core CPU its compile time (tens of seconds per function, recompiled per
shape and per method) dwarfs a demo run, and the step is dispatch-bound, not kernel-bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from mlo_bench.backends._torch_counting import counted, flop_formulas, flop_mode, live_peak
from mlo_bench.suite.contract import Backend
from mlo_bench.suite.engine.trees import tree_leaves, tree_map, tree_unflatten
from mlo_bench.suite.measure.instruments import CpuPeakRSS
from mlo_bench.suite.plugins.registry import register

Tree = Any


def _tensors(obj: Any) -> Iterator[Any]:
    """Every leaf of nested dicts, lists and tuples."""
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from _tensors(value)
    else:
        yield obj


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

    def swapaxes(self, x, a, b):
        return self.t.transpose(x, a, b)

    def to_compute(self, x):
        device = x.device.type
        if x.is_floating_point() and self.t.is_autocast_enabled(device):
            return x.to(self.t.get_autocast_dtype(device))
        return x

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
    """PyTorch: autograd for derivatives (graphs freed as soon as nobody needs them), torch.func for Hessians."""

    name = "torch"
    #: keep every derivative's graph (``retain_graph=True``) until its outputs die, as the original MWN / ``higher``
    #: code does: the naive backend sets it; here a graph that is not differentiated again is freed at once
    retain_graphs = False
    #: data parallel as torch.distributed processes, one per rank (backends/_torch_dist.py: where each reduction goes)
    parallel = "processes"

    @classmethod
    def for_rank(cls, config: Any, rank: int, world_size: int, init_method: str, timeout_s: float) -> Any:
        """This backend as rank ``rank`` of a data-parallel run (:func:`mlo_bench.backends._torch_dist.for_rank`)."""
        from mlo_bench.backends._torch_dist import for_rank

        return for_rank(cls, config, rank, world_size, init_method, timeout_s)

    @classmethod
    def check_available(cls) -> None:
        import torch  # noqa: F401

    @classmethod
    def cuda_visible(cls) -> bool:
        """``torch.cuda.is_available()`` (no CUDA context is created); ``False`` where torch cannot be imported."""
        try:
            import torch

            return bool(torch.cuda.is_available())
        except Exception:  # noqa: BLE001 - torch is a dependency, but a broken install is still a reason
            return False

    def setup(self, dtype: str, device: str, seed: int) -> None:
        import torch

        self.torch = torch
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
        self._depth = 0
        torch.manual_seed(seed)

    # arrays
    def asarray(self, x: np.ndarray) -> Any:
        x = np.asarray(x)
        dtype = self._dtype if np.issubdtype(x.dtype, np.floating) else None
        return self.torch.as_tensor(x, dtype=dtype, device=self._dev)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    # autodiff with torch.autograd.grad ---------------------------------------------------------------------------
    @contextmanager
    def _nested(self) -> Iterator[None]:
        """While a function is being differentiated, derivatives taken inside it must keep their graph."""
        self._depth += 1
        try:
            with self.torch.enable_grad():
                yield
        finally:
            self._depth -= 1

    def _keep_graph(self, *trees: Tree) -> bool:
        """create_graph for a derivative: inside another transform, or when an input is itself on a graph."""
        if self._depth > 0:
            return True
        return any(isinstance(t, self.torch.Tensor) and t.requires_grad for t in _tensors(trees))

    def _variables(self, x: Tree) -> tuple[Tree, list[Any]]:
        """Fresh differentiable aliases of ``x``'s leaves (so the derivative is w.r.t. this argument only)."""
        leaves = [t.view_as(t) if t.requires_grad else t.detach().requires_grad_(True) for t in tree_leaves(x)]
        return tree_unflatten(x, leaves), leaves

    def _grad(self, outs: list[Any], inputs: list[Any], cts: list[Any] | None, create: bool,
              retain: bool = False) -> list[Any]:
        """Σ_i ⟨ct_i, ∂out_i/∂inputs⟩ with autograd (zeros for inputs that the outputs do not depend on)."""
        pairs = [(o, c) for o, c in zip(outs, cts or [None] * len(outs), strict=True) if o.requires_grad]
        if not pairs:
            return [self.torch.zeros_like(x) for x in inputs]
        grads = self.torch.autograd.grad(
            [o for o, _ in pairs], inputs, grad_outputs=[c for _, c in pairs] if cts is not None else None,
            retain_graph=create or retain or self.retain_graphs, create_graph=create, allow_unused=True,
        )
        return [self.torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)]

    def grad(self, f: Callable[..., Any]) -> Callable[..., Any]:
        def grad_f(x, *args):
            create = self._keep_graph(x, args)
            xs, leaves = self._variables(x)
            with self._nested():
                out = f(xs, *args)
            return tree_unflatten(x, self._grad([out], leaves, None, create))

        return grad_f

    def vjp(self, f, x):
        create = self._keep_graph(x)
        xs, leaves = self._variables(x)
        with self._nested():
            out = f(xs)

        def pullback(ct):  # may be called more than once: the graph lives as long as this closure
            keep = create or self._keep_graph(ct)
            return tree_unflatten(x, self._grad(tree_leaves(out), leaves, tree_leaves(ct), keep, retain=True))

        return (out if create else tree_map(lambda t: t.detach(), out)), pullback

    def trajectory_vjp(self, f, x):
        """The inner steps actually taken, with their graph kept until the pullback (one backward)."""
        box: dict[str, Tree] = {}

        def out_only(z):
            out, box["aux"] = f(z)
            return out

        out, pullback = self.vjp(out_only, x)
        return out, tree_map(lambda t: t.detach() if hasattr(t, "detach") else t, box["aux"]), pullback

    def jvp(self, f, x, t):
        """Forward mode by the double-backward trick: J t = ∂/∂u ⟨Jᵀ u, t⟩ for a dummy cotangent u."""
        create = self._keep_graph(x, t)
        xs, leaves = self._variables(x)
        with self._nested():
            out = f(xs)
            outs = tree_leaves(out)
            dummies = [self.torch.zeros_like(o).requires_grad_(True) for o in outs]
            back = self._grad(outs, leaves, dummies, True)
        tangent = self._grad(back, dummies, tree_leaves(t), create)
        out = out if create else tree_map(lambda o: o.detach(), out)
        return out, tree_unflatten(out, tangent)

    def hvp(self, f, x, v):
        """Reverse over reverse: H v = ∇_x ⟨∇_x f, v⟩ (the Hessian of a scalar loss is symmetric)."""
        create = self._keep_graph(x, v)
        xs, leaves = self._variables(x)
        with self._nested():
            g = self._grad([f(xs)], leaves, None, True)
        return tree_unflatten(x, self._grad(g, leaves, tree_leaves(v), create))

    def hvp_operator(self, f, x):
        """``v ↦ H v`` with ∇f's graph built once (``create_graph``) and kept for every product (one backward each)."""
        create = self._keep_graph(x)
        xs, leaves = self._variables(x)
        with self._nested():
            g = self._grad([f(xs)], leaves, None, True)

        def matvec(v):
            keep = create or self._keep_graph(v)
            return tree_unflatten(x, self._grad(g, leaves, tree_leaves(v), keep, retain=True))

        return matvec

    def hessian(self, f, x):
        """``torch.func.jacrev(torch.func.grad(f))``: the rows are VJPs batched by vmap."""
        return self.torch.func.jacrev(self.torch.func.grad(f))(x)

    def solve(self, a, b):
        return self.torch.linalg.solve(a, b)

    # mixed precision (suite/engine/precision.py)
    def precision_refusal(self, precision: str, method: str | None = None) -> str | None:
        """``None`` where ``torch.amp.is_autocast_available`` for the device (asked before ``setup`` too: cpu then)."""
        import torch

        device = getattr(self, "_dev", None)
        kind = device.type if device is not None else "cpu"
        if not torch.amp.is_autocast_available(kind):
            return f"precision={precision}: torch has no autocast for device {kind}"
        return None

    def low_precision(self, loss, precision):
        """``loss`` under ``torch.autocast(device, bf16 | fp16)``: matmuls and convolutions (autocast's lower-precision
        list) run in the low precision on float32 master parameters, the ops autocast keeps in float32 (softmax,
        log, reductions of its fp32 list) stay there; the loss is cast back to the run's dtype. Backward passes
        differentiate the ops as they ran (a bf16 matmul's VJP is a bf16 matmul), so every derivative of the loss
        — gradients, VJPs, HVPs — is in the low precision too."""
        torch, device = self.torch, self._dev.type
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        master = self._dtype

        def low(ops, params, batch):
            with torch.autocast(device_type=device, dtype=dtype):
                out = loss(ops, params, batch)
            return out.to(master)

        return low

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

    def free_memory_bytes(self) -> int | None:
        """On CUDA, the device's free bytes plus what torch's caching allocator holds unused (measure/headroom.py)."""
        if self.device != "cuda":
            return None
        torch = self.torch
        return int(torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved() - torch.cuda.memory_allocated())

    def live_peak_bytes(self, fn, args):
        peak = live_peak(self.torch, fn, args)
        self.block(None)  # a real count's kernels finish here, not inside the first timed phase
        return peak

    def fake_peak_bytes(self, fn, args):
        """:meth:`live_peak_bytes` where it is counted on fake tensors (large arguments), else ``None``: nothing
        runs, allocates or draws randomness, so the memory guard asks it before compiling (measure/headroom.py)."""
        return live_peak(self.torch, fn, args, fake_only=True)

    def count_flops(self, fn, args):
        """FLOPs of ``fn(*args)`` with the formulas of ``torch.utils.flop_counter.FlopCounterMode`` (matmuls,
        convolutions, attention) and those it lacks, added as its ``custom_mapping`` (:func:`flop_formulas`: mv, dot,
        addmv, dense solves). Like FlopCounterMode, elementwise ops and reductions are not counted (O(size)).

        The ops are seen by a lean dispatch mode over FlopCounterMode's formula registry rather than by
        FlopCounterMode itself, which per op also tries a decomposition and tracks modules: on the naive backend's
        row-by-row Jacobians (10⁵ small ops) that costs 2–3× more for the same count (the tests compare the two)."""
        from torch.utils.flop_counter import FlopCounterMode

        formulas = FlopCounterMode(display=False, custom_mapping=flop_formulas(self.torch)).flop_registry
        total = int(counted(self.torch, fn, args, lambda _: flop_mode(formulas)).total)
        self.block(None)
        return total

    def versions(self) -> dict[str, str]:
        info = {"torch": self.torch.__version__, "torch_threads": str(self.torch.get_num_threads())}
        if self.device == "cuda":
            info["cuda"] = str(self.torch.version.cuda)
            info["gpu"] = self.torch.cuda.get_device_name()
        return info
