"""Backend plugins: one module per autodiff engine (see ``_template.py``)."""
