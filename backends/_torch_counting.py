"""Counting for the torch backends (torch, naive, and any backend built on them): FLOP formulas for the ops
``FlopCounterMode`` leaves out, a lean FLOP-counting dispatch mode, and the live-bytes tracker behind
``peak_live_bytes``. A helper module, not a plugin (its name starts with ``_``)."""

from __future__ import annotations

from typing import Any


def _prod(shape: Any) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def flop_formulas(torch: Any) -> dict[Any, Any]:
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


def flop_mode(formulas: dict[Any, Any]) -> Any:
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


def live_bytes_mode(torch: Any, exclude: set[int] = frozenset()) -> Any:
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


#: Arguments of fewer bytes are counted for real: a fake op costs its dispatch (tens of µs) whatever its size, so on
#: small programs the fake run is the slower one. Measured on ``+experiment=memory_scaling``'s points (2026-12-07,
#: this 2-core CPU, load ≈ 1, the two counts of a run, FLOPs + bytes, fake against real): 17M parameters, cg (≈ 210 MB
#: of arguments) 15.8 s against 9.5 s; 67M, cg (≈ 800 MB) 15.5 s against 37.8 s; 110M, darts (≈ 1.3 GB) 4.7 s
#: against 11.6 s; Meta-Weight-Net's demo (0.1 MiB) 0.1–0.3 s more per run.
FAKE_FROM_BYTES = 512 * 2**20


def live_peak(torch: Any, fn: Any, args: tuple, fake_only: bool = False) -> int | None:
    """Peak bytes alive while ``fn(*args)`` runs beyond its arguments (:func:`live_bytes_mode`), counted by
    :func:`counted`. Views of the arguments (e.g. ``A.T`` of the task's data) share the arguments' storage: not
    allocated by ``fn``."""
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._pytree import tree_leaves

    def tracker(args):
        inputs = {StorageWeakRef(t.untyped_storage()).cdata for t in tree_leaves(args) if isinstance(t, torch.Tensor)}
        return live_bytes_mode(torch, exclude=inputs)

    mode = counted(torch, fn, args, tracker, fake_only)
    return None if mode is None else mode.peak


def counted(torch: Any, fn: Any, args: tuple, mode_for: Any, fake_only: bool = False) -> Any:
    """Run ``fn(*args)`` under the counting mode ``mode_for(args)`` returns, and return that mode — on fake tensors
    where the program allows (``FakeTensorMode``: every op allocates a storage of the real size, dtype and device
    and computes nothing), else on the real arguments. Counts are those of a real run (the tests compare both on
    every method): a counter sees shapes, dtypes and storages, never values. A program that reads a value (``item``,
    a data-dependent shape or branch) cannot run on fake tensors; it is counted for real, as before, at the cost of
    one real call. The real call's cost is what this saves where arguments are large (:data:`FAKE_FROM_BYTES`), and
    on a GPU a fake count allocates nothing; no RNG is drawn from on fake tensors, so what follows is unchanged.
    The mode returned says which it ran on (``mode.on``: ``"fake"`` | ``"real"``); with ``fake_only``, ``None``
    where the fake run is not taken (small arguments) or fails — nothing real runs."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._pytree import tree_leaves, tree_map

    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tree_leaves(args)
                if isinstance(t, torch.Tensor)}  # views of one storage count it once
    size = sum(storages.values())
    if size >= FAKE_FROM_BYTES:
        try:
            fake = FakeTensorMode(allow_non_fake_inputs=True)
            fargs = tree_map(lambda t: fake.from_tensor(t) if isinstance(t, torch.Tensor) else t, args)
            mode = mode_for(fargs)
            with fake, mode:
                fn(*fargs)
            mode.on = "fake"
            return mode
        except Exception:  # noqa: BLE001 — whatever stops a fake run, the real run below counts it or raises it
            pass
    if fake_only:
        return None
    mode = mode_for(args)
    with mode:
        fn(*args)
    mode.on = "real"
    return mode
