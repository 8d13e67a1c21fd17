"""Hypergradient-method plugins: one module per method (see ``_template.py``).

Each method implements ``response_vjp``: the approximation of (dθ*/dλ)ᵀ v at one lower level
(see :mod:`mlo_bench.suite.contract.method`). The chain over levels is
:func:`mlo_bench.suite.engine.hypergradient.hypergradient`.
"""
