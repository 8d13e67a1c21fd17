"""A renderer-neutral report: sections of paragraphs, bullet lists, tables and figures, side-by-side cards and
folded blocks.

The Markdown and HTML writers render the same :class:`Document`, so the two files always say the same thing.
Inline text may use ``**bold**`` and ```code``` (rendered by both writers). A :class:`Details` block is folded in
both (``<details>``: GitHub renders it in Markdown too); a folded :class:`Section` shows its heading and first
paragraph and folds the rest; :class:`Cards` sit side by side in the HTML and one after another in Markdown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Cell:
    text: str
    bold: bool = False
    tone: str = ""  # "good", "bad", "warn", "muted" or "" — a hint for the HTML writer's colours


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]
    align: list[str] = field(default_factory=list)  # "l" or "r" per column; default: left
    caption: str = ""


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Figure:
    path: Path  # the PNG on disk (the Markdown links it, the HTML embeds it)
    caption: str


@dataclass
class Details:
    """Blocks folded behind a one-line ``summary`` (a reader opens it)."""

    summary: str
    blocks: list = field(default_factory=list)


@dataclass
class Cards:
    """Groups of blocks shown side by side (a grid in the HTML; in sequence in Markdown), e.g. a figure per task with
    its sentences."""

    cards: list[list] = field(default_factory=list)


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    level: int = 2
    anchor_id: str = ""
    #: the heading and the first paragraph stay in view; every other block goes behind one :class:`Details`
    folded: bool = False

    @property
    def anchor(self) -> str:
        return self.anchor_id or slug(self.title)

    def add(self, *blocks) -> Section:
        self.blocks.extend(b for b in blocks if b is not None)
        return self

    def shown(self) -> list:
        """The blocks as the writers lay them out: a folded section's rest wrapped in one :class:`Details`."""
        if not self.folded:
            return self.blocks
        lead = 1 if self.blocks and isinstance(self.blocks[0], Para) else 0
        rest = self.blocks[lead:]
        return self.blocks[:lead] + ([Details(fold_summary(rest), rest)] if rest else [])


@dataclass
class Document:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)


def cell(text: object, bold: bool = False, tone: str = "") -> Cell:
    return Cell(str(text), bold, tone)


def fold_summary(blocks: list) -> str:
    """What a fold holds, counted: ``3 tables, 2 figures, 4 notes``."""
    kinds = (("table", Table), ("figure", Figure), ("list", Bullets), ("note", Para), ("fold", Details),
             ("card", Cards))
    counts = [(name, sum(len(b.cards) if isinstance(b, Cards) else 1 for b in blocks if isinstance(b, cls)))
              for name, cls in kinds]
    return "show " + ", ".join(f"{n} {name}{'' if n == 1 else 's'}" for name, n in counts if n)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
