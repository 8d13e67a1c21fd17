"""Data shipped with the suite (read with ``importlib.resources``): ``claims.csv``, the papers' figures as one
row per claim, for the report's reproduction table. No Python lives here beyond this docstring, and nothing of the
suite is imported.
"""
