"""Text classification sets for reweighting a text classifier (issue #29, Betty's Table 2 shape): the embedded one —
lines of the Python standard library's own source, labelled by the package they live in — and GLUE's TSV files
(SST-2's ``train.tsv`` / ``dev.tsv``), each as a :class:`LabelledText`.

:func:`stdlib_lines` — the embedded set, needing no download. The domains of :func:`text.stdlib_corpus` (top-level
packages; ``test``, ``site-packages`` and tiny packages are already left out there) minus ``exclude`` (default: the
catch-all ``toplevel``) are the candidates. A *usable line* is a stripped line of at least ``min_chars`` characters
with at least one letter or digit (``)``, ``'''`` and ``# ----`` are not). Exact-text duplicates are dropped: a line
that occurs in two or more candidate packages is ambiguous and left out of every class; a line repeated inside one
package is kept once (its first occurrence). So no text is in two classes, and no split of the set can put one text
in two splits. The ``n_classes`` candidates with the most usable lines are the classes, class 0 the largest (ties
by name). Everything is in sorted-file, file order, and a pure function of the Python installation.

Measured on CPython 3.11.7 (pyenv), ``min_chars=24`` (the default), usable lines per package, the top 10:
idlelib 16,206 · distutils 10,131 · unittest 9,559 · tkinter 8,490 · lib2to3 8,034 · encodings 7,519 · asyncio
5,316 · email 4,700 · xml 3,803 · ctypes 3,690 (77,448 lines; next come multiprocessing 3,303 and http 2,782). The
head is 4.4× the tail before any long tail is cut; imbalance 20 and 50 are cut from it by :mod:`.longtail`. A
reference for the difficulty: a bag of words (the hash tokenizer's words, 2^16 features) with scikit-learn's
logistic regression (C=10), balanced, 1,000 training and 300 test lines per class (seed 0), gets 76% test accuracy
(chance 10%): from 61% on idlelib to 96% on encodings (mostly codec-table lines).
Build time, a fresh process each (``python -c`` timing ``text.stdlib_corpus()`` then ``stdlib_lines()``, load 1.4–2.7
on 2 shared cores): reading the files 1.4–3.1 s (:func:`text.stdlib_corpus`, cached and shared with
``data_selection``), then 0.95–2.1 s for the lines (about half of it the garbage collector); a second call returns
from the cache in 0.01 s. Hashing all 77,448 lines to ``seq_len=64`` ids takes 1.3–2.4 s (14.5 tokens a line on
average, none truncated at 64).

:func:`load_glue_tsv` / :func:`sst_dir` — the real path. GLUE's format: tab-separated, no quoting, a header row naming
the columns (SST-2: ``sentence<TAB>label``), integer labels ``0..C-1``; the header-less two-column form
``label<TAB>text`` is accepted too (recognised by an integer first field in a two-field first line). Errors are one
line naming the file and line: no such file, empty file, a missing column, a wrong column count, a non-integer or
negative label, an empty text, bytes that are not UTF-8. GLUE's SST-2 ``test.tsv`` has no labels, so :func:`sst_dir`
reads ``train.tsv`` for training and ``dev.tsv`` as the test set.

Tokenizers (:mod:`.text_tokenizers`, re-exported here): :class:`HashTokenizer`, :class:`WordPieceTokenizer`,
:func:`make_tokenizer`.
"""

from __future__ import annotations

import functools
import platform
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlo_bench.tasks.data import checks, text
from mlo_bench.tasks.data.text_tokenizers import HashTokenizer, WordPieceTokenizer, make_tokenizer

__all__ = ["LabelledText", "stdlib_lines", "load_glue_tsv", "sst_dir", "HashTokenizer", "WordPieceTokenizer",
           "make_tokenizer", "DEFAULT_MIN_CHARS"]

DEFAULT_MIN_CHARS = 24


@dataclass(frozen=True)
class LabelledText:
    """``texts[i]`` has label ``labels[i]`` (int64, in ``0..len(classes)-1``); ``classes[c]`` names class ``c``;
    ``provenance`` says where the set came from (JSON-serialisable: the task records it)."""

    texts: list[str]
    labels: np.ndarray
    classes: tuple[str, ...]
    provenance: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> list[int]:
        """Examples per class, class 0 first."""
        return np.bincount(self.labels, minlength=len(self.classes)).tolist()


_ALNUM = re.compile(r"[^\W_]")


def stdlib_lines(n_classes: int = 10, min_chars: int = DEFAULT_MIN_CHARS, max_per_class: int | None = None,
                 root: str | None = None, exclude: tuple[str, ...] = ("toplevel",)) -> LabelledText:
    """The embedded classification set (see the module docstring): ``n_classes`` packages of the standard library,
    each line labelled by its package. ``max_per_class`` keeps at most that many lines per class, evenly spaced over
    the class's lines in file order (so every part of the package is represented), all of them when ``None``.
    A fresh :class:`LabelledText` per call over a per-process cache (the caller may modify it)."""
    if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2 (got {n_classes!r})")
    if not isinstance(min_chars, int) or isinstance(min_chars, bool) or min_chars < 1:
        raise ValueError(f"min_chars must be an integer >= 1 (got {min_chars!r})")
    if max_per_class is not None and (not isinstance(max_per_class, int) or max_per_class < 1):
        raise ValueError(f"max_per_class must be None or an integer >= 1 (got {max_per_class!r})")
    texts, labels, classes, prov = _stdlib_lines(n_classes, min_chars, max_per_class, root, tuple(exclude))
    prov_copy = {k: dict(v) if isinstance(v, dict) else v for k, v in prov}
    return LabelledText(list(texts), np.array(labels, dtype=np.int64), classes, prov_copy)


@functools.lru_cache(maxsize=8)
def _package_lines(min_chars: int, root: str | None, exclude: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Every candidate package's unambiguous usable lines, deduplicated, in file order."""
    corpus = text.stdlib_corpus(root)
    per: dict[str, dict[str, None]] = {}
    for domain, files in corpus.items():
        if domain in exclude:
            continue
        seen: dict[str, None] = {}
        for _rel, raw in files:
            for line in raw.decode("utf-8", errors="replace").splitlines():
                s = line.strip()
                if len(s) >= min_chars and _ALNUM.search(s):
                    seen.setdefault(s, None)
        per[domain] = seen
    in_packages = Counter(s for seen in per.values() for s in seen)
    return {d: tuple(s for s in seen if in_packages[s] == 1) for d, seen in per.items()}


@functools.lru_cache(maxsize=8)
def _stdlib_lines(n_classes: int, min_chars: int, max_per_class: int | None, root: str | None,
                  exclude: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...], tuple]:
    per = _package_lines(min_chars, root, exclude)
    ranked = sorted(per, key=lambda d: (-len(per[d]), d))
    if len(ranked) < n_classes:
        raise ValueError(f"n_classes must be <= {len(ranked)}, the packages of this Python's standard library with "
                         f"usable lines ({text.stdlib_root()}; got {n_classes})")
    classes = tuple(ranked[:n_classes])
    texts: list[str] = []
    labels: list[int] = []
    kept: dict[str, int] = {}
    for c, domain in enumerate(classes):
        lines = per[domain]
        if max_per_class is not None and len(lines) > max_per_class:
            idx = np.linspace(0, len(lines) - 1, max_per_class).round().astype(int)
            lines = tuple(lines[i] for i in idx)
        texts.extend(lines)
        labels.extend([c] * len(lines))
        kept[domain] = len(lines)
    prov = {"source": "stdlib_lines", "python": platform.python_version(),
            "root": str(Path(root) if root else text.stdlib_root()), "min_chars": min_chars,
            "max_per_class": max_per_class, "lines": kept}
    return tuple(texts), tuple(labels), classes, tuple(prov.items())


def load_glue_tsv(path: str, text_column: str = "sentence", label_column: str = "label") -> LabelledText:
    """A GLUE-format TSV file (see the module docstring) as a :class:`LabelledText`; classes ``"0".."C-1"`` with
    ``C`` = the largest label + 1. Read once per process while the file is unchanged (:func:`checks.stamp`)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"{p} is a directory; expected a GLUE TSV file (e.g. SST-2's train.tsv)")
    if not p.is_file():
        raise ValueError(f"no such file {p}")
    texts, labels, fmt = _read_tsv(str(p), text_column, label_column, checks.stamp([p]))
    n_classes = max(labels) + 1
    counts = np.bincount(np.array(labels, dtype=np.int64), minlength=n_classes).tolist()
    prov = {"source": "glue_tsv", "file": str(p), "format": fmt, "rows": len(texts), "lines": counts}
    return LabelledText(list(texts), np.array(labels, dtype=np.int64), tuple(str(c) for c in range(n_classes)), prov)


@functools.lru_cache(maxsize=4)
def _read_tsv(path: str, text_column: str, label_column: str, stamp: tuple
              ) -> tuple[tuple[str, ...], tuple[int, ...], str]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ValueError(f"{p}: unreadable ({exc.strerror or type(exc).__name__})") from None
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[:exc.start].count(b"\n") + 1
        raise ValueError(f"{p}:{bad_line}: not UTF-8 text") from None
    rows = [(n, line.rstrip("\r")) for n, line in enumerate(body.split("\n"), 1) if line.strip()]
    if not rows:
        raise ValueError(f"{p} is empty (expected a header row such as 'sentence<TAB>label' and examples)")
    first_n, first = rows[0]
    head = first.split("\t")
    if len(head) == 2 and _is_int(head[0]):
        fmt, width, ti, li, data = "label<TAB>text", 2, 1, 0, rows
    else:
        fmt, width, data = "header", len(head), rows[1:]
        for col in (text_column, label_column):
            if col not in head:
                hint = " (GLUE's test.tsv has no labels: use dev.tsv as the test set)" if col == label_column else ""
                raise ValueError(f"{p}:{first_n}: no column {col!r} in the header ({', '.join(head)}){hint}")
        ti, li = head.index(text_column), head.index(label_column)
        if not data:
            raise ValueError(f"{p} has a header but no examples")
    texts: list[str] = []
    labels: list[int] = []
    for n, line in data:
        parts = line.split("\t")
        if len(parts) != width:
            raise ValueError(f"{p}:{n}: {len(parts)} tab-separated columns, expected {width} ({fmt})")
        lab = parts[li].strip()
        if not _is_int(lab) or int(lab) < 0:
            raise ValueError(f"{p}:{n}: label {lab!r} is not an integer 0..C-1")
        txt = parts[ti].strip()
        if not txt:
            where = repr(text_column) if fmt == "header" else "2"
            raise ValueError(f"{p}:{n}: empty text in column {where}")
        texts.append(txt)
        labels.append(int(lab))
    return tuple(texts), tuple(labels), fmt


def _is_int(s: str) -> bool:
    s = s.strip()
    return s.isascii() and (s.isdigit() or (s[:1] == "-" and s[1:].isdigit()))


def sst_dir(root: str, text_column: str = "sentence", label_column: str = "label"
            ) -> tuple[LabelledText, LabelledText]:
    """``(train, test)`` from GLUE's SST-2 layout: ``<root>/train.tsv`` and ``<root>/dev.tsv`` (the labelled dev set
    is the test set: GLUE's ``test.tsv`` has no labels). Both get the same classes (the larger label range)."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ValueError(f"no such directory {base} (expected GLUE's SST-2 folder with train.tsv and dev.tsv)")
    train = load_glue_tsv(str(base / "train.tsv"), text_column, label_column)
    test = load_glue_tsv(str(base / "dev.tsv"), text_column, label_column)
    classes = max(train.classes, test.classes, key=len)
    return (LabelledText(train.texts, train.labels, classes, {**train.provenance, "split": "train"}),
            LabelledText(test.texts, test.labels, classes, {**test.provenance, "split": "test (dev.tsv)"}))
