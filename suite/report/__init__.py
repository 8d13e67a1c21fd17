"""``mlo-bench report``: run records → tidy tables (Parquet, CSV), Markdown and self-contained HTML reports with
figures, a paper-claims table and, optionally, pytest-benchmark results.

Nothing here names a task: what a task's metrics mean, its variants, paper tables, size knob and claims are read
from its declarations (``Task.paper``, :mod:`mlo_bench.suite.contract.paper`) through ``specs``.

Layout: :mod:`.build` assembles the report from an ordered list of parts (``build.PARTS``), one per section module
of :mod:`.sections`, each ``part(ctx: Context) -> Rendered`` (the contract: its docstring); records become tables in
:mod:`.tidy`, :mod:`.runs` and :mod:`.specs`, statistics and verdicts in :mod:`.stats` and :mod:`.verdicts`; the
renderer-neutral document and its Markdown, HTML and figure writers live in :mod:`.render`.

The command itself (``mlo-bench report``: its parser and ``main``) is :mod:`.command`; this ``__init__`` imports
nothing, so a module here importing ``from mlo_bench.suite.report import specs`` never runs back into the package.

The report reads records only: it may import ``run`` records (:mod:`mlo_bench.suite.run.records`), ``plugins``
(the tasks' declarations) and ``contract``. Never ``cli``, ``run`` beyond its records, ``certify``, ``engine``,
``measure`` or ``models``: a report is the same from the same records on any machine.
"""
