"""The Markdown writer (GitHub-flavoured tables; figures linked by relative path; folds as ``<details>``, which GitHub
renders, with blank lines around their Markdown)."""

from __future__ import annotations

import os
from pathlib import Path

from mlo_bench.suite.report.render.doc import Bullets, Cards, Details, Document, Figure, Para, Section, Table


def _escape_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(t: Table) -> str:
    if not t.rows:
        return ""
    align = [t.align[i] if i < len(t.align) else "l" for i in range(len(t.header))]
    lines = ["| " + " | ".join(_escape_cell(h) for h in t.header) + " |",
             "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"]
    for row in t.rows:
        cells = [f"**{_escape_cell(c.text)}**" if c.bold and c.text.strip() else _escape_cell(c.text) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    out = "\n".join(lines)
    return (f"{out}\n\n*{t.caption}*" if t.caption else out)


def render(doc: Document, out_dir: Path) -> str:
    parts = [f"# {doc.title}"]
    if doc.subtitle:
        parts.append(doc.subtitle)
    toc = [f"- [{s.title}](#{s.anchor})" for s in doc.sections if s.level == 2]
    if len(toc) > 2:
        parts.append("**Contents:**\n" + "\n".join(toc))
    for section in doc.sections:
        parts.append(_section(section, out_dir))
    return "\n\n".join(p for p in parts if p) + "\n"


def block(b, out_dir: Path) -> str:
    if isinstance(b, Para):
        return b.text
    if isinstance(b, Bullets):
        return "\n".join(f"- {item}" for item in b.items)
    if isinstance(b, Table):
        return table(b)
    if isinstance(b, Figure):
        rel = Path(os.path.relpath(b.path, out_dir)).as_posix()
        return f"![{b.caption}]({rel})\n\n*{b.caption}*"
    if isinstance(b, Details):
        inner = "\n\n".join(x for x in (block(x, out_dir) for x in b.blocks) if x)
        return f"<details><summary>{b.summary}</summary>\n\n{inner}\n\n</details>"
    if isinstance(b, Cards):
        return "\n\n".join(x for c in b.cards for x in (block(y, out_dir) for y in c) if x)
    return ""


def _section(section: Section, out_dir: Path) -> str:
    parts = [f'<a id="{section.anchor}"></a>\n\n{"#" * section.level} {section.title}']
    parts += [block(b, out_dir) for b in section.shown()]
    return "\n\n".join(p for p in parts if p)
