"""Data shipped with the suite (read with ``importlib.resources``): ``claims.csv``, the papers' figures."""
