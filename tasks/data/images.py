"""Image data sets as numpy arrays: NCHW float images in [0, 1] (or uint8 for CIFAR) and int64 labels.

- :func:`load_digits` — scikit-learn's bundled digits (1,797 8×8 grey images, 10 classes; loads offline).
- :func:`load_cifar10` — CIFAR-10 from the python pickle batches (``cifar-10-batches-py``); :func:`check_cifar10`
  validates a directory and raises ``ValueError`` with one line naming the path and the expected layout.
"""

from __future__ import annotations

import functools
import os
import pickle
from pathlib import Path

import numpy as np

CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
CIFAR_META = "batches.meta"
CIFAR_LAYOUT = (
    "expected a CIFAR-10 python directory (cifar-10-batches-py) holding data_batch_1 ... data_batch_5 and "
    "test_batch, each a pickled dict with b'data' uint8 (N, 3072) and b'labels' (N ints in 0..9), and batches.meta"
)
#: per-channel mean and std of CIFAR-10's training images (the normalisation of the MWN code)
CIFAR_MEAN = np.array([125.3, 123.0, 113.9]) / 255.0
CIFAR_STD = np.array([63.0, 62.1, 66.7]) / 255.0


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: x (1797, 1, 8, 8) float64 in [0, 1], y (1797,) int64 (new arrays; read once per process, so a
    task's pre-check and its constructor share one read)."""
    x, y = _digits()
    return x.copy(), y.copy()


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as exc:  # the `data` extra
        raise ImportError(f"the digits data set needs scikit-learn (pip install 'mlo-bench[data]'): {exc}") from exc
    bunch = sk_load_digits()
    x = np.asarray(bunch.images, dtype=np.float64)[:, None, :, :] / 16.0
    return x, np.asarray(bunch.target, dtype=np.int64)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a malformed file
        raise ValueError(f"{path}: not a readable pickle ({type(exc).__name__}); {CIFAR_LAYOUT}") from None
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        raise ValueError(f"{path}: not a CIFAR-10 batch (no b'data' / b'labels'); {CIFAR_LAYOUT}")
    data, labels = np.asarray(obj[b"data"]), np.asarray(obj[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: b'data' is {data.dtype} {data.shape}, not uint8 (N, 3072); {CIFAR_LAYOUT}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: b'labels' has shape {labels.shape}, not ({data.shape[0]},) ints; {CIFAR_LAYOUT}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels outside 0..9; {CIFAR_LAYOUT}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _check_files(root: Path) -> None:
    if not root.is_dir():
        raise ValueError(f"{root}: no such directory; {CIFAR_LAYOUT}")
    for name in (*CIFAR_TRAIN, CIFAR_TEST, CIFAR_META):
        if not (root / name).is_file():
            raise ValueError(f"{root / name}: missing; {CIFAR_LAYOUT}")


def _stamp(root: Path) -> tuple:
    return tuple((n, os.stat(root / n).st_mtime_ns, os.stat(root / n).st_size)
                 for n in (*CIFAR_TRAIN, CIFAR_TEST, CIFAR_META))


@functools.lru_cache(maxsize=2)
def _load(root: str, stamp: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    path = Path(root)
    parts = [_read_batch(path / n) for n in CIFAR_TRAIN]
    x_test, y_test = _read_batch(path / CIFAR_TEST)
    try:
        with open(path / CIFAR_META, "rb") as fh:
            meta = pickle.load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path / CIFAR_META}: not a readable pickle ({type(exc).__name__}); {CIFAR_LAYOUT}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path / CIFAR_META}: not a pickled dict; {CIFAR_LAYOUT}")
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    for arr in (x_train, y_train, x_test, y_test):
        arr.setflags(write=False)
    return x_train, y_train, x_test, y_test


def check_cifar10(root: str | os.PathLike) -> None:
    """Raise ``ValueError`` (one line: the path and the expected layout) unless ``root`` holds readable batches."""
    load_cifar10(root)


def load_cifar10(root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: images uint8 (N, 3, 32, 32) (read-only), labels int64.

    Read once per process (cached by the files' modification times and sizes)."""
    path = Path(root).expanduser()
    _check_files(path)
    return _load(str(path.resolve()), _stamp(path))


def cifar_normalise(x: np.ndarray) -> np.ndarray:
    """uint8 NCHW → float64, per-channel standardised with CIFAR-10's training mean and std."""
    return (x.astype(np.float64) / 255.0 - CIFAR_MEAN[None, :, None, None]) / CIFAR_STD[None, :, None, None]


def augment_crop_flip(x: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Random crop of the ``pad``-pixel reflect-padded image and horizontal flip, per image (the MWN code's CIFAR
    augmentation), NCHW."""
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect")
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    flip = rng.random(n) < 0.5
    out = np.empty_like(x)
    for i in range(n):
        img = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out[i] = img[:, :, ::-1] if flip[i] else img
    return out
