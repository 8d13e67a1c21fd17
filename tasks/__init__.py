"""Task plugins: one module per multilevel program (see ``_template.py``)."""
