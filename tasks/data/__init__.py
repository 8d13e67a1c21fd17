"""Data for tasks: embedded defaults that load offline and real-format loaders (see DESIGN.md, "Data, offline").

- :mod:`mlo_bench.tasks.data.checks` — the loaders' pre-check helpers (a loader run in ``Config.validate()``, one-line
  errors naming the key and file, file stamps for caching, enough examples per class, finite arrays).
- :mod:`mlo_bench.tasks.data.images` — scikit-learn's bundled 8×8 digits, and CIFAR-10 from its python pickle batches.
- :mod:`mlo_bench.tasks.data.longtail` — long-tailed class sizes and splits (Shu et al. 2019), uniform label noise.
- :mod:`mlo_bench.tasks.data.text` — the standard library's source files as a domain-labelled text corpus, and
  JSONL / plain-text corpora, cut into byte sequences (``data_selection``).
- :mod:`mlo_bench.tasks.data.text_classes` — text classification sets: the standard library's lines labelled by
  package, and GLUE / SST-2 TSV files (issue #29); :mod:`mlo_bench.tasks.data.text_tokenizers` — the hash and
  WordPiece tokenizers they are encoded with (no download).
- :mod:`mlo_bench.tasks.data.selection_filters` — the data-selection baselines' scorers (ridge classifier, CDS).
- :mod:`mlo_bench.tasks.data.selection_paper` — the data-selection task's paper (Grangier et al. 2024's reference runs).

Not a task plugin: the registry imports it like any module of ``tasks/``, and it registers nothing.
"""
