"""The report as a renderer-neutral document (:mod:`.doc`: sections of paragraphs, lists, tables and figures),
human-readable numbers (:mod:`.fmt`), and its writers: Markdown (:mod:`.markdown`), one self-contained HTML file
(:mod:`.html`), the figures (:mod:`.figures`, palette PNG) and the opening
quality-versus-cost figure (:mod:`.frontier`).
"""
