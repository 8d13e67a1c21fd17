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


#: the key of a batch's number in its level's fixed partition (:func:`epoch_batch`), beside its examples' indices
BATCH_ID = "batch_id"
#: the key under which a method that moves the lower level itself (``Method.steps_lower``) finds every level's whole
#: data among the hypergradient's batches (a loss reads a batch without its index key as the whole sample)
WHOLE = "__whole__"


def n_batches(n: int, size: int) -> int:
    """The minibatches of ``size`` (0: the whole sample) that cover ``n`` examples: ⌈n / size⌉."""
    return 1 if size == 0 else -(-n // min(size, n))


def epoch_batch(key: list[int], n: int, size: int, step: int) -> tuple[Any, int]:
    """benchmark_bilevel's ``MinibatchSampler``: ``(indices, batch number)`` of batch ``step``. The ``n`` examples
    are split once into :func:`n_batches` fixed minibatches of ``size`` consecutive positions of a permutation drawn
    from ``key`` (the last one wraps round to the first positions, so every batch has ``size`` examples and one
    compiled step serves them all: with n = 1,000 and size 64, 24 examples sit in two batches); every epoch visits
    each minibatch once, in an order drawn from ``key`` and the epoch number. A variance-reduced solver (``saba``)
    keeps one memory slot per batch number. With ``size`` 0: the whole sample in order, batch number 0."""
    import numpy as np

    if size == 0:
        return np.arange(n), 0
    size = min(size, n)
    count = n_batches(n, size)
    epoch, slot = divmod(step, count)
    order = np.random.default_rng([*key, epoch, 0xE90C]).permutation(count)
    perm = np.random.default_rng([*key, 0xBA7C]).permutation(n)
    b = int(order[slot])
    return perm[(b * size + np.arange(size)) % n], b


#: ``task.sampler`` of the stochastic problems: ``draw`` — each step's batch drawn afresh without replacement (the
#: default, as the first records were made); ``epoch`` — benchmark_bilevel's fixed minibatches (:func:`epoch_batch`)
SAMPLERS = ("draw", "epoch")


def check_sampler(value: str) -> None:
    """One line naming ``task.sampler`` for a value that is not a sampler."""
    if value not in SAMPLERS:
        raise ValueError(f"task.sampler must be one of {', '.join(SAMPLERS)} (got {value!r})")


def level_batch(sampler: str, index_key: str, key: list[int], n: int, size: int, step: int) -> dict[str, Any]:
    """A level's per-step batch of a task that indexes its data: ``{index_key: indices}`` from ``key`` (seed, level
    tag), with ``{BATCH_ID: number}`` beside them under the ``epoch`` sampler."""
    import numpy as np

    if sampler == "epoch":
        idx, b = epoch_batch(key, n, size, step)
        return {index_key: idx, BATCH_ID: np.int64(b)}
    return {index_key: draw(np.random.default_rng([*key, step]), n, size)}
