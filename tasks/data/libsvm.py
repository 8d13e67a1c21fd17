"""libsvm / svmlight text files (``<label> <index>:<value> …`` per line; LIBSVM's ijcnn1, covtype.binary, …) read
through scikit-learn's ``load_svmlight_file``, as dense float64 features and binary labels in {−1, +1}.

A missing, unreadable or malformed file, a label set that is not binary, or a non-finite value is a ``ValueError`` of
one line naming the file and the expected format (the task's ``validate`` turns it into ``task.<key>: …``,
:func:`mlo_bench.tasks.data.checks.precheck`). Reads are cached per file (path, mtime, size).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from mlo_bench.tasks.data.checks import finite, stamp

FORMAT = "libsvm/svmlight text: one example per line, '<label> <index>:<value> ...', 1-based indices, binary labels"


@functools.lru_cache(maxsize=8)
def _read(path: str, _stamp: tuple) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_svmlight_file

    try:
        x, y = load_svmlight_file(path, dtype=np.float64)
    except (OSError, ValueError, IndexError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not a readable libsvm file ({detail}); expected {FORMAT}") from None
    labels = np.unique(y)
    if labels.size != 2:
        raise ValueError(f"{path}: {labels.size} distinct labels ({', '.join(map(str, labels[:5]))}); "
                         f"expected {FORMAT}")
    return x.toarray(), np.where(y == labels.max(), 1.0, -1.0)


def load(path: str | os.PathLike, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(features (n, d) float64, labels (n,) in {−1, +1})`` of a libsvm file; the larger label is +1. With
    ``n_features``, the features are padded to that width (a test file whose last features are all zero)."""
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file; expected {FORMAT}")
    x, y = _read(path, stamp([path]))
    finite(x, path, "features")
    if n_features is not None:
        if x.shape[1] > n_features:
            raise ValueError(f"{path}: {x.shape[1]} features, more than the {n_features} of the training file")
        x = np.pad(x, ((0, 0), (0, n_features - x.shape[1])))
    return x, y
