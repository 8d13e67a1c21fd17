"""The run's configuration: Hydra's primary config (``config.yaml``) and its YAML groups (``experiment/``,
``complexity_path/``, ``peers_case/``), read with ``importlib.resources``, and the run keys (:mod:`.keys`: each
key's default and hash rule, declared once; ``config.yaml`` repeats the defaults for Hydra, a test keeps them equal).

Imports nothing of the suite: every layer may read it.
"""
