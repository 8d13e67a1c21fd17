"""Long-tailed splits as in Meta-Weight-Net (Shu et al. 2019) and its CIFAR-LT code.

Class ``c`` of ``C`` keeps ``n_c = int(n_max · (1/IF)^(c/(C−1)))`` training examples (class 0 is the head with
``n_max``, class C−1 the tail with ``n_max/IF``), clamped to at least one example; the classes that needed the clamp
are reported. Held-out sets are balanced and taken first, per class, from a seeded permutation: the test set
(``test_per_class``, when the data set has no test split of its own), then the meta set (``meta_per_class``); the
training set is then the first ``n_c`` of each class's remaining pool, with ``n_max`` the smallest remaining pool
unless given. Everything is a pure function of the labels and the generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlo_bench.tasks.data import checks


def class_sizes(n_max: int, n_classes: int, imbalance_factor: float) -> tuple[list[int], list[int]]:
    """``(sizes, clamped)``: per-class training sizes and the classes whose size was raised to 1."""
    if n_classes < 2:
        raise ValueError(f"a long tail needs at least 2 classes (got {n_classes})")
    raw = [int(n_max * (1.0 / imbalance_factor) ** (c / (n_classes - 1.0))) for c in range(n_classes)]
    return [max(1, r) for r in raw], [c for c, r in enumerate(raw) if r < 1]


@dataclass(frozen=True)
class LongTail:
    """Indices into the source arrays (each a shuffled 1-D int64 array) and the class sizes used."""

    train: np.ndarray
    meta: np.ndarray
    test: np.ndarray
    sizes: list[int]
    clamped: list[int]
    n_max: int


def check_sizes(labels: np.ndarray, n_classes: int, meta_per_class: int, test_per_class: int, where: str = "") -> None:
    """The split's requirement, as a task's pre-check asks it: every class holds ``test_per_class`` + ``meta_per_class``
    + 1 examples (one line naming ``where``, the file, otherwise)."""
    checks.enough_per_class(labels, n_classes, test_per_class + meta_per_class + 1, where,
                            f"{test_per_class} test + {meta_per_class} meta + 1 training")


def long_tailed_split(
    labels: np.ndarray,
    n_classes: int,
    imbalance_factor: float,
    meta_per_class: int,
    test_per_class: int,
    rng: np.random.Generator,
    n_max: int | None = None,
) -> LongTail:
    """Split ``labels``' indices into a balanced test set, a balanced meta set and a long-tailed training set."""
    labels = np.asarray(labels)
    check_sizes(labels, n_classes, meta_per_class, test_per_class)
    tests, metas, pools = [], [], []
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        tests.append(idx[:test_per_class])
        metas.append(idx[test_per_class : test_per_class + meta_per_class])
        pools.append(idx[test_per_class + meta_per_class :])
    smallest = min(len(p) for p in pools)
    if n_max is None:
        n_max = smallest
    elif n_max > smallest:
        raise ValueError(f"n_max={n_max} exceeds the smallest class pool ({smallest})")
    sizes, clamped = class_sizes(n_max, n_classes, imbalance_factor)
    train = np.concatenate([p[:n] for p, n in zip(pools, sizes, strict=True)])

    def shuffled(parts: list[np.ndarray] | np.ndarray) -> np.ndarray:
        arr = np.concatenate(parts) if isinstance(parts, list) else parts
        return rng.permutation(arr).astype(np.int64)

    return LongTail(shuffled(train), shuffled(metas), shuffled(tests), sizes, clamped, int(n_max))


def uniform_noise(labels: np.ndarray, rate: float, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Each label replaced, with probability ``rate``, by a class drawn uniformly from all ``n_classes`` (so it may
    stay correct: the corruption matrix (1 − rate)·I + rate/C, the "uniform noise" of the MWN code)."""
    labels = np.asarray(labels).copy()
    flip = rng.random(len(labels)) < rate
    labels[flip] = rng.integers(0, n_classes, size=int(flip.sum()))
    return labels
