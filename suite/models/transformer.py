"""A BERT-shaped text classifier written once against the ops protocol (every backend runs the same function).

:func:`transformer` builds a post-LayerNorm encoder (Devlin et al. 2019): token + position embeddings → LayerNorm,
then ``n_layers`` blocks of multi-head self-attention → add & LayerNorm → GELU MLP → add & LayerNorm, then BERT's
pooler (``tanh(W h_[CLS] + b)``) and a linear classifier. Inputs are token ids ``(n, seq_len)`` (integers; id 0 is
``[PAD]`` and is masked out of every attention, the first token is ``[CLS]``); the output is logits ``(n, C)``.

Choices, and why:

- **Random initialisation** (BERT's: weights and embeddings N(0, 0.02²), biases 0, LayerNorm 1 / 0): no pretrained
  weights can be downloaded here. :func:`mlo_bench.suite.models.checkpoint.load_bert_checkpoint` reads a local
  HuggingFace BERT checkpoint into these names when one is at hand.
- **No dropout** and no segment (token-type) embeddings: the model is a pure function of (params, ids), so runs are
  exactly reproducible and every backend differentiates the same function (a checkpoint's token-type row 0 is folded
  into ``pos_emb``, which is exact for single-segment inputs).
- **GELU** is the tanh approximation (``0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³)))``, BERT's original code), which
  the ops protocol has; LayerNorm and attention are written from ``mean``, ``sqrt``, ``softmax`` and ``matmul``, so
  the counted bytes are those of this composition, not of a fused kernel (torch's ``layer_norm`` saves fewer
  intermediates) — the same on every method, which is what a memory *ratio* needs.
- **No key bias**: it adds one vector to every key, shifting all of a query's scores by the same amount, which
  softmax ignores — it changes no output and its gradient is exactly zero, so Adam would only amplify round-off in it
  (and two backends would then disagree on a parameter that does nothing). BERT's checkpoints have one; the loader
  leaves it out (exact).
- Masked scores are set to −10⁴ (not −∞ or −10⁹: finite in fp16, whose largest value is 65,504), as BERT's code did.

Sizes (:data:`SIZES`, ``task.size=NAME``): parameter counts for 2 classes, from :func:`count_params` —
tiny 1,210 (the default tests), 1m 0.95M, 4m 3.78M, 16m 17.3M, 64m 67.0M, base 109.47M (BERT-base: 12 layers × 768,
12 heads, 3,072-wide MLP, a 30,522-token vocabulary, 512 positions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlo_bench.suite.models.nn import Model, Params, linear

PAD_ID = 0
MASKED_SCORE = -1e4
INIT_STD = 0.02


@dataclass(frozen=True)
class Shape:
    """A transformer's hyperparameters (``d_model`` divisible by ``n_heads``)."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    max_len: int


#: named sizes, smallest first; ``base`` is BERT-base
SIZES: dict[str, Shape] = {
    "tiny": Shape(vocab_size=32, d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=32),
    "1m": Shape(vocab_size=4096, d_model=128, n_layers=2, n_heads=2, d_ff=512, max_len=128),
    "4m": Shape(vocab_size=8192, d_model=256, n_layers=2, n_heads=4, d_ff=1024, max_len=128),
    "16m": Shape(vocab_size=8192, d_model=512, n_layers=4, n_heads=8, d_ff=2048, max_len=512),
    "64m": Shape(vocab_size=30522, d_model=768, n_layers=6, n_heads=12, d_ff=3072, max_len=512),
    "base": Shape(vocab_size=30522, d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_len=512),
}


def count_params(shape: Shape, n_classes: int) -> int:
    """The number of parameters of :func:`transformer` (closed form; equals ``nn.n_params(model.init(rng))``)."""
    d, f = shape.d_model, shape.d_ff
    per_layer = 4 * d * d + 3 * d + 2 * d + (d * f + f) + (f * d + d) + 2 * d
    return ((shape.vocab_size + shape.max_len) * d + 2 * d + shape.n_layers * per_layer + (d * d + d)
            + (d * n_classes + n_classes))


def layer_norm(ops: Any, x: Any, gamma: Any, beta: Any, eps: float = 1e-12) -> Any:
    """LayerNorm over the last axis (biased variance, BERT's ε)."""
    mu = ops.mean(x, axis=-1)[..., None]
    centred = x - mu
    var = ops.mean(centred * centred, axis=-1)[..., None]
    return centred / ops.sqrt(var + eps) * ops.to_compute(gamma) + ops.to_compute(beta)


def gelu(ops: Any, x: Any) -> Any:
    """GELU, tanh approximation."""
    return 0.5 * x * (1.0 + ops.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))


def _normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape) * INIT_STD


def transformer(n_classes: int, shape: Shape) -> Model:
    """The encoder classifier of ``shape`` with ``n_classes`` outputs (see the module docstring)."""
    d, h = shape.d_model, shape.n_heads
    if d % h:
        raise ValueError(f"transformer: d_model {d} is not divisible by n_heads {h}")
    dh = d // h
    scale = 1.0 / math.sqrt(dh)

    def init(rng: np.random.Generator) -> Params:
        out: Params = {"tok_emb": _normal(rng, (shape.vocab_size, d)), "pos_emb": _normal(rng, (shape.max_len, d)),
                       "emb_ln_g": np.ones(d), "emb_ln_b": np.zeros(d)}
        for i in range(shape.n_layers):
            for name, fan_in, fan_out in (("q", d, d), ("k", d, d), ("v", d, d), ("o", d, d),
                                          ("ff1", d, shape.d_ff), ("ff2", shape.d_ff, d)):
                out[f"L{i}_{name}_w"] = _normal(rng, (fan_in, fan_out))
                if name != "k":  # a key bias shifts a query's scores by one constant: softmax ignores it
                    out[f"L{i}_{name}_b"] = np.zeros(fan_out)
            for ln in ("ln1", "ln2"):
                out[f"L{i}_{ln}_g"], out[f"L{i}_{ln}_b"] = np.ones(d), np.zeros(d)
        out["pool_w"], out["pool_b"] = _normal(rng, (d, d)), np.zeros(d)
        out["fc_w"], out["fc_b"] = _normal(rng, (d, n_classes)), np.zeros(n_classes)
        return out

    def heads(ops: Any, x: Any, n: int, s: int) -> Any:  # (n, s, d) -> (n, h, s, dh)
        return ops.swapaxes(ops.reshape(x, (n, s, h, dh)), 1, 2)

    def block(ops: Any, p: dict[str, Any], i: int, x: Any, keep: Any) -> Any:
        n, s = x.shape[0], x.shape[1]
        q = heads(ops, linear(ops, p, f"L{i}_q", x), n, s)
        k = heads(ops, ops.matmul(x, p[f"L{i}_k_w"]), n, s)
        v = heads(ops, linear(ops, p, f"L{i}_v", x), n, s)
        scores = ops.matmul(q, ops.swapaxes(k, -1, -2)) * scale  # (n, h, s, s)
        scores = ops.where(keep, scores, ops.zeros_like(scores) + MASKED_SCORE)
        ctx = ops.matmul(ops.softmax(scores, axis=-1), v)  # (n, h, s, dh)
        ctx = ops.reshape(ops.swapaxes(ctx, 1, 2), (n, s, d))
        x = layer_norm(ops, x + linear(ops, p, f"L{i}_o", ctx), p[f"L{i}_ln1_g"], p[f"L{i}_ln1_b"])
        ff = linear(ops, p, f"L{i}_ff2", gelu(ops, linear(ops, p, f"L{i}_ff1", x)))
        return layer_norm(ops, x + ff, p[f"L{i}_ln2_g"], p[f"L{i}_ln2_b"])

    def apply(ops: Any, params: dict[str, Any], ids: Any) -> Any:
        s = ids.shape[1]
        if s > shape.max_len:
            raise ValueError(f"transformer: sequences of {s} tokens exceed max_len {shape.max_len}")
        x = ops.to_compute(params["tok_emb"][ids] + params["pos_emb"][:s])
        x = layer_norm(ops, x, params["emb_ln_g"], params["emb_ln_b"])
        keep = (ids != PAD_ID)[:, None, None, :]  # (n, 1, 1, s): attend to real tokens only
        for i in range(shape.n_layers):
            x = block(ops, params, i, x, keep)
        pooled = ops.tanh(linear(ops, params, "pool", x[:, 0]))
        return linear(ops, params, "fc", pooled)

    return Model("transformer", init, apply)
