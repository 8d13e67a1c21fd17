"""``mlo-bench verify``: the cross-backend agreement certificate (:mod:`.verify`), its command line
(:mod:`.options`) and the one rule for how far a pytree is from a reference (:mod:`.agreement`).

May import: ``contract``, ``engine``, ``plugins``, ``run`` (it composes and executes runs), ``measure``, ``conf``
(the run keys). Never ``cli`` or ``report``: verify is a library the CLI calls, not the other way round.
"""
