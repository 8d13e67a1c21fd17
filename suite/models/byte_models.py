"""Small byte-level text models written once against the ops protocol (:class:`mlo_bench.suite.contract.Ops`), in the
shape of :mod:`mlo_bench.suite.models.nn` (``init(rng) -> params`` in numpy, ``apply(ops, params, tokens)``).

Tokens are byte values (int64, 0–255) of shape (N, L). A 1-D convolution is a matmul over *unfolded windows*: the
k shifted copies of the (N, L, d) activations concatenated on the last axis, times a (k·d, d_out) kernel — no op
beyond the protocol's ``concatenate``/``matmul``/slicing, so every backend runs it and differentiates it to any order.

- :func:`byte_lm` — a causal convolutional language model: embedding (256 → d), ``layers`` residual blocks
  h ← h + ReLU(causal conv_k(h)) with dilation 2^l (receptive field 1 + (k−1)(2^layers − 1) bytes), linear d → 256.
  :func:`lm_losses` gives each sequence's mean next-byte cross-entropy (nats per byte).
- :func:`byte_cnn` — the weight model: embedding (256 → e), one valid conv_k → ReLU, mean over positions, linear →
  one logit per sequence. Its last layer starts at zero, so every example starts with the same weight, and has no
  bias: the weights are only ever used relative to each other (sampling ∝ exp(logit), a softmax), to which a bias is
  invisible — its gradient would be pure round-off, a leaf that no two backends agree on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlo_bench.suite.models.nn import Model, Params, uniform_init

VOCAB = 256


def _shift_right(ops: Any, h: Any, s: int) -> Any:
    """``h[:, t − s]`` at position t (zeros for t < s), for (N, L, d) ``h``."""
    length = h.shape[1]
    if s == 0:
        return h
    if s >= length:
        return ops.zeros_like(h)
    return ops.concatenate([ops.zeros_like(h[:, :s]), h[:, : length - s]], axis=1)


def causal_conv(ops: Any, h: Any, w: Any, b: Any, kernel: int, dilation: int = 1) -> Any:
    """Causal 1-D convolution of (N, L, d) ``h``: position t sees t, t − dilation, …, t − (kernel−1)·dilation."""
    windows = ops.concatenate([_shift_right(ops, h, j * dilation) for j in range(kernel)], axis=-1)
    return ops.matmul(windows, w) + b


def byte_lm(d: int = 32, layers: int = 2, kernel: int = 3) -> Model:
    def init(rng: np.random.Generator) -> Params:
        out: Params = {"emb": 0.5 * rng.standard_normal((VOCAB, d))}
        for i in range(layers):
            out[f"c{i}_w"] = uniform_init(rng, kernel * d, (kernel * d, d))
            out[f"c{i}_b"] = np.zeros(d)
        out["out_w"] = uniform_init(rng, d, (d, VOCAB))
        out["out_b"] = np.zeros(VOCAB)
        return out

    def apply(ops: Any, params: dict[str, Any], tokens: Any) -> Any:
        h = params["emb"][tokens]
        for i in range(layers):
            h = h + ops.relu(causal_conv(ops, h, params[f"c{i}_w"], params[f"c{i}_b"], kernel, 2**i))
        return ops.matmul(h, params["out_w"]) + params["out_b"]

    return Model("byte_lm", init, apply)


def lm_losses(ops: Any, model: Model, theta: dict[str, Any], seqs: Any) -> Any:
    """Each sequence's mean next-byte cross-entropy, shape (N,), for (N, L + 1) byte sequences."""
    x, y = seqs[:, :-1], seqs[:, 1:]
    n, length = y.shape
    logits = ops.reshape(model.apply(ops, theta, x), (n * length, VOCAB))
    nll = -ops.take_along_last(ops.log_softmax(logits), ops.reshape(y, (n * length,)))
    return ops.mean(ops.reshape(nll, (n, length)), axis=1)


def byte_cnn(e: int = 16, channels: int = 16, kernel: int = 5) -> Model:
    def init(rng: np.random.Generator) -> Params:
        return {"emb": 0.5 * rng.standard_normal((VOCAB, e)),
                "c_w": uniform_init(rng, kernel * e, (kernel * e, channels)), "c_b": np.zeros(channels),
                "fc_w": np.zeros((channels, 1))}

    def apply(ops: Any, params: dict[str, Any], tokens: Any) -> Any:
        h = params["emb"][tokens]
        valid = h.shape[1] - kernel + 1
        windows = ops.concatenate([h[:, j : j + valid] for j in range(kernel)], axis=-1)
        h = ops.mean(ops.relu(ops.matmul(windows, params["c_w"]) + params["c_b"]), axis=1)
        return ops.reshape(ops.matmul(h, params["fc_w"]), (-1,))

    return Model("byte_cnn", init, apply)
