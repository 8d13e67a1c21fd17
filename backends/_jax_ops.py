"""The ops protocol (suite/contract/ops.py) on jax arrays: what a task's model code calls on the jax backend and on
the peers built on it (jaxopt, optimistix). Split from backends/jax.py, which keeps the backend itself."""

from __future__ import annotations

from typing import Any


class JaxOps:
    """The ops protocol on jax arrays."""

    def __init__(self, jax: Any) -> None:
        self.np = jax.numpy
        self.nn = jax.nn
        self.lax = jax.lax

    def zeros_like(self, x):
        return self.np.zeros_like(x)

    def ones_like(self, x):
        return self.np.ones_like(x)

    def reshape(self, x, shape):
        return self.np.reshape(x, shape)

    def concatenate(self, xs, axis=0):
        return self.np.concatenate(list(xs), axis=axis)

    def transpose(self, x):
        return x.T

    def swapaxes(self, x, a, b):
        return self.np.swapaxes(x, a, b)

    def to_compute(self, x):
        return x  # jmp's policy cast parameters and inputs before the loss (backends/jax.py, low_precision)

    def matmul(self, a, b):
        return self.np.matmul(a, b)

    def exp(self, x):
        return self.np.exp(x)

    def log(self, x):
        return self.np.log(x)

    def sqrt(self, x):
        return self.np.sqrt(x)

    def tanh(self, x):
        return self.np.tanh(x)

    def relu(self, x):
        return self.nn.relu(x)

    def sigmoid(self, x):
        return self.nn.sigmoid(x)

    def maximum(self, a, b):
        return self.np.maximum(a, b)

    def where(self, cond, a, b):
        return self.np.where(cond, a, b)

    def sum(self, x, axis=None):
        return self.np.sum(x, axis=axis)

    def mean(self, x, axis=None):
        return self.np.mean(x, axis=axis)

    def max(self, x, axis=None):
        return self.np.max(x, axis=axis)

    def argmax(self, x, axis=-1):
        return self.np.argmax(x, axis=axis)

    def log_softmax(self, x, axis=-1):
        return self.nn.log_softmax(x, axis=axis)

    def take_along_last(self, x, index):
        return self.np.take_along_axis(x, index[:, None], axis=-1)[:, 0]

    def stop_gradient(self, x):
        return self.lax.stop_gradient(x)

    def conv2d(self, x, w, stride=1, padding=0, dilation=1, groups=1):
        return self.lax.conv_general_dilated(
            x, w, (stride, stride), [(padding, padding), (padding, padding)], rhs_dilation=(dilation, dilation),
            dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=groups,
        )

    def _window(self, x, init, op, size, stride, padding):
        pads = ((0, 0), (0, 0), (padding, padding), (padding, padding))
        stride = stride or size
        return self.lax.reduce_window(x, init, op, (1, 1, size, size), (1, 1, stride, stride), pads)

    def avg_pool2d(self, x, size, stride=None, padding=0):
        if padding == 0 and (stride or size) == size:  # non-overlapping windows: a reshape and a mean
            n, c, h, w = x.shape
            return self.np.mean(self.np.reshape(x, (n, c, h // size, size, w // size, size)), axis=(3, 5))
        total = self._window(x, 0.0, self.lax.add, size, stride, padding)
        count = self._window(self.np.ones(x.shape[2:], x.dtype)[None, None], 0.0, self.lax.add, size, stride,
                             padding)
        return total / count

    def max_pool2d(self, x, size, stride=None, padding=0):
        return self._window(x, -self.np.inf, self.lax.max, size, stride, padding)

    def pad2d(self, x, padding):
        top, bottom, left, right = padding
        return self.np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))

    def softmax(self, x, axis=-1):
        return self.nn.softmax(x, axis=axis)

    #: set while FLOPs are counted: XLA's cost analysis counts a while loop's body once, whatever its trip count,
    #: so the loops are traced fully unrolled for the count (the same arithmetic, every iteration visible)
    unroll_loops = False

    def cond(self, pred, true_fn, false_fn, operand):
        """``lax.cond``: one compiled program holds both branches and runs one (``srba``'s full-batch restarts)."""
        return self.lax.cond(pred, true_fn, false_fn, operand)

    def fori_loop(self, lower, upper, body, init):
        """Traced once (``lax.fori_loop``): compile time does not grow with a solver's iteration count."""
        return self.lax.fori_loop(lower, upper, body, init, unroll=True if self.unroll_loops else None)
