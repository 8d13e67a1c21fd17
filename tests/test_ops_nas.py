"""The ops an architecture search space needs (softmax, max/avg pooling with stride and padding, zero padding,
dilated and grouped convolutions): each against a numpy reference on every backend, and its gradient and
Hessian-vector product against central finite differences on every backend (DARTS differentiates through them twice).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_backend

BACKENDS = ("torch", "jax", "naive")


def _windows(x, size, stride, padding, fill):
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=fill)
    h = (x.shape[2] - size) // stride + 1
    w = (x.shape[3] - size) // stride + 1
    return np.stack([np.stack([x[:, :, i * stride:i * stride + size, j * stride:j * stride + size]
                               for j in range(w)], axis=2) for i in range(h)], axis=2)  # (n, c, h, w, k, k)


def np_max_pool(x, size, stride, padding):
    return _windows(x, size, stride, padding, -np.inf).max(axis=(4, 5))


def np_avg_pool(x, size, stride, padding):
    total = _windows(x, size, stride, padding, 0.0).sum(axis=(4, 5))
    count = _windows(np.ones_like(x), size, stride, padding, 0.0).sum(axis=(4, 5))
    return total / count


def np_conv(x, w, stride=1, padding=0, dilation=1, groups=1):
    o, cg, kh, kw = w.shape
    span = dilation * (kh - 1) + 1
    cols = _windows(x, span, stride, padding, 0.0)[..., ::dilation, ::dilation]  # (n, c, h, w, kh, kw)
    og = o // groups
    outs = [np.einsum("nchwij,ocij->nohw", cols[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og])
            for g in range(groups)]
    return np.concatenate(outs, axis=1)


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 4, 7, 7))
W_GROUPED = RNG.standard_normal((4, 2, 3, 3))   # groups = 2
W_DEPTH = RNG.standard_normal((4, 1, 5, 5))     # depthwise
W_DIL = RNG.standard_normal((4, 1, 3, 3))       # depthwise, dilation 2

CASES = {
    "softmax": (lambda o, x: o.softmax(x, axis=1), lambda x: np_softmax(x, 1)),
    "max_pool_3x3_s1_p1": (lambda o, x: o.max_pool2d(x, 3, 1, 1), lambda x: np_max_pool(x, 3, 1, 1)),
    "max_pool_3x3_s2_p1": (lambda o, x: o.max_pool2d(x, 3, 2, 1), lambda x: np_max_pool(x, 3, 2, 1)),
    "avg_pool_3x3_s1_p1": (lambda o, x: o.avg_pool2d(x, 3, 1, 1), lambda x: np_avg_pool(x, 3, 1, 1)),
    "avg_pool_3x3_s2_p1": (lambda o, x: o.avg_pool2d(x, 3, 2, 1), lambda x: np_avg_pool(x, 3, 2, 1)),
    "pad2d": (lambda o, x: o.pad2d(x, (1, 0, 2, 1)),
              lambda x: np.pad(x, ((0, 0), (0, 0), (1, 0), (2, 1)))),
    "conv_grouped": (lambda o, x, k: o.conv2d(x, k["grouped"], padding=1, groups=2),
                     lambda x: np_conv(x, W_GROUPED, padding=1, groups=2)),
    "conv_depthwise_5x5_s2": (lambda o, x, k: o.conv2d(x, k["depth"], stride=2, padding=2, groups=4),
                              lambda x: np_conv(x, W_DEPTH, stride=2, padding=2, groups=4)),
    "conv_dilated": (lambda o, x, k: o.conv2d(x, k["dil"], padding=2, dilation=2, groups=4),
                     lambda x: np_conv(x, W_DIL, padding=2, dilation=2, groups=4)),
}


def _case(b, case):
    """The op on backend ``b`` as ``x -> y`` (its kernels, if any, as constants) and its numpy reference."""
    op, ref = CASES[case]
    if case.startswith("conv"):
        k = {"grouped": b.asarray(W_GROUPED), "depth": b.asarray(W_DEPTH), "dil": b.asarray(W_DIL)}
        return (lambda x: op(b.ops, x, k)), ref
    return (lambda x: op(b.ops, x)), ref


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_numpy_on_every_backend(backend, case):
    b = make_backend(backend, "float64")
    op, ref = _case(b, case)
    got = b.to_numpy(op(b.asarray(X)))
    np.testing.assert_allclose(got, ref(X), rtol=1e-10, atol=1e-12)
    b.teardown()


def test_the_numpy_references_are_right_where_they_are_trivial():
    x = RNG.standard_normal((1, 2, 4, 4))
    np.testing.assert_allclose(np_avg_pool(x, 2, 2, 0), x.reshape(1, 2, 2, 2, 2, 2).mean(axis=(3, 5)))
    assert np_avg_pool(np.ones((1, 1, 3, 3)), 3, 1, 1).max() == 1.0, "padding is not counted"
    w = np.zeros((2, 1, 3, 3))
    w[:, :, 1, 1] = 1.0
    np.testing.assert_allclose(np_conv(x, w, padding=2, dilation=2, groups=2), x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_and_hvp_match_finite_differences(backend, case):
    b = make_backend(backend, "float64")
    op, ref = _case(b, case)
    ops = b.ops
    c = b.asarray(RNG.standard_normal(ref(X).shape))
    # a smooth scalar of the op's output: a cubic, so that its Hessian is not the op's (piecewise) linearity alone
    f = lambda x: ops.sum(c * op(x) + 0.1 * op(x) ** 3)  # noqa: E731
    x0, v = X + 0.01 * RNG.standard_normal(X.shape), RNG.standard_normal(X.shape)
    g = b.to_numpy(b.grad(f)(b.asarray(x0)))
    eps = 1e-6
    fd = (float(b.to_numpy(f(b.asarray(x0 + eps * v)))) - float(b.to_numpy(f(b.asarray(x0 - eps * v))))) / (2 * eps)
    assert abs(float(np.sum(g * v)) - fd) <= 1e-6 * max(1.0, abs(fd))
    hv = b.to_numpy(b.hvp(f, b.asarray(x0), b.asarray(v)))
    gp, gm = (b.to_numpy(b.grad(f)(b.asarray(x0 + s * eps * v))) for s in (1, -1))
    np.testing.assert_allclose(hv, (gp - gm) / (2 * eps), rtol=1e-5, atol=1e-5)
    b.teardown()
