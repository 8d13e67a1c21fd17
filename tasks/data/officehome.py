"""Office-Home in its two real formats, as numpy arrays; every bad layout is one ``ValueError`` line naming the path.

- **Images** (``layout=images``): ``root/<Domain>/<Class>/*.{jpg,jpeg,png}`` for the four domains (``Art``,
  ``Clipart``, ``Product``, ``Real_World``) — Office-Home as distributed. Every domain must hold the same class
  folders (65 in Office-Home), none empty; classes are numbered in sorted folder order. Images are read with Pillow,
  converted to RGB, resized to ``size`` × ``size`` (bilinear) and scaled to [0, 1]: ``(n, 3, size, size)``. The
  pre-check decodes every image of the four domains (:func:`decode_images`, kept for the run as uint8).
- **Features** (``layout=features``): ``root/<Domain>.npz`` with ``features`` (n, D) floats and ``labels`` (n,) ints
  in 0..C−1 — features extracted elsewhere by a pretrained backbone (none can be downloaded here); the four files
  must agree on D, and every feature must be finite.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from mlo_bench.tasks.data import checks
from mlo_bench.tasks.data.domains import DOMAINS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGES_LAYOUT = "expected root/<Domain>/<Class>/*.jpg for the domains " + ", ".join(DOMAINS)
FEATURES_LAYOUT = ("expected root/<Domain>.npz for the domains " + ", ".join(DOMAINS)
                   + ", each with 'features' (n, D) floats and 'labels' (n,) ints")


def _root(root: str | Path, layout: str) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise ValueError(f"{path}: no such directory; {layout}")
    return path


def image_classes(root: str | Path) -> list[str]:
    """The class folder names shared by every domain; checks the layout (not the images)."""
    path = _root(root, IMAGES_LAYOUT)
    for domain in DOMAINS:
        if not (path / domain).is_dir():
            raise ValueError(f"{path / domain}: missing domain folder; {IMAGES_LAYOUT}")
    classes: list[str] | None = None
    for domain in DOMAINS:
        d = path / domain
        found = sorted(p.name for p in d.iterdir() if p.is_dir())
        if not found:
            raise ValueError(f"{d}: no class folders; {IMAGES_LAYOUT}")
        if classes is None:
            classes = found
        elif found != classes:
            odd = sorted(set(found) ^ set(classes))[0]
            raise ValueError(f"{d}: class folders differ from {path / DOMAINS[0]}'s (e.g. {odd!r}); {IMAGES_LAYOUT}")
        for c in found:
            if not any(f.suffix.lower() in IMAGE_SUFFIXES for f in (d / c).iterdir()):
                raise ValueError(f"{d / c}: empty class folder (no .jpg/.jpeg/.png); {IMAGES_LAYOUT}")
    assert classes is not None
    return classes


def _image_files(root: Path, classes: list[str]) -> dict[str, list[tuple[int, Path]]]:
    return {domain: [(label, f) for label, c in enumerate(classes) for f in sorted((root / domain / c).iterdir())
                     if f.suffix.lower() in IMAGE_SUFFIXES] for domain in DOMAINS}


def _decode(f: Path, size: int, image: Any) -> np.ndarray:
    """One image as uint8 (3, size, size); a one-line ``ValueError`` naming the file when it cannot be decoded."""
    try:
        if f.stat().st_size == 0:
            raise ValueError("an empty file (0 bytes)")
        with image.open(f) as img:
            arr = np.asarray(img.convert("RGB").resize((size, size), image.BILINEAR), dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 - any decoding failure (not an image, truncated) is an unreadable image
        if isinstance(exc, ValueError):
            why = str(exc)
        elif type(exc).__name__ == "UnidentifiedImageError":
            why = "not an image format Pillow identifies"
        else:  # e.g. OSError: image file is truncated (N bytes not processed), Truncated File Read
            detail = (str(exc).splitlines() or [""])[0]
            why = ("truncated: " if "truncated" in detail.lower() else "") + f"{type(exc).__name__}: {detail}"
        raise ValueError(f"{f}: unreadable image ({why}); {IMAGES_LAYOUT}") from None
    return arr.transpose(2, 0, 1)


@functools.lru_cache(maxsize=1)
def _decoded(root: str, size: int, stamp: tuple) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        from PIL import Image
    except ImportError as exc:  # the `data` extra
        raise ImportError(f"Office-Home images need Pillow (pip install 'mlo-bench[data]'): {exc}") from exc
    path = Path(root)
    out = {}
    for domain, files in _image_files(path, image_classes(path)).items():
        x = np.stack([_decode(f, size, Image) for _, f in files])
        y = np.asarray([label for label, _ in files], dtype=np.int64)
        x.setflags(write=False)
        out[domain] = (x, y)
    return out


def decode_images(root: str | Path, size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every image of every domain decoded, converted to RGB and resized: ``{domain: (x uint8 (n, 3, size, size),
    y int64)}`` (read-only). The pre-check (``task.dataset=images``): a file that is not an image, a truncated or an
    empty one is one line naming it. Decoded once per process while no file changes (names, times and sizes), so
    the task built after the pre-check reuses the arrays."""
    path = Path(root)
    classes = image_classes(path)
    files = [f for fs in _image_files(path, classes).values() for _, f in fs]
    return _decoded(str(path.resolve()), int(size), checks.stamp(files))


def load_images(root: str | Path, domain: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x (n, 3, size, size) float64 in [0, 1], y (n,) int64)`` of one domain (:func:`decode_images`)."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; valid: {', '.join(DOMAINS)}")
    x, y = decode_images(root, size)[domain]
    return x.astype(np.float64) / 255.0, y.copy()


def load_features(root: str | Path, domain: str) -> tuple[np.ndarray, np.ndarray]:
    """``(features (n, D) float64, labels (n,) int64)`` of one domain; checks all four files' shapes first."""
    path = _root(root, FEATURES_LAYOUT)
    dims, out = {}, None
    for d in DOMAINS:
        f = path / f"{d}.npz"
        if not f.is_file():
            raise ValueError(f"{f}: missing domain file; {FEATURES_LAYOUT}")
        try:
            with np.load(f, allow_pickle=False) as z:
                if "features" not in z or "labels" not in z:
                    raise ValueError(f"{f}: no 'features' / 'labels' arrays; {FEATURES_LAYOUT}")
                x, y = np.asarray(z["features"]), np.asarray(z["labels"])
        except ValueError as exc:
            if str(exc).startswith(str(f)):
                raise
            raise ValueError(f"{f}: not a readable npz ({type(exc).__name__}); {FEATURES_LAYOUT}") from None
        except Exception as exc:  # noqa: BLE001 - zip / pickle errors: a malformed file
            raise ValueError(f"{f}: not a readable npz ({type(exc).__name__}); {FEATURES_LAYOUT}") from None
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating) or len(x) == 0:
            raise ValueError(f"{f}: 'features' is {x.dtype} {x.shape}, not non-empty floats (n, D); {FEATURES_LAYOUT}")
        checks.finite(x, str(f), "features")
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise ValueError(f"{f}: 'labels' has shape {y.shape} ({y.dtype}), not ({len(x)},) ints >= 0 matching "
                             f"'features'; {FEATURES_LAYOUT}")
        dims[d] = x.shape[1]
        if d == domain:
            out = (x.astype(np.float64), y.astype(np.int64))
    if len(set(dims.values())) != 1:
        raise ValueError(f"{path}: feature dimensions differ between domains ({dims}); {FEATURES_LAYOUT}")
    if out is None:
        raise ValueError(f"unknown domain {domain!r}; valid: {', '.join(DOMAINS)}")
    return out
