"""The documentation holds together: README.md is the front page and links to every page of ``docs/``; every
relative link in README.md and ``docs/*.md`` points to a file that exists (and, into a Markdown page, to a heading
it has); ``docs/layout.md`` names every sub-package of ``suite/``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(text: str) -> str:
    """The text outside fenced code blocks, with code spans blanked (their brackets are not links)."""
    return CODE_SPAN.sub("code", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text()))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces as hyphens."""
    text = re.sub(r"[`*]", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(FENCE.sub("", page.read_text()))}


def test_the_pages_exist_and_the_checks_find_their_links():
    assert (DOCS / "layout.md").is_file() and len(PAGES) > 2
    assert "docs/cli.md" in links(ROOT / "README.md")
    # a link in a code block or a bracket in a code span is not a link
    assert links_of("[a](x.md) `plugins=[m](y)` \n```\n[b](z.md)\n```\n") == ["x.md"]


def links_of(text: str) -> list[str]:
    return LINK.findall(prose(text))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file_that_exists(page):
    bad = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert bad == [], page.relative_to(ROOT)


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    assert [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked] == []


def test_the_readme_keeps_its_two_commands():
    """The front page opens with the set-up + main job command and the test command (CI runs the latter)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    assert len(blocks) == 2, "the main job and the tests"
    assert blocks[0].startswith("python3 -m venv .venv") and "pip install torch==2.13.0" in blocks[0]
    assert blocks[0].rstrip().endswith("mlo-bench demo")
    assert blocks[1] == 'python3 -m pip install "tox>=4" && python3 -m tox'
    assert "torch==2.13.0" in section.split(blocks[1], 1)[1], "the note on the CPU wheel"


def test_the_layout_page_names_every_suite_sub_package():
    text = (DOCS / "layout.md").read_text()
    packages = sorted(str(p.parent.relative_to(ROOT / "suite")) for p in (ROOT / "suite").rglob("__init__.py")
                      if p.parent != ROOT / "suite" and "__pycache__" not in p.parts)
    assert "report/render" in packages and "contract" in packages
    missing = [p for p in packages if f"`suite/{p}/`" not in text]
    assert missing == [], "docs/layout.md: a line for each sub-package of suite/"
