"""Text corpora for data selection: the embedded one (the Python standard library's own source files) and the real
path (JSONL ``{"text": …}`` per line, or plain text, one document per line), cut into byte sequences.

Why the standard library: it is real text (code, docstrings, comments) that ships with every Python, so it needs no
download, and every file has a known *domain* — the top-level package it lives in (``email``, ``asyncio``,
``tkinter`` …; the modules at the top level form the domain ``toplevel``) — so which examples of a generic pool come
from the specific domain is ground truth (selection precision). The package ``test`` and ``site-packages`` are left
out (several distributions ship them apart), and so are packages with fewer than ``MIN_FILES`` files or
``MIN_BYTES`` bytes. Measured on CPython 3.11.7 (pyenv): 22 domains, 937 files, 13.1 MB (toplevel 4.70 MB,
encodings 1.41, idlelib 1.25, unittest 0.91, distutils 0.84, lib2to3 0.65, tkinter 0.65, asyncio 0.49, email 0.38,
xml 0.30, ctypes 0.30, multiprocessing 0.27, importlib 0.21, http 0.21, urllib 0.16, re 0.10, concurrent 0.07,
turtledemo 0.06, wsgiref 0.06, json 0.05, zoneinfo 0.04, tomllib 0.03). Another Python gives another corpus: every
run records its provenance (the task's ``corpus`` metric).

:func:`stdlib_corpus` → ``{domain: [(relative path, bytes), …]}`` (files in sorted order; cached per process);
:func:`provenance` — the Python version, root, file count and bytes per domain; :func:`load_documents` — the real
path, with one-line errors naming the file and line (:func:`corpus_documents`: those long enough, as the pre-check
and the task read them); :func:`sequences` — non-overlapping windows of ``length``
bytes of every document (the remainder dropped), as ``int64`` (byte values 0–255).
"""

from __future__ import annotations

import functools
import json
import platform
import sysconfig
from pathlib import Path

import numpy as np

from mlo_bench.tasks.data import checks

MIN_FILES = 4
MIN_BYTES = 20_000
LEFT_OUT = ("test", "site-packages", "__pycache__", "__phello__", "pydoc_data")


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@functools.lru_cache(maxsize=2)
def stdlib_corpus(root: str | None = None) -> dict[str, list[tuple[str, bytes]]]:
    """Every ``*.py`` file of the standard library, by domain (top-level package; ``toplevel`` for modules)."""
    base = Path(root) if root else stdlib_root()
    out: dict[str, list[tuple[str, bytes]]] = {}
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(base)
        if rel.parts[0] in LEFT_OUT or rel.parts[0].startswith("config-"):
            continue
        domain = rel.parts[0] if len(rel.parts) > 1 else "toplevel"
        try:
            out.setdefault(domain, []).append((rel.as_posix(), path.read_bytes()))
        except OSError:
            continue
    return {d: files for d, files in out.items()
            if len(files) >= MIN_FILES and sum(len(b) for _, b in files) >= MIN_BYTES}


def check_domain(domain: str, corpus: dict[str, list[tuple[str, bytes]]]) -> None:
    """One line naming ``task.domain`` and the valid values — the domains of *this* Python's standard library."""
    if domain not in corpus:
        raise ValueError(f"task.domain must be one of {', '.join(sorted(corpus))} (the packages of this Python's "
                         f"standard library, {stdlib_root()}; got {domain!r})")


def provenance(corpus: dict[str, list[tuple[str, bytes]]]) -> dict[str, object]:
    return {"python": platform.python_version(), "root": str(stdlib_root()),
            "files": sum(len(f) for f in corpus.values()),
            "bytes": {d: sum(len(b) for _, b in f) for d, f in sorted(corpus.items())}}


def load_documents(path: str, key: str) -> list[bytes]:
    """The documents of a JSONL (``*.jsonl``: one ``{"text": …}`` object per line) or plain-text file (one document
    per non-blank line), as UTF-8 bytes. Errors are one line naming ``key``, the file and the line: no such file, a
    directory, an empty file, a line that is not JSON (truncated, random bytes), a line without a ``"text"`` string.
    Read once per process while the file is unchanged (:func:`checks.stamp`): the pre-check and the task share it."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"{key}: {p} is a directory; expected a JSONL or plain-text corpus file")
    if not p.is_file():
        raise ValueError(f"{key}: no such file {p}")
    return list(_read_documents(str(p), key, checks.stamp([p])))


@functools.lru_cache(maxsize=2)
def _read_documents(path: str, key: str, stamp: tuple) -> tuple[bytes, ...]:
    p = Path(path)
    docs: list[bytes] = []
    try:
        fh = p.open("r", encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"{key}: {p}: unreadable ({exc.strerror or type(exc).__name__})") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if p.suffix == ".jsonl":
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{key}: {p}:{n}: not JSON ({exc.msg})") from None
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise ValueError(f"{key}: {p}:{n}: no \"text\" string in this line")
                docs.append(obj["text"].encode("utf-8"))
            else:
                docs.append(line.rstrip("\n").encode("utf-8"))
    if not docs:
        raise ValueError(f"{key}: {p} holds no document (empty corpus)")
    return tuple(docs)


def corpus_documents(path: str, key: str, length: int) -> list[bytes]:
    """The documents of ``path`` (:func:`load_documents`) of at least ``length`` bytes, at least 2 of them (a
    train/test split needs two); one-line errors otherwise. What ``data_selection``'s pre-check and its constructor
    both call for ``task.data=files``."""
    docs = load_documents(path, key)
    check_length(docs, length, key, path)
    kept = [d for d in docs if len(d) >= length]
    if len(kept) < 2:
        raise ValueError(f"{key}: {path} has {len(kept)} document(s) of >= {length} bytes (task.seq_len + 1); the "
                         "train/test split needs 2")
    return kept


def sequences(docs: list[bytes], length: int) -> np.ndarray:
    """``(n, length)`` int64: every document's non-overlapping windows of ``length`` bytes."""
    rows = []
    for doc in docs:
        k = len(doc) // length
        if k:
            rows.append(np.frombuffer(doc[: k * length], dtype=np.uint8).reshape(k, length))
    if not rows:
        return np.zeros((0, length), dtype=np.int64)
    return np.concatenate(rows).astype(np.int64)


def check_length(docs: list[bytes], length: int, key: str, path: str) -> None:
    if not any(len(d) >= length for d in docs):
        raise ValueError(f"{key}: every document of {path} is shorter than task.seq_len + 1 = {length} bytes "
                         f"(longest: {max(len(d) for d in docs)})")
