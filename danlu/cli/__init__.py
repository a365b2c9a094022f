"""``danlu VERB ...``: the dispatcher (dispatch.py) and one module per verb family.

``danlu.cli.run`` is the console entry point; ``main`` and ``build_parser`` are for tests and the docs.
"""

from danlu.cli.dispatch import build_parser, main, run

__all__ = ["build_parser", "main", "run"]
