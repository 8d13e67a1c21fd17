"""The run keys: the top-level keys of a run's config (``config.yaml`` beside this file gives their defaults).

The lowest module of the suite's configuration: it imports nothing, so the plan (:mod:`mlo_bench.suite.run.plan`),
the variants (:mod:`mlo_bench.suite.plugins.variants`) and the CLI's override check all read the one list.
"""

TOP_LEVEL_KEYS = (
    "task", "backend", "method", "seed", "steps", "inner_steps", "dtype", "device", "results_dir",
    "log_every", "progress", "hypergrad_check", "isolate", "resume", "limits", "budget",
    "ordering", "eval_every", "level_steps",
    "plugins", "repeat", "variant", "threads", "fused",
)
