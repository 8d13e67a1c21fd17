"""Plugins: the registry of tasks, backends and methods — the suite's own folders, entry points,
``plugins=`` modules (:mod:`.registry`) — and the tasks' declared variants as Hydra options (:mod:`.variants`).

May import: ``contract`` and ``conf`` (the run keys). Never ``cli``, ``run``, ``certify``, ``report``, ``engine``,
``measure`` or ``models``: every other layer finds plugins here, so this layer depends on none of them.
"""
