"""The HTML writer: ONE self-contained file — inline CSS, figures embedded as base64 PNG data URIs, no scripts,
no external resources — readable offline and attachable to an email or a CI artifact."""

from __future__ import annotations

import base64
import html
import re

from mlo_bench.suite.report.render.doc import Bullets, Cards, Details, Document, Figure, Para, Section, Table

CSS = """
:root { --fg:#1d2330; --muted:#667085; --line:#d9dee7; --head:#f3f5f9; --accent:#2f5fb3;
        --good:#e6f4ea; --bad:#fde8e8; --warn:#fff5d6; }
* { box-sizing: border-box; }
body { font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg);
       max-width: 1480px; margin: 0 auto; padding: 20px 24px 64px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 24px 0 6px; }
p.subtitle { color: var(--muted); margin-top: 0; }
nav.toc { background: var(--head); border: 1px solid var(--line); border-radius: 6px; padding: 8px 16px;
          margin: 12px 0; }
nav.toc a { margin-right: 18px; color: var(--accent); text-decoration: none; white-space: nowrap;
            display: inline-block; }
code { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f1f3f7;
       padding: 1px 4px; border-radius: 3px; }
.table-wrap { overflow-x: auto; margin: 8px 0 4px; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { border: 1px solid var(--line); padding: 3px 6px; vertical-align: top; }
th { background: var(--head); text-align: left; vertical-align: bottom; }
td.r { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.good { background: var(--good); } td.bad { background: var(--bad); } td.warn { background: var(--warn); }
td.muted { color: var(--muted); }
td.good, td.bad, td.warn, td.muted, td code { white-space: nowrap; }
tbody tr:nth-child(even) td:not(.good):not(.bad):not(.warn) { background: #fafbfd; }
.caption { color: var(--muted); font-size: 12.5px; margin: 2px 0 12px; }
figure { margin: 12px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 12.5px; }
ul { margin: 6px 0; padding-left: 22px; }
details { margin: 6px 0 10px; }
details > summary { cursor: pointer; color: var(--accent); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(430px, 1fr)); gap: 8px 16px; }
.card { min-width: 0; }
.card figure { margin: 4px 0 2px; }
.card figure img { width: 100%; max-width: 520px; }
.card figcaption { display: none; }
.card p, .card li { font-size: 13px; line-height: 1.4; margin: 2px 0; }
"""


def inline(text: str) -> str:
    """Escape, then render ``**bold**``, ```code``` and ``[text](#anchor)`` links."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"\[([^\]]+)\]\((#[A-Za-z0-9_-]+)\)", r'<a href="\2">\1</a>', out)
    return out


def table(t: Table) -> str:
    if not t.rows:
        return ""
    align = [t.align[i] if i < len(t.align) else "l" for i in range(len(t.header))]
    head = "".join(f"<th>{inline(h).replace('_', '_<wbr>')}</th>" for h in t.header)
    body = []
    for row in t.rows:
        cells = []
        for i, c in enumerate(row):
            classes = " ".join(x for x in ("r" if align[i] == "r" else "", c.tone) if x)
            attr = f' class="{classes}"' if classes else ""
            text = inline(c.text)
            cells.append(f"<td{attr}>{f'<strong>{text}</strong>' if c.bold and c.text.strip() else text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f'<div class="caption">{inline(t.caption)}</div>' if t.caption else ""
    return (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
            f"</tbody></table></div>{caption}")


def figure(f: Figure) -> str:
    data = base64.b64encode(f.path.read_bytes()).decode("ascii")
    alt = html.escape(f.caption)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{inline(f.caption)}</figcaption></figure>")


def block(b) -> str:
    if isinstance(b, Para):
        return f"<p>{inline(b.text)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{inline(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Table):
        return table(b)
    if isinstance(b, Figure):
        return figure(b)
    if isinstance(b, Details):
        inner = "\n".join(block(x) for x in b.blocks)
        return f"<details><summary>{inline(b.summary)}</summary>\n{inner}\n</details>"
    if isinstance(b, Cards):
        cards = "".join('<div class="card">' + "\n".join(block(x) for x in c) + "</div>" for c in b.cards)
        return f'<div class="cards">{cards}</div>'
    return ""


def _section(section: Section) -> str:
    tag = f"h{min(max(section.level, 2), 4)}"
    parts = [f'<{tag} id="{section.anchor}">{inline(section.title)}</{tag}>']
    parts += [block(b) for b in section.shown()]
    return "\n".join(p for p in parts if p)


def render(doc: Document) -> str:
    # the links are joined by a space: with ``white-space: nowrap`` on each, that space is where the list wraps
    toc = " ".join(f'<a href="#{s.anchor}">{inline(s.title)}</a>' for s in doc.sections if s.level == 2)
    body = "\n".join(_section(s) for s in doc.sections)
    subtitle = f'<p class="subtitle">{inline(doc.subtitle)}</p>' if doc.subtitle else ""
    nav = f'<nav class="toc">{toc}</nav>' if toc else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{inline(doc.title)}</h1>\n{subtitle}\n{nav}\n{body}\n</body>\n</html>\n"
    )
