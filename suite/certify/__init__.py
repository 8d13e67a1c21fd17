"""``mlo-bench verify``: the cross-backend agreement certificate (:mod:`.verify`), its command line
(:mod:`.options`) and its columns (:mod:`.agreement`: how far a pytree is from a reference, by the engine's one
rule, :mod:`mlo_bench.suite.engine.compare`, and when that question is empty).

May import: ``contract``, ``engine``, ``plugins``, ``run`` (it composes and executes runs), ``measure``, ``conf``
(the run keys). Never ``cli`` or ``report``: verify is a library the CLI calls, not the other way round.
"""
