"""Pieces shared by the data-reweighting tasks (``mwn``, ``weak_supervision``), written once against the ops protocol.

- :func:`per_example_ce` / :func:`soft_ce` — per-example cross-entropy against integer labels / label distributions.
- :func:`l2` — ``Σ‖θ‖²`` over a parameter dict (the classifier's weight decay, a term of its loss).
- :func:`weighted_mean` — ``Σ w ℓ / Σ w`` (``normalize``) or ``Σ w ℓ / n``, written for low float32 round-off; its sums
  are over the whole batch, every data-parallel rank's shard (:mod:`mlo_bench.suite.models.batch`).
- :class:`EpochBatches` — shuffled epochs without replacement, a pure function of (seed, stream, step).
- :func:`predict` — class predictions of a model over a numpy array, in fixed-size chunks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlo_bench.suite.models.batch import batch_mean, batch_sum


def per_example_ce(ops: Any, logits: Any, labels: Any) -> Any:
    """``−log softmax(logits)[i, labels[i]]``, shape (n,)."""
    return -ops.take_along_last(ops.log_softmax(logits), labels)


def soft_ce(ops: Any, logits: Any, targets: Any) -> Any:
    """``−Σ_k targets[i, k] log softmax(logits)[i, k]``, shape (n,) (``targets`` rows are distributions)."""
    return -ops.sum(targets * ops.log_softmax(logits), axis=-1)


def l2(ops: Any, params: dict[str, Any]) -> Any:
    total = None
    for key in sorted(params):
        term = ops.sum(params[key] * params[key])
        total = term if total is None else total + term
    return total


def weighted_mean(ops: Any, w: Any, losses: Any, normalize: bool = True) -> Any:
    """``Σ w ℓ / Σ w`` (``normalize``) or ``Σ w ℓ / n``.

    The normalised form is written around its own (detached) value c: the same function with the same derivatives of
    every order (∂/∂c ≡ 0), but its λ-gradient Σ ∂w_i (ℓ_i − f) / Σ w is summed from the small ℓ_i − c rather than
    from ℓ_i ≈ f, which keeps float32 round-off ~10× lower (darts divides it by its step: torch and jax then agree to
    ~5e-5 instead of ~2e-3 in float32, measured on ``mwn``)."""
    if not normalize:
        return batch_mean(ops, w * losses)
    total = batch_sum(ops, w)
    c = ops.stop_gradient(batch_sum(ops, w * losses) / total)
    return batch_sum(ops, w * (losses - c)) / total + c


class EpochBatches:
    """Batch ``step`` of shuffled epochs without replacement (incomplete last batches dropped).

    The permutation of epoch e of stream ``tag`` is ``default_rng([seed, 0xB47, streams[tag], e])``: identical on every
    backend, and the same numbers ``mwn`` has always drawn."""

    def __init__(self, seed: int, streams: dict[str, int] | None = None) -> None:
        self.seed = seed
        self.streams = streams or {"train": 1, "meta": 2}
        self._perms: dict[tuple[str, int], np.ndarray] = {}

    def _perm(self, tag: str, n: int, epoch: int) -> np.ndarray:
        key = (tag, epoch)
        if key not in self._perms:
            if len(self._perms) > 8:
                self._perms.clear()
            self._perms[key] = np.random.default_rng([self.seed, 0xB47, self.streams[tag], epoch]).permutation(n)
        return self._perms[key]

    def batch(self, tag: str, n: int, size: int, step: int) -> np.ndarray:
        size = min(size, n)
        epoch, pos = divmod(step, n // size)
        return self._perm(tag, n, epoch)[pos * size : (pos + 1) * size].astype(np.int64)


def predict(backend: Any, model: Any, theta: dict[str, Any], x: np.ndarray, size: int) -> np.ndarray:
    """Class predictions of ``model`` for numpy inputs ``x``, in chunks of ``size`` (the last one wrapped around with
    earlier inputs, so batch statistics never see padding)."""
    ops, n = backend.ops, len(x)
    size = min(size, n)

    def forward(params: Any, xb: Any) -> Any:
        return ops.argmax(model.apply(ops, params, xb), axis=-1)

    fn = backend.compile(forward, (theta, backend.asarray(x[:size])))[0]
    out = []
    for start in range(0, n, size):
        idx = np.arange(start, start + size) % n
        out.append(backend.to_numpy(fn(theta, backend.asarray(x[idx])))[: n - start])
    return np.concatenate(out)
