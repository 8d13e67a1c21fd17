"""A renderer-neutral report: sections of paragraphs, bullet lists, tables and figures.

The Markdown and HTML writers render the same :class:`Document`, so the two files always say the same thing.
Inline text may use ``**bold**`` and ```code``` (rendered by both writers).
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
class Section:
    title: str
    blocks: list = field(default_factory=list)
    level: int = 2
    anchor_id: str = ""

    @property
    def anchor(self) -> str:
        return self.anchor_id or slug(self.title)

    def add(self, *blocks) -> Section:
        self.blocks.extend(b for b in blocks if b is not None)
        return self


@dataclass
class Document:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)


def cell(text: object, bold: bool = False, tone: str = "") -> Cell:
    return Cell(str(text), bold, tone)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
