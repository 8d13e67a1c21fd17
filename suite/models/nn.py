"""Small neural networks written once against the ops protocol (:class:`mlo_bench.suite.contract.Ops`).

A model is a pair of pure functions: ``init(rng) -> {name: np.ndarray}`` (numpy, so every backend starts from the same
weights) and ``apply(ops, params, x) -> logits``. Images are NCHW and kernels OIHW on every backend.

- :func:`mlp` — flatten → [linear → ReLU]* → linear.
- :func:`cnn` — a small CNN for 8×8 digits: two 3×3 conv → ReLU → 2×2 average-pool stages, then a linear layer.
- :func:`resnet32` — ResNet-32 for CIFAR (He et al. 2016; the Meta-Weight-Net code's ``ResNet32``): a 3×3 conv, three
  stages of five basic blocks (16, 32, 64 channels; stride 2 at stages 2 and 3; option-A shortcuts: subsample and
  zero-pad channels), global average pool, linear. Batch normalisation is functional: it always normalises with the
  current batch's statistics (there are no running averages in a pure-function model), so evaluation must use
  reasonably large, class-mixed batches.
- :func:`weight_net` — Meta-Weight-Net (Shu et al. 2019): per-example loss (and, optionally, more per-example
  inputs) → linear(·, h) → ReLU → linear(h, 1) → sigmoid, a weight in (0, 1) per example.

Initialisation follows ``torch.nn`` defaults (linear: U(±1/√fan_in)) for the MLP, CNN and weight net, and the MWN
code's Kaiming-normal for ResNet-32's convolutions and classifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class Model:
    """``init(rng) -> params`` (numpy float64) and ``apply(ops, params, x) -> logits`` (backend arrays)."""

    name: str
    init: Callable[[np.random.Generator], Params]
    apply: Callable[[Any, dict[str, Any], Any], Any]


def uniform_init(rng: np.random.Generator, fan_in: int, shape: tuple[int, ...]) -> np.ndarray:
    """An array of ``shape`` drawn uniformly from ±1/√fan_in (torch's default for linear and conv layers)."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape)


def linear_init(rng: np.random.Generator, fan_in: int, fan_out: int, prefix: str) -> Params:
    return {f"{prefix}_w": uniform_init(rng, fan_in, (fan_in, fan_out)),
            f"{prefix}_b": uniform_init(rng, fan_in, (fan_out,))}


def linear(ops: Any, params: dict[str, Any], prefix: str, x: Any) -> Any:
    """``x W + b``; the bias in the matmul's compute dtype (``ops.to_compute``: under autocast a float32 bias would
    promote the low-precision product back to float32)."""
    return ops.matmul(x, params[f"{prefix}_w"]) + ops.to_compute(params[f"{prefix}_b"])


def _flatten(ops: Any, x: Any) -> Any:
    return ops.reshape(x, (x.shape[0], -1))


def n_params(params: Params) -> int:
    return int(sum(np.size(v) for v in params.values()))


# --------------------------------------------------------------------------------------------------------------
# MLP


def mlp(in_features: int, n_classes: int, hidden: tuple[int, ...] = (32,)) -> Model:
    sizes = [in_features, *hidden, n_classes]

    def init(rng: np.random.Generator) -> Params:
        out: Params = {}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            out.update(linear_init(rng, a, b, f"l{i}"))
        return out

    def apply(ops: Any, params: dict[str, Any], x: Any) -> Any:
        h = _flatten(ops, x)
        for i in range(len(sizes) - 1):
            h = linear(ops, params, f"l{i}", h)
            if i < len(sizes) - 2:
                h = ops.relu(h)
        return h

    return Model("mlp", init, apply)


# --------------------------------------------------------------------------------------------------------------
# small CNN


def _conv_init_uniform(rng: np.random.Generator, c_out: int, c_in: int, k: int) -> np.ndarray:
    return uniform_init(rng, c_in * k * k, (c_out, c_in, k, k))


def cnn(in_channels: int, size: int, n_classes: int, channels: tuple[int, int] = (8, 16)) -> Model:
    """conv3×3 → ReLU → avg-pool 2 → conv3×3 → ReLU → avg-pool 2 → linear (``size`` divisible by 4)."""
    if size % 4:
        raise ValueError(f"cnn needs an image size divisible by 4 (got {size})")
    c1, c2 = channels
    flat = c2 * (size // 4) ** 2

    def init(rng: np.random.Generator) -> Params:
        out = {
            "c1_w": _conv_init_uniform(rng, c1, in_channels, 3), "c1_b": uniform_init(rng, in_channels * 9, (c1,)),
            "c2_w": _conv_init_uniform(rng, c2, c1, 3), "c2_b": uniform_init(rng, c1 * 9, (c2,)),
        }
        out.update(linear_init(rng, flat, n_classes, "fc"))
        return out

    def apply(ops: Any, params: dict[str, Any], x: Any) -> Any:
        h = ops.conv2d(x, params["c1_w"], padding=1) + params["c1_b"][None, :, None, None]
        h = ops.avg_pool2d(ops.relu(h), 2)
        h = ops.conv2d(h, params["c2_w"], padding=1) + params["c2_b"][None, :, None, None]
        h = ops.avg_pool2d(ops.relu(h), 2)
        return linear(ops, params, "fc", _flatten(ops, h))

    return Model("cnn", init, apply)


# --------------------------------------------------------------------------------------------------------------
# ResNet-32 (CIFAR)

BN_EPS = 1e-5


def normalise(ops: Any, x: Any) -> Any:
    """``x`` (NCHW) centred and scaled per channel by the batch's own statistics (biased variance, as torch in
    training), without affine parameters.

    Synchronised across data-parallel ranks (SyncBN): where the ops supply ``all_sum`` (ranks are processes,
    :mod:`mlo_bench.suite.models.batch`) the per-channel sums and the count are summed over the ranks, so the
    statistics are the whole batch's and an N-rank run computes the one-rank numbers (two differentiable
    all-reduces of C values per layer and evaluation); elsewhere they are the plain means, bit for bit."""
    all_sum = getattr(ops, "all_sum", None)
    if all_sum is None:
        mu = ops.mean(x, axis=(0, 2, 3))[None, :, None, None]
        centred = x - mu
        var = ops.mean(centred * centred, axis=(0, 2, 3))[None, :, None, None]
    else:
        count = all_sum(ops.stop_gradient(ops.sum(ops.ones_like(x), axis=(0, 2, 3))))
        mu = (all_sum(ops.sum(x, axis=(0, 2, 3))) / count)[None, :, None, None]
        centred = x - mu
        var = (all_sum(ops.sum(centred * centred, axis=(0, 2, 3))) / count)[None, :, None, None]
    return centred / ops.sqrt(var + BN_EPS)


def batch_norm(ops: Any, x: Any, gamma: Any, beta: Any) -> Any:
    """Batch normalisation of NCHW ``x`` (:func:`normalise`, synchronised across ranks), then the affine map."""
    return normalise(ops, x) * gamma[None, :, None, None] + beta[None, :, None, None]


def _kaiming(rng: np.random.Generator, c_out: int, c_in: int, k: int) -> np.ndarray:
    return rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(2.0 / (c_in * k * k))


def resnet(
    n_blocks: int = 5, in_channels: int = 3, n_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64)
) -> Model:
    """CIFAR ResNet with ``6 n_blocks + 2`` layers (n_blocks = 5: ResNet-32)."""
    layout = []  # (prefix, c_in, c_out, stride)
    c_in = widths[0]
    for s, width in enumerate(widths):
        for b in range(n_blocks):
            stride = 2 if s > 0 and b == 0 else 1
            layout.append((f"s{s}b{b}", c_in, width, stride))
            c_in = width

    def init(rng: np.random.Generator) -> Params:
        out: Params = {"conv0_w": _kaiming(rng, widths[0], in_channels, 3),
                       "bn0_g": np.ones(widths[0]), "bn0_b": np.zeros(widths[0])}
        for prefix, ci, co, _ in layout:
            out[f"{prefix}_conv1_w"] = _kaiming(rng, co, ci, 3)
            out[f"{prefix}_bn1_g"], out[f"{prefix}_bn1_b"] = np.ones(co), np.zeros(co)
            out[f"{prefix}_conv2_w"] = _kaiming(rng, co, co, 3)
            out[f"{prefix}_bn2_g"], out[f"{prefix}_bn2_b"] = np.ones(co), np.zeros(co)
        out["fc_w"] = rng.standard_normal((widths[-1], n_classes)) * np.sqrt(2.0 / widths[-1])
        out["fc_b"] = np.zeros(n_classes)
        return out

    def block(ops: Any, p: dict[str, Any], prefix: str, x: Any, c_in: int, c_out: int, stride: int) -> Any:
        h = ops.conv2d(x, p[f"{prefix}_conv1_w"], stride=stride, padding=1)
        h = ops.relu(batch_norm(ops, h, p[f"{prefix}_bn1_g"], p[f"{prefix}_bn1_b"]))
        h = ops.conv2d(h, p[f"{prefix}_conv2_w"], padding=1)
        h = batch_norm(ops, h, p[f"{prefix}_bn2_g"], p[f"{prefix}_bn2_b"])
        shortcut = x
        if stride != 1 or c_in != c_out:  # option A: subsample, zero-pad the new channels on both sides
            sub = x[:, :, ::2, ::2]
            pad = (c_out - c_in) // 2
            zeros = ops.zeros_like(sub[:, :pad])
            shortcut = ops.concatenate([zeros, sub, zeros], axis=1)
        return ops.relu(h + shortcut)

    def apply(ops: Any, params: dict[str, Any], x: Any) -> Any:
        h = ops.conv2d(x, params["conv0_w"], padding=1)
        h = ops.relu(batch_norm(ops, h, params["bn0_g"], params["bn0_b"]))
        for prefix, ci, co, stride in layout:
            h = block(ops, params, prefix, h, ci, co, stride)
        h = ops.mean(h, axis=(2, 3))
        return linear(ops, params, "fc", h)

    return Model(f"resnet{6 * n_blocks + 2}", init, apply)


def resnet32(in_channels: int = 3, n_classes: int = 10) -> Model:
    return resnet(5, in_channels, n_classes)


# --------------------------------------------------------------------------------------------------------------
# Meta-Weight-Net


def weight_net(hidden: int = 100, in_features: int = 1) -> Model:
    """Per-example inputs → weight in (0, 1) (n,): linear(in_features, hidden) → ReLU → linear(hidden, 1) → sigmoid.

    ``in_features`` = 1 is Meta-Weight-Net's (the loss, shape (n,)); more takes (n, in_features) (e.g. the loss and a
    summary of the example's weak-label votes, ``weak_supervision``)."""

    def init(rng: np.random.Generator) -> Params:
        return {**linear_init(rng, in_features, hidden, "l0"), **linear_init(rng, hidden, 1, "l1")}

    def apply(ops: Any, params: dict[str, Any], inputs: Any) -> Any:
        h = ops.relu(linear(ops, params, "l0", ops.reshape(inputs, (-1, in_features))))
        return ops.reshape(ops.sigmoid(linear(ops, params, "l1", h)), (-1,))

    return Model("weight_net", init, apply)
