"""Weak supervision data in WRENCH's format (Zhang et al. 2021): the loader, and an embedded problem written in it.

**Format.** A directory holding ``train.json``, ``valid.json``, ``test.json`` — each a JSON object mapping an example id
to ``{"label": int, "weak_labels": [int per LF, -1 = abstain], "data": {...}}`` — and ``label.json``, the class names
(``{"0": "name", ...}`` or a list). :func:`load` reads it; features come from ``data``:

- a vector under ``data[feature_key]`` (default ``"feature"``) in every example of the three files, or else
- text under ``data["text"]`` (WRENCH's text sets: TREC, AGNews, IMDB, YouTube …), turned into features by the
  offline featurizer: scikit-learn's ``TfidfVectorizer(max_features, sublinear_tf=True)`` fitted on train's texts
  only, the same vocabulary applied to valid and test (dense rows).

Malformed input is a ``ValueError`` of one line naming the file and, where one is at fault, the example id: a missing
file, a file that is not a JSON object, a missing key, ``weak_labels`` of another length than train's first example's
(the number of LFs), a vote or label outside the classes of ``label.json``, features missing or of the wrong length,
and — with ``require_coverage`` — a training example that no LF covers.

**The embedded problem** (:func:`embedded`): scikit-learn's 1,797 8×8 digits (10 classes, 64 features in [0, 1])
turned into a weak supervision problem by a seeded family of labeling functions, written in WRENCH's format to a cache
directory (never the source tree) and read back through :func:`load`. Split (seeded, stratified): test 500, valid
(the clean set) 100 = 10 per class, train the remaining 1,197. A "developer" sample of 20 labelled train examples per
class builds the LFs (as an LF writer looks at a few examples); three kinds, per class c:

- two *prototype* LFs: vote c when the example lies within the q-quantile of train's distances to the mean of 5
  (tight, q = 4%) or 10 (loose, q = 9%) developer examples of class c — high, then middling accuracy;
- one *region* rule: vote c when the sum of the two pixels (of 16 drawn at random) whose developer mean most separates
  c from the rest exceeds its train quantile for a coverage drawn in [10 %, 25 %] — low accuracy, wide coverage;
- plus 5 *correlated* copies of randomly drawn prototype LFs (prototype from 4 of the same 5 examples and 1 other,
  threshold jittered ±10 %): LFs that err together, which Dawid–Skene's independence assumption does not model.

Measured (``lf_seed=0``; ``tests/test_weak_supervision.py`` pins the ranges), on train: 35 LFs; prototype-tight
accuracy 0.56–1.00 (median 1.00), coverage 0.040; prototype-loose 0.59–1.00 (median 0.88), coverage 0.090; region
rules 0.19–0.56 (median 0.31), coverage 0.09–0.23; correlated copies 0.49–1.00, coverage 0.09–0.19, their firing
correlated 0.66–0.99 with their source LF (median |correlation| among the 30 others: 0.07). 94 % of train covered,
85 % by two or more LFs, 66 % with conflicting votes. On the covered training examples majority vote is 0.78 and
Dawid–Skene 0.80 accurate; on test 0.716 and 0.706. (Per-LF lists are in every record: ``lf_accuracy``,
``lf_coverage``.)
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "valid", "test")
LAYOUT = ("expected a WRENCH directory: train.json, valid.json, test.json ({id: {label, weak_labels, data}}) and "
          "label.json (class names)")
#: bump when the embedded generator changes: the cache key includes it
GENERATOR_VERSION = 1
EMBEDDED = ("digits",)


@dataclass(frozen=True)
class Split:
    ids: tuple[str, ...]
    x: np.ndarray  # (n, f) float64
    y: np.ndarray  # (n,) int64
    votes: np.ndarray  # (n, m) int64, -1 = abstain


@dataclass(frozen=True)
class WrenchData:
    root: str
    classes: tuple[str, ...]
    train: Split
    valid: Split
    test: Split
    featurizer: str

    @property
    def n_lfs(self) -> int:
        return self.train.votes.shape[1]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ValueError(f"{path}: missing; {LAYOUT}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}); {LAYOUT}") from None


def _classes(root: Path) -> tuple[str, ...]:
    path = root / "label.json"
    obj = _read_json(path)
    if isinstance(obj, dict):
        try:
            keys = sorted(obj, key=int)
        except ValueError:
            raise ValueError(f"{path}: keys must be class indices 0..K-1 (got {list(obj)[:3]}); {LAYOUT}") from None
        if [int(k) for k in keys] != list(range(len(keys))):
            raise ValueError(f"{path}: keys must be class indices 0..K-1 (got {keys}); {LAYOUT}")
        names = tuple(str(obj[k]) for k in keys)
    elif isinstance(obj, list):
        names = tuple(str(n) for n in obj)
    else:
        raise ValueError(f"{path}: not a JSON object or list of class names; {LAYOUT}")
    if len(names) < 2:
        raise ValueError(f"{path}: {len(names)} class(es); at least 2 are needed")
    return names


def _examples(path: Path, k: int, m: int | None, require_coverage: bool) -> tuple[list, list, list, list]:
    obj = _read_json(path)
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{path}: not a non-empty JSON object of examples; {LAYOUT}")
    ids, labels, votes, data = [], [], [], []
    for eid, ex in obj.items():
        where = f"{path}: id {eid}"
        if not isinstance(ex, dict):
            raise ValueError(f"{where}: not an object with label, weak_labels, data")
        for key in ("label", "weak_labels", "data"):
            if key not in ex:
                raise ValueError(f"{where}: missing key {key!r}")
        label, wl = ex["label"], ex["weak_labels"]
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < k:
            raise ValueError(f"{where}: label {label!r} out of range 0..{k - 1} (label.json has {k} classes)")
        if not isinstance(wl, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in wl):
            raise ValueError(f"{where}: weak_labels must be a list of ints (-1 = abstain)")
        m = len(wl) if m is None else m
        if len(wl) != m:
            raise ValueError(f"{where}: weak_labels has {len(wl)} entries, expected {m} (one per LF, as in train.json)")
        bad = [v for v in wl if not -1 <= v < k]
        if bad:
            raise ValueError(f"{where}: weak label {bad[0]} out of range -1..{k - 1}")
        if require_coverage and all(v == -1 for v in wl):
            raise ValueError(f"{where}: no LF covers it (every weak label is -1) and the label model needs coverage "
                             "(task.uncovered=drop leaves such examples out)")
        if not isinstance(ex["data"], dict):
            raise ValueError(f"{where}: data must be an object")
        ids.append(str(eid))
        labels.append(label)
        votes.append(wl)
        data.append(ex["data"])
    return ids, labels, votes, data


def _features(paths: dict[str, Path], data: dict[str, list], ids: dict[str, list], key: str,
              max_features: int) -> tuple[dict[str, np.ndarray], str]:
    if all(key in d for s in SPLITS for d in data[s]):
        dim = None
        out = {}
        for s in SPLITS:
            rows = []
            for eid, d in zip(ids[s], data[s], strict=True):
                vec = np.asarray(d[key], dtype=np.float64) if isinstance(d[key], list) else None
                if vec is None or vec.ndim != 1 or (dim is not None and len(vec) != dim) or not np.isfinite(vec).all():
                    raise ValueError(f"{paths[s]}: id {eid}: data[{key!r}] is not a finite vector of length "
                                     f"{dim or 'as the first example'}")
                dim = len(vec)
                rows.append(vec)
            out[s] = np.stack(rows)
        return out, f"vectors data[{key!r}]"
    for s in SPLITS:
        for eid, d in zip(ids[s], data[s], strict=True):
            if key not in d and not isinstance(d.get("text"), str):
                raise ValueError(f"{paths[s]}: id {eid}: data has neither {key!r} (a feature vector) nor 'text'")
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(max_features=max_features, sublinear_tf=True)
    vec.fit([d["text"] for d in data["train"]])
    out = {s: np.asarray(vec.transform([d["text"] for d in data[s]]).todense(), dtype=np.float64) for s in SPLITS}
    return out, f"tf-idf (scikit-learn TfidfVectorizer, max_features={max_features}, sublinear tf) on data['text']"


def _stamp(root: Path) -> tuple:
    return tuple((n, os.stat(root / n).st_mtime_ns, os.stat(root / n).st_size)
                 for n in ("label.json", *(f"{s}.json" for s in SPLITS)) if (root / n).is_file())


@functools.lru_cache(maxsize=4)
def _load(root: str, stamp: tuple, feature_key: str, max_features: int, require_coverage: bool) -> WrenchData:
    path = Path(root)
    if not path.is_dir():
        raise ValueError(f"{path}: no such directory; {LAYOUT}")
    classes = _classes(path)
    paths = {s: path / f"{s}.json" for s in SPLITS}
    parsed, m = {}, None
    for s in SPLITS:
        parsed[s] = _examples(paths[s], len(classes), m, require_coverage and s == "train")
        m = len(parsed[s][2][0])
    ids = {s: parsed[s][0] for s in SPLITS}
    feats, how = _features(paths, {s: parsed[s][3] for s in SPLITS}, ids, feature_key, max_features)
    splits = {s: Split(tuple(ids[s]), feats[s], np.asarray(parsed[s][1], dtype=np.int64),
                       np.asarray(parsed[s][2], dtype=np.int64).reshape(len(ids[s]), m)) for s in SPLITS}
    return WrenchData(str(path), classes, splits["train"], splits["valid"], splits["test"], how)


def load(root: str | os.PathLike, feature_key: str = "feature", max_features: int = 500,
         require_coverage: bool = False) -> WrenchData:
    """Read a WRENCH directory (cached per process by the files' modification times and sizes)."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ValueError(f"{path}: no such directory; {LAYOUT}")
    return _load(str(path.resolve()), _stamp(path), feature_key, max_features, require_coverage)


def write(root: str | os.PathLike, classes: list[str], splits: dict[str, dict[str, dict]]) -> Path:
    """Write ``splits`` ({split: {id: example}}) and the class names in WRENCH's format, atomically (a temporary
    directory renamed into place, so concurrent writers never expose a half-written one)."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    (tmp / "label.json").write_text(json.dumps({str(i): n for i, n in enumerate(classes)}))
    for s, examples in splits.items():
        (tmp / f"{s}.json").write_text(json.dumps(examples))
    try:
        os.rename(tmp, root)
    except OSError:  # another process wrote it first: theirs is the same
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    return root


# ---- the embedded problem: digits + a seeded family of labeling functions ---------------------------------------
def _lf_family(x: np.ndarray, dev_x: np.ndarray, dev_y: np.ndarray, k: int, rng: np.random.Generator) -> list:
    """Each LF as a function x -> votes (n,) over all of ``x``'s rows; thresholds set on ``x`` (train)."""
    lfs = []
    protos = []
    for c in range(k):
        pool = rng.permutation(np.flatnonzero(dev_y == c))
        for size, q in ((5, 0.04), (10, 0.09)):
            members = pool[:size]
            centre = dev_x[members].mean(axis=0)
            radius = np.quantile(np.linalg.norm(x - centre, axis=1), q)
            lfs.append(("prototype", c, centre, radius))
            protos.append((c, pool, size, q))
        cand = rng.choice(x.shape[1], size=16, replace=False)
        sep = dev_x[dev_y == c][:, cand].mean(axis=0) - dev_x[dev_y != c][:, cand].mean(axis=0)
        feats = cand[np.argsort(-sep)[:2]]
        cover = rng.uniform(0.1, 0.25)
        lfs.append(("region", c, feats, np.quantile(x[:, feats].sum(axis=1), 1.0 - cover)))
    for j in rng.choice(len(protos), size=5, replace=False):
        c, pool, size, q = protos[j]
        other = rng.choice(np.flatnonzero(dev_y == c))
        members = np.append(pool[: size - 1], other)
        centre = dev_x[members].mean(axis=0)
        radius = np.quantile(np.linalg.norm(x - centre, axis=1), q) * rng.uniform(0.9, 1.1)
        lfs.append(("prototype", c, centre, radius))
    return lfs


def _apply(lf: tuple, x: np.ndarray) -> np.ndarray:
    kind, c, a, b = lf
    hit = np.linalg.norm(x - a, axis=1) <= b if kind == "prototype" else x[:, a].sum(axis=1) > b
    return np.where(hit, c, -1)


def embedded_splits(name: str = "digits", lf_seed: int = 0) -> tuple[list[str], dict[str, dict[str, dict]]]:
    """The embedded problem as WRENCH examples: ``(class names, {split: {id: example}})``."""
    if name not in EMBEDDED:
        raise ValueError(f"unknown embedded data set {name!r} (valid: {', '.join(EMBEDDED)})")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = np.asarray(bunch.data, dtype=np.float64) / 16.0, np.asarray(bunch.target, dtype=np.int64)
    k = 10
    rng = np.random.default_rng([lf_seed, 0x3E4C])
    test, valid, train = [], [], []
    for c in range(k):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(500 * len(idx) / len(y)))
        test += list(idx[:n_test])
        valid += list(idx[n_test : n_test + 10])
        train += list(idx[n_test + 10 :])
    test, valid, train = (np.sort(np.asarray(a)) for a in (test, valid, train))
    dev = np.concatenate([rng.choice(train[y[train] == c], size=20, replace=False) for c in range(k)])
    lfs = _lf_family(x[train], x[dev], y[dev], k, rng)
    votes = np.stack([_apply(lf, x) for lf in lfs], axis=1)
    splits = {}
    for s, rows in (("train", train), ("valid", valid), ("test", test)):
        splits[s] = {str(int(i)): {"label": int(y[i]), "weak_labels": [int(v) for v in votes[i]],
                                   "data": {"feature": [round(float(v), 4) for v in x[i]]}} for i in rows}
    return [str(c) for c in range(k)], splits


def embedded(name: str = "digits", lf_seed: int = 0, cache_dir: str | None = None) -> Path:
    """The embedded problem's WRENCH directory, written once under ``cache_dir`` (default
    ``<tmp>/mlo-bench-wrench``) and reused; the name carries the generator's version and seed."""
    base = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "mlo-bench-wrench"
    key = hashlib.sha256(f"{name}-{lf_seed}-{GENERATOR_VERSION}".encode()).hexdigest()[:10]
    root = base / f"{name}-lf{lf_seed}-v{GENERATOR_VERSION}-{key}"
    if not (root / "test.json").is_file():
        classes, splits = embedded_splits(name, lf_seed)
        write(root, classes, splits)
    return root


def lf_stats(split: Split) -> tuple[list[float], list[float]]:
    """Per LF: accuracy on the examples it covers (NaN → 0 when it covers none) and coverage, on ``split``."""
    cover = split.votes >= 0
    right = (split.votes == split.y[:, None]) & cover
    n_cov = cover.sum(axis=0)
    acc = np.where(n_cov > 0, right.sum(axis=0) / np.maximum(n_cov, 1), 0.0)
    return [float(a) for a in acc], [float(c) for c in cover.mean(axis=0)]
