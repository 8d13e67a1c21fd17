"""Data parallel on torch: one process per rank in a ``torch.distributed`` process group (gloo on CPU, NCCL on CUDA),
the same mathematics as one rank (``parallel.world_size``; the ranks are started by :mod:`mlo_bench.suite.run.ranks`).

Every rank holds the same parameters and sees a contiguous shard of each level's batch (:meth:`shard_batch`). Two
rules, in this one place, make every derivative the one-rank run's, to every order, for every method:

1. A loss sums over its examples with ``ops.all_sum`` (:func:`mlo_bench.suite.models.batch.batch_sum`): the local
   sum summed over the ranks by :class:`AllSum`, an all-reduce whose backward is the same all-reduce (its true
   adjoint), so a loss's value is the global batch's on every rank and a backward through it — or through a backward
   containing it (an HVP, an unrolled trajectory) — is a collective too.
2. A derivative with respect to the (replicated) inputs — ``grad``, a ``vjp`` pullback, ``hvp``, an HVP operator's
   products, ``hessian`` — is averaged over the ranks (:func:`all_mean`, differentiable, so derivatives of it stay
   exact). Why the mean: each rank's reverse pass, seeded with the same cotangent, gives the block of the distributed
   Jacobian for its own copy of the inputs; the copies sum to N times the one-rank derivative. A ``jvp`` needs
   nothing: its tangent already moves every copy.

Where the reductions go, per method (each method's docstring says the same): ``cg`` / ``neumann``: one all-reduce per
iteration (each Hessian-vector product, rule 2) plus the loss sums inside it (rule 1); ``darts``: each of its two
perturbed gradients (rule 2); ``unroll``: each inner step's gradient, forward (rule 2) and again on the way back
through the trajectory (the adjoint of every collective, rule 1); ``soba`` / ``sama``: their state is updated from
reduced derivatives, so it stays replicated; ``exact``: the Hessian, the collectives inside its ``jacrev`` batched
over its d products, then one mean (rule 2). DDP's bucketing is not used: DDP reduces ``param.grad`` filled by
``.backward()`` on an ``nn.Module``; the suite's levels are pure functions whose gradients come from
``torch.autograd.grad`` (with ``create_graph`` where differentiated again), which DDP's reducer never sees.

``time_comm_s``: wall seconds inside the collectives (CUDA synchronised before and after), apart from compute.

Fault injection for the tests: ``MLO_BENCH_RANK_FAULT=kill:R:K`` (or ``hang:R:K``) makes rank R SIGKILL (stop) itself
at its K-th collective.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from typing import Any

import numpy as np

from mlo_bench.suite.engine.trees import tree_map

FAULT_ENV = "MLO_BENCH_RANK_FAULT"


class Comm:
    """The process group's collectives, timed: ``seconds`` inside them and ``calls``."""

    def __init__(self, torch: Any, rank: int, world_size: int, cuda: bool) -> None:
        self.torch, self.dist = torch, torch.distributed
        self.rank, self.world_size, self.cuda = rank, world_size, cuda
        self.seconds, self.calls = 0.0, 0
        fault = os.environ.get(FAULT_ENV, "")
        self.fault = None
        if fault:
            kind, r, k = fault.split(":")
            if int(r) == rank:
                self.fault = (kind, int(k))

    def _sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def _maybe_fault(self) -> None:
        if self.fault is not None and self.calls == self.fault[1]:
            os.kill(os.getpid(), signal.SIGKILL if self.fault[0] == "kill" else signal.SIGSTOP)

    def all_reduce(self, x: Any) -> Any:
        self._maybe_fault()
        self.calls += 1
        y = x.detach().clone().contiguous()
        self._sync()
        tick = time.perf_counter()
        self.dist.all_reduce(y)
        self._sync()
        self.seconds += time.perf_counter() - tick
        return y

    def all_max(self, x: Any) -> Any:
        self._maybe_fault()
        self.calls += 1
        y = x.detach().clone().contiguous()
        self._sync()
        tick = time.perf_counter()
        self.dist.all_reduce(y, op=self.dist.ReduceOp.MAX)
        self._sync()
        self.seconds += time.perf_counter() - tick
        return y

    def all_gather(self, value: Any) -> list[Any]:
        self._maybe_fault()
        self.calls += 1
        out: list[Any] = [None] * self.world_size
        tick = time.perf_counter()
        self.dist.all_gather_object(out, value)
        self.seconds += time.perf_counter() - tick
        return out


def _all_sum_fn(torch: Any) -> type:
    class AllSum(torch.autograd.Function):
        """``Σ_ranks x``; backward: ``Σ_ranks`` of the cotangent (the true adjoint), itself differentiable. Written
        for torch.func (``setup_context``) with a batching rule: under ``vmap`` — ``jacrev``'s batch of cotangents —
        the whole batch is one all-reduce (the sum is elementwise), so a d×d Hessian costs a few collectives, not d."""

        @staticmethod
        def forward(x: Any, comm: Comm) -> Any:
            return comm.all_reduce(x)

        @staticmethod
        def setup_context(ctx: Any, inputs: tuple[Any, Comm], output: Any) -> None:
            ctx.comm = inputs[1]

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return AllSum.apply(g, ctx.comm), None

        @staticmethod
        def vmap(info: Any, in_dims: tuple[int | None, None], x: Any, comm: Comm) -> tuple[Any, int | None]:
            return AllSum.apply(x, comm), in_dims[0]

    return AllSum


class DistributedOps:
    """The backend's ops with ``all_sum`` and ``all_max`` (the ops protocol's optional data-parallel reductions)."""

    def __init__(self, ops: Any, all_sum: Any, all_max: Any) -> None:
        self._ops, self.all_sum, self.all_max = ops, all_sum, all_max

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ops, name)


class DistributedMixin:
    """A torch-based backend as one rank of a data-parallel run (mixed in first: ``type(..., (DistributedMixin,
    cls), {})``, :func:`for_rank`)."""

    init_method: str = ""
    timeout_s: float = 120.0

    def setup(self, dtype: str, device: str, seed: int) -> None:
        super().setup(dtype, device, seed)
        torch = self.torch
        cuda = self.device == "cuda"
        if cuda:
            torch.cuda.set_device(self.rank % torch.cuda.device_count())
            self._dev = torch.device("cuda", torch.cuda.current_device())
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if cuda else "gloo", init_method=self.init_method,
                                                 rank=self.rank, world_size=self.world_size,
                                                 timeout=timedelta(seconds=self.timeout_s))
        self.comm = Comm(torch, self.rank, self.world_size, cuda)
        all_sum = _all_sum_fn(torch)
        comm = self.comm
        self._all_sum = lambda x: all_sum.apply(x, comm)
        self.ops = DistributedOps(self.ops, self._all_sum, comm.all_max)

    def any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (a max all-reduce of one integer, outside the counted collectives: it
        is the step boundary's stop decision, :func:`mlo_bench.suite.run.interrupt.agreeing`, not the method's)."""
        torch = self.torch
        t = torch.tensor([int(flag)], device=self._dev if self.device == "cuda" else "cpu")
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    # rule 2: derivatives w.r.t. the replicated inputs, averaged over the ranks -----------------------------------
    def _mean(self, tree: Any) -> Any:
        n = float(self.world_size)
        return tree_map(lambda t: self._all_sum(t) / n, tree)

    def grad(self, f):
        inner = super().grad(f)
        return lambda x, *args: self._mean(inner(x, *args))

    def vjp(self, f, x):
        out, pullback = super().vjp(f, x)
        return out, lambda ct: self._mean(pullback(ct))

    def hvp(self, f, x, v):
        return self._mean(super().hvp(f, x, v))

    def hvp_operator(self, f, x):
        op = super().hvp_operator(f, x)
        return None if op is None else (lambda v: self._mean(op(v)))

    def hessian(self, f, x):
        """The d×d Hessian over the flat ``x``: the backend's own (torch: ``jacrev`` of the gradient, its d
        cotangents batched by vmap, so each collective inside runs once on the batch — :func:`_all_sum_fn`), then
        averaged over the ranks (rule 2) in one all-reduce of d² numbers. Measured (mwn demo × exact, d = 1,210,
        float64, 2 ranks, 2 steps, load 2–4): 44 collectives per outer step instead of 1,253 (one per column
        before), the hypergradient 0.4–0.8 s instead of 15.7 s."""
        return self._mean(super().hessian(f, x))

    # batches ------------------------------------------------------------------------------------------------------
    def shard_batch(self, extra: dict[str, Any]) -> dict[str, Any]:
        """This rank's contiguous shard of every per-step array (``np.array_split`` along axis 0)."""
        return self.tree_asarray({k: np.array_split(np.asarray(v), self.world_size)[self.rank]
                                  if np.ndim(v) else v for k, v in extra.items()})

    def gather_scores(self, scores: Any) -> np.ndarray:
        return np.concatenate([np.ravel(s) for s in self.comm.all_gather(self.to_numpy(scores))])

    # the collectives' window is the peak-memory window: the training loop (suite/engine/loop.py) ----------------
    def reset_peak_memory(self) -> None:
        super().reset_peak_memory()
        self._comm_start, self._comm_window = (self.comm.seconds, self.comm.calls), None

    def peak_memory_bytes(self) -> int | None:
        if getattr(self, "_comm_window", None) is None and hasattr(self, "_comm_start"):
            self._comm_window = (self.comm.seconds - self._comm_start[0], self.comm.calls - self._comm_start[1])
        return super().peak_memory_bytes()

    def comm_metrics(self) -> dict[str, Any]:
        """Seconds in collectives and their count over the training loop (the whole run if it never started)."""
        seconds, calls = getattr(self, "_comm_window", None) or (self.comm.seconds, self.comm.calls)
        return {"comm_s": seconds, "comm_calls": calls}


def for_rank(cls: type, config: Any, rank: int, world_size: int, init_method: str, timeout_s: float) -> Any:
    """An instance of torch-based backend ``cls`` as rank ``rank`` of ``world_size`` (the group joined by ``setup``
    through ``init_method``, torch's rendezvous URL: ``file://``, ``tcp://`` or ``env://`` as torchrun sets it)."""
    sub = type(f"Distributed{cls.__name__}", (DistributedMixin, cls), {"__module__": __name__})
    backend = sub(config)
    backend.rank, backend.world_size = rank, world_size
    backend.init_method, backend.timeout_s = init_method, float(timeout_s)
    return backend

