"""Reductions over a level's batch, which may be split across data-parallel ranks (``parallel.world_size``).

A loss that reduces over its examples with :func:`batch_sum` / :func:`batch_mean` is the one-rank loss on every rank
whatever the split: where the ops supply ``all_sum`` (ranks are processes, :mod:`mlo_bench.backends._torch_dist`) the
local sums are summed over the ranks by a differentiable collective; elsewhere (one rank, or jax's one program over a
device mesh) they are ``ops.sum`` / ``ops.mean`` themselves, so one-rank numbers are bit for bit what they were.
"""

from __future__ import annotations

from typing import Any


def batch_sum(ops: Any, x: Any) -> Any:
    """``Σ_i x[i]`` of per-example values ``x`` (shape (n,)) over the whole batch: every rank's shard."""
    all_sum = getattr(ops, "all_sum", None)
    return ops.sum(x) if all_sum is None else all_sum(ops.sum(x))


def batch_mean(ops: Any, x: Any) -> Any:
    """``Σ_i x[i] / n`` of per-example values ``x`` (shape (n,)) over the whole batch of ``n`` examples: every rank's
    shard (shards may differ in size: the count is summed too)."""
    all_sum = getattr(ops, "all_sum", None)
    if all_sum is None:
        return ops.mean(x)
    count = all_sum(ops.stop_gradient(ops.sum(ops.ones_like(x))))
    return all_sum(ops.sum(x)) / count


def batch_max(ops: Any, x: Any) -> Any:
    """``max_i x[i]`` over the whole batch, as a constant (no gradient): a shift that keeps ``exp`` in range
    (``ops.all_max`` where the ranks are processes)."""
    all_max = getattr(ops, "all_max", None)
    top = ops.stop_gradient(ops.max(x))
    return top if all_max is None else all_max(top)


def draw(rng: Any, n: int, size: int) -> Any:
    """``size`` of ``n`` example indices without replacement (numpy ``rng``), or with ``size`` 0 the whole sample in
    order — the deterministic (full-batch) setting, e.g. for BOME as benchmark_bilevel runs it."""
    import numpy as np

    return np.arange(n) if size == 0 else rng.choice(n, size=min(size, n), replace=False)
