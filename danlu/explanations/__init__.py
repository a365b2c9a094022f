"""Explanations: which pixels, tokens or columns made the model say what it said (Captum underneath).

``danlu.explain(run, inputs)`` (danlu.explanations.api) and ``danlu explain RUN INPUTS`` start here.
Captum and matplotlib are imported only inside the functions that use them, so importing danlu
(and ``danlu --help``) stays fast.
"""

from __future__ import annotations

METHODS = ("auto", "gradcam", "guided_gradcam", "ig", "occlusion", "saliency", "shap", "tree_shap")

__all__ = ["METHODS"]
