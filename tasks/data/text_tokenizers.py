"""Tokenizers that need no download, for the text classification sets (:mod:`.text_classes`).

Both split text the way BERT's basic tokenizer does: runs of letters and digits are words, and every other
non-space character (``_`` included) is a token of its own; ``lowercase`` also strips accents (NFD, combining
marks dropped), as BERT's uncased models do.

- :class:`HashTokenizer` — ids by a stable hash: ``zlib.crc32(token UTF-8) % (vocab_size - 4) + 4`` (never Python's
  ``hash``, which is salted per process), so the ids of a word are the same on every run and machine. Specials:
  ``[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3``.
- :class:`WordPieceTokenizer` — BERT's ``vocab.txt`` (one token per line, id = line number from 0; ``##`` marks a
  continuation piece): each word split greedily longest-match-first; a word that cannot be split (or is longer
  than 100 characters) is one ``[UNK]``. Its special ids are those of the vocabulary (BERT's: 0, 100, 101, 102).

``encode(texts, seq_len, sep=False) -> (ids, mask)``: ``ids`` int64 ``(n, seq_len)`` — ``[CLS]``, the tokens, and
``[SEP]`` when ``sep`` (BERT's input form), truncated to ``seq_len`` and padded with ``[PAD]``; ``mask`` float32 —
1 on real tokens (``[CLS]``/``[SEP]`` included), 0 on padding.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
_TOKEN = re.compile(r"[^\W_]+|[^\w\s]|_")
MAX_WORD_CHARS = 100


def split_words(s: str, lowercase: bool) -> list[str]:
    """Words and punctuation marks of ``s`` (see the module docstring)."""
    if lowercase:
        s = s.lower()
    if lowercase and not s.isascii():
        s = "".join(ch for ch in unicodedata.normalize("NFD", s) if unicodedata.category(ch) != "Mn")
    return _TOKEN.findall(s)


class _Tokenizer:
    vocab_size: int
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    lowercase: bool

    def token_ids(self, s: str) -> list[int]:
        raise NotImplementedError

    def encode(self, texts: Sequence[str], seq_len: int, sep: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1 + int(sep):
            raise ValueError(f"seq_len must be an integer >= {1 + int(sep)} (got {seq_len!r})")
        room = seq_len - 1 - int(sep)
        tail = [self.sep_id] if sep else []
        rows, lengths = [], []
        for s in texts:
            row = [self.cls_id, *self.token_ids(s)[:room], *tail]
            lengths.append(len(row))
            rows.append(row + [self.pad_id] * (seq_len - len(row)))
        ids = np.array(rows, dtype=np.int64).reshape(len(texts), seq_len)
        mask = (np.arange(seq_len)[None, :] < np.array(lengths, dtype=np.int64)[:, None]).astype(np.float32)
        return ids, mask


class HashTokenizer(_Tokenizer):
    """Ids by ``crc32`` of each word (see the module docstring); no vocabulary, so no ``[UNK]`` ever appears."""

    def __init__(self, vocab_size: int, lowercase: bool = True) -> None:
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= len(SPECIALS):
            raise ValueError(f"vocab_size must be an integer > {len(SPECIALS)} (the special tokens) "
                             f"(got {vocab_size!r})")
        self.vocab_size = vocab_size
        self.lowercase = lowercase
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = range(len(SPECIALS))
        self._memo: dict[str, int] = {}

    def word_id(self, word: str) -> int:
        got = self._memo.get(word)
        if got is None:
            got = zlib.crc32(word.encode("utf-8")) % (self.vocab_size - len(SPECIALS)) + len(SPECIALS)
            self._memo[word] = got
        return got

    def tokenize(self, s: str) -> list[str]:
        return split_words(s, self.lowercase)

    def token_ids(self, s: str) -> list[int]:
        memo = self._memo
        return [memo[w] if w in memo else self.word_id(w) for w in split_words(s, self.lowercase)]


class WordPieceTokenizer(_Tokenizer):
    """BERT's WordPiece over a given vocabulary (see the module docstring)."""

    def __init__(self, vocab: Sequence[str], lowercase: bool = True, source: str = "<vocab>") -> None:
        self.index: dict[str, int] = {}
        for i, tok in enumerate(vocab):
            self.index.setdefault(tok, i)
        missing = [t for t in SPECIALS if t not in self.index]
        if missing:
            raise ValueError(f"{source}: the vocabulary has no {', '.join(missing)} token (BERT's vocab.txt has all "
                             f"of {', '.join(SPECIALS)})")
        self.vocab_size = len(vocab)
        self.lowercase = lowercase
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (self.index[t] for t in SPECIALS)
        self._memo: dict[str, tuple[str, ...]] = {}

    @classmethod
    def from_vocab(cls, path: str, lowercase: bool = True) -> WordPieceTokenizer:
        """Read a ``vocab.txt`` (UTF-8, one token per line); one-line errors naming the file."""
        p = Path(path).expanduser()
        if not p.is_file():
            raise ValueError(f"no such vocabulary file {p}")
        try:
            lines = p.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError:
            raise ValueError(f"{p}: not UTF-8 text (expected BERT's vocab.txt, one token per line)") from None
        if lines and lines[-1] == "":
            lines.pop()
        vocab = [t.rstrip("\r") for t in lines]
        if not vocab:
            raise ValueError(f"{p} is empty (expected BERT's vocab.txt, one token per line)")
        return cls(vocab, lowercase=lowercase, source=str(p))

    def pieces(self, word: str) -> tuple[str, ...]:
        """``word``'s WordPiece split, or ``("[UNK]",)``."""
        got = self._memo.get(word)
        if got is not None:
            return got
        out: list[str] = []
        start = 0
        while start < len(word) <= MAX_WORD_CHARS:
            end = len(word)
            while end > start and (word[start:end] if start == 0 else "##" + word[start:end]) not in self.index:
                end -= 1
            if end == start:
                break
            out.append(word[start:end] if start == 0 else "##" + word[start:end])
            start = end
        if start < len(word):
            out = ["[UNK]"]
        self._memo[word] = got = tuple(out)
        return got

    def tokenize(self, s: str) -> list[str]:
        return [p for w in split_words(s, self.lowercase) for p in self.pieces(w)]

    def token_ids(self, s: str) -> list[int]:
        return [self.index[p] for p in self.tokenize(s)]


def make_tokenizer(vocab_size: int | None, vocab_file: str | None = None, lowercase: bool = True
                   ) -> HashTokenizer | WordPieceTokenizer:
    """WordPiece over ``vocab_file`` when one is given (its size is the file's: ``vocab_size`` must then be
    ``None`` or equal it — a checkpoint's embedding table has one row per vocabulary line), else hashing into
    ``vocab_size`` ids. Read the model's vocabulary size from ``tokenizer.vocab_size``."""
    if vocab_file is None:
        if vocab_size is None:
            raise ValueError("vocab_size must be an integer > 4 when no vocab_file is given (got None)")
        return HashTokenizer(vocab_size, lowercase=lowercase)
    tok = WordPieceTokenizer.from_vocab(vocab_file, lowercase=lowercase)
    if vocab_size is not None and vocab_size != tok.vocab_size:
        raise ValueError(f"vocab_size must be None or {tok.vocab_size}, the tokens of {vocab_file} "
                         f"(got {vocab_size})")
    return tok
