"""The report's sections, one module each: the choice, run tables, paper tables and claims, engines side by
side, the floor, the complexity experiment (its section, fit and wall-time/FLOP gap), curves, timing and the
pytest-benchmark table.
"""
