"""Pytree helpers for parameters stored as (nested) dicts of arrays.

Parameters are plain dicts ``{name: array}`` (one per level) or dicts of those (``{level: {name: array}}``).
Every helper here uses only Python operators and the ops protocol, so it works on numpy, torch and jax arrays alike.
Keys are visited in sorted order, so flattening is deterministic across backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Tree = Any


def tree_map(fn: Callable[..., Any], tree: Tree, *rest: Tree) -> Tree:
    """Apply ``fn`` leaf-wise to ``tree`` and any number of trees with the same structure."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, tree[k], *(r[k] for r in rest)) for k in sorted(tree)}
    return fn(tree, *rest)


def tree_leaves(tree: Tree) -> list[Any]:
    """The leaves of ``tree`` in deterministic (sorted-key) order."""
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in tree_leaves(tree[k])]
    return [tree]


def tree_unflatten(tree: Tree, leaves: list[Any]) -> Tree:
    """``tree`` with its leaves replaced by ``leaves``, given in :func:`tree_leaves` order (its inverse)."""
    it = iter(leaves)
    return tree_map(lambda _leaf: next(it), tree)


def tree_add(a: Tree, b: Tree) -> Tree:
    return tree_map(lambda x, y: x + y, a, b)


def tree_sub(a: Tree, b: Tree) -> Tree:
    return tree_map(lambda x, y: x - y, a, b)


def tree_scale(s: Any, a: Tree) -> Tree:
    return tree_map(lambda x: s * x, a)


def tree_axpy(alpha: Any, x: Tree, y: Tree) -> Tree:
    """``alpha * x + y`` leaf-wise."""
    return tree_map(lambda u, w: alpha * u + w, x, y)


def tree_vdot(ops: Any, a: Tree, b: Tree) -> Any:
    """Sum over leaves of the elementwise product (a scalar array)."""
    terms = [ops.sum(x * y) for x, y in zip(tree_leaves(a), tree_leaves(b), strict=True)]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def tree_norm(ops: Any, a: Tree) -> Any:
    return ops.sqrt(tree_vdot(ops, a, a))


def tree_zeros_like(ops: Any, a: Tree) -> Tree:
    return tree_map(ops.zeros_like, a)


def tree_size(a: Tree) -> int:
    """Total number of scalars in ``a``."""
    size = 0
    for leaf in tree_leaves(a):
        n = 1
        for s in leaf.shape:
            n *= int(s)
        size += n
    return size


def ravel(ops: Any, tree: Tree) -> tuple[Any, Callable[[Any], Tree]]:
    """Flatten ``tree`` into one vector; return it with the inverse map (vector -> tree)."""
    leaves = tree_leaves(tree)
    shapes = [tuple(leaf.shape) for leaf in leaves]
    sizes = []
    for shape in shapes:
        n = 1
        for s in shape:
            n *= int(s)
        sizes.append(n)
    flat = ops.concatenate([ops.reshape(leaf, (-1,)) for leaf in leaves])

    def unravel(vec: Any) -> Tree:
        parts, start = [], 0
        for shape, n in zip(shapes, sizes, strict=True):
            parts.append(ops.reshape(vec[start : start + n], shape))
            start += n
        it = iter(parts)
        return tree_map(lambda _leaf: next(it), tree)

    return flat, unravel
