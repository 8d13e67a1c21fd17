"""Hypergradient-method plugins: one module per method (see ``_template.py``).

Each method implements ``response_vjp``: the approximation of (dθ*/dλ)ᵀ v at one lower level
(see :mod:`suite.contract.method`). The chain over levels is :func:`suite.hypergrad.hypergradient`.
"""
