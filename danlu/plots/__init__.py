"""A run's figures (figures.py), drawn in helper processes (worker.py), with a CJK font (fonts.py)."""
