"""Four style-shifted domains of scikit-learn's digits, named after Office-Home's, and the 5:3:2 domain splits.

:func:`digit_domains` splits the 1,797 8×8 digits (:func:`mlo_bench.tasks.data.images.load_digits`) by a seeded
permutation into four disjoint, equal parts (no image appears in two domains) and gives each a style shift, drawn
per image from a generator seeded with ``(seed, domain)`` — the same seed gives the same pixels on every machine:

- ``Art`` (``Ar``): rotated by an angle uniform in ±[10°, 25°] (bilinear, ``scipy.ndimage.rotate``), then blurred
  with the separable [1, 2, 1]/4 kernel — a painterly, slanted stroke.
- ``Clipart`` (``Cl``): strokes thickened one pixel to the right (max with the shifted image) and posterised to the
  levels {0, ½, 1} — flat colours, bold outlines.
- ``Product`` (``Pr``): the clean digit on a black background, its contrast scaled by a factor uniform in [0.8, 1].
- ``Real_World`` (``Rw``): contrast × U[0.6, 0.9] on a grey background + U[0.1, 0.3], plus Gaussian noise σ = 0.2,
  clipped to [0, 1] — a dim, cluttered photograph. (Translations were tried and dropped: a one-pixel shift alone
  takes a linear model from 93% to 56% in-domain.)

:func:`split_532` splits one domain 5:3:2 into train / validation / test, per class (stratified) from a seeded
permutation, as Betty's Office-Home example splits every domain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DOMAINS = ("Art", "Clipart", "Product", "Real_World")
ABBREV = {"Ar": "Art", "Cl": "Clipart", "Pr": "Product", "Rw": "Real_World"}
#: Betty Table 4's domain pairs (source → target), as ``task.pair`` values
TABLE4_PAIRS = ("Cl-Ar", "Ar-Pr", "Pr-Rw", "Rw-Cl")
SHIFTS = {
    "Art": "rotated ±[10°, 25°] then blurred [1,2,1]/4",
    "Clipart": "strokes thickened 1 px and posterised to {0, 1/2, 1}",
    "Product": "clean, contrast × U[0.8, 1]",
    "Real_World": "contrast × U[0.6, 0.9] + grey U[0.1, 0.3], noise σ=0.2, clipped",
}


def parse_pair(pair: str) -> tuple[str, str]:
    """``"Cl-Ar"`` → ``("Clipart", "Art")``; raises ``ValueError`` naming ``task.pair``."""
    parts = pair.split("-")
    if len(parts) != 2 or any(p not in ABBREV for p in parts) or parts[0] == parts[1]:
        raise ValueError(f"task.pair must be SOURCE-TARGET with two different domains of {', '.join(ABBREV)} "
                         f"(e.g. Cl-Ar; got {pair!r})")
    return ABBREV[parts[0]], ABBREV[parts[1]]


def _blur(x: np.ndarray) -> np.ndarray:
    k = np.array([0.25, 0.5, 0.25])
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    rows = k[0] * pad[:, :-2, :] + k[1] * pad[:, 1:-1, :] + k[2] * pad[:, 2:, :]
    return k[0] * rows[:, :, :-2] + k[1] * rows[:, :, 1:-1] + k[2] * rows[:, :, 2:]


def style(images: np.ndarray, domain: str, rng: np.random.Generator) -> np.ndarray:
    """``images`` (N, 8, 8) in [0, 1] in the style of ``domain`` (see the module docstring); a new array."""
    x = np.asarray(images, dtype=np.float64)
    n = len(x)
    if domain == "Art":
        from scipy.ndimage import rotate

        angles = rng.uniform(10.0, 25.0, n) * rng.choice([-1.0, 1.0], n)
        x = np.stack([rotate(img, a, reshape=False, order=1, mode="constant") for img, a in zip(x, angles,
                                                                                                  strict=True)])
        return np.clip(_blur(x), 0.0, 1.0)
    if domain == "Clipart":
        thick = x.copy()
        thick[:, :, 1:] = np.maximum(thick[:, :, 1:], x[:, :, :-1])
        return np.round(thick * 2.0) / 2.0
    if domain == "Product":
        return x * rng.uniform(0.8, 1.0, (n, 1, 1))
    if domain == "Real_World":
        x = x * rng.uniform(0.6, 0.9, (n, 1, 1)) + rng.uniform(0.1, 0.3, (n, 1, 1))
        return np.clip(x + rng.normal(0.0, 0.2, x.shape), 0.0, 1.0)
    raise ValueError(f"unknown domain {domain!r}; valid: {', '.join(DOMAINS)}")


def digit_domains(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{domain: (images (n, 1, 8, 8), labels (n,))}``: four disjoint quarters of ``(x, y)`` (digits, NCHW), styled."""
    order = np.random.default_rng([seed, 0xD0A]).permutation(len(y))
    out = {}
    for k, (domain, part) in enumerate(zip(DOMAINS, np.array_split(order, len(DOMAINS)), strict=True)):
        rng = np.random.default_rng([seed, 0x57E, k])
        out[domain] = (style(x[part, 0], domain, rng)[:, None], y[part].astype(np.int64))
    return out


@dataclass(frozen=True)
class Split:
    """Indices into one domain's arrays."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_532(y: np.ndarray, rng: np.random.Generator) -> Split:
    """Per class: a permutation cut 5:3:2 (train = round(½ n_c), validation = round(0.3 n_c), test = the rest)."""
    parts: tuple[list, list, list] = ([], [], [])
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        a = int(round(0.5 * len(idx)))
        b = a + int(round(0.3 * len(idx)))
        for part, chunk in zip(parts, (idx[:a], idx[a:b], idx[b:]), strict=True):
            part.append(chunk)
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return Split(train, val, test)
