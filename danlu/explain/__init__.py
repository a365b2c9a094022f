"""Explanations: which pixels, tokens or columns made the model say what it said (Captum underneath).

``danlu.explain(run, inputs)`` and ``danlu explain RUN INPUTS`` start here. Captum and matplotlib are
imported only inside the functions that use them, so importing danlu (and ``danlu --help``) stays fast.
"""

from __future__ import annotations

from typing import Any

METHODS = ("auto", "gradcam", "ig", "occlusion", "saliency", "shap")


def explain(run: Any, inputs: Any = None, **kwargs: Any) -> Any:
    """See ``danlu.explain.api.explain``."""
    from danlu.explain.api import explain as run_explain

    return run_explain(run, inputs, **kwargs)


__all__ = ["METHODS", "explain"]
