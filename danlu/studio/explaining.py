"""The studio's "try it" explanations: POST /api/runs/{name}/explain answers as ``danlu serve``'s
/v1/explain does (the same JSON, drawn by the same static/explain.js), for any finished run in the folder.

Explainers are kept per (run, method) beside the run's loaded Predictor, and run one at a time: an
explanation costs tens of forward and backward passes, and two at once would only share the same cores.
"""

from __future__ import annotations

import threading
from typing import Any

from pydantic import Field

MAX_EXPLAIN_INPUTS = 8  # as /v1/explain: each input costs ~32-64 forward/backward passes
MAX_AUDIO_EXPLAIN_INPUTS = 2  # as /v1/explain: an audio clip's occlusion map is 257 forward passes


def explain_body_model(base: type) -> type:
    """The try-it body (``base``: inputs, top_k) plus method and target, as /v1/explain takes them."""
    from pydantic import create_model

    return create_model("ExplainTryBody", __base__=base,
                        method=(str, Field("auto", description="auto, gradcam, guided_gradcam, ig, occlusion, "
                                                               "saliency or shap, as fits the model")),
                        target=(str | None, Field(None, description="the label to explain; default the prediction")))


class Explainers:
    """An Explainer per (run, method), rebuilt when the run's Predictor was reloaded."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()  # one explanation at a time, and the cache with it

    def explain(self, name: str, predictor: Any, inputs: list[Any], labels: list[str] | None, method: str,
                target: str | None, top_k: int) -> dict[str, Any]:
        from danlu.serve.explain_route import answer_body

        with self._lock:
            explainer = self._made.get((name, method))
            if explainer is None or explainer.predictor is not predictor:
                explainer = self._made[(name, method)] = _explainer(predictor, method)
            skipped: list[str] = []
            records = explainer.explain(inputs, target, top_k, skipped, labels)
        return {**answer_body(records, predictor.schema.kind, explainer.method, predictor.schema.audio),
                "skipped": skipped}


def _explainer(predictor: Any, method: str) -> Any:
    from danlu.explanations.api import Explainer

    explainer = Explainer(predictor, method)  # a method that does not fit says which do
    schema = predictor.schema
    if schema.kind == "tabular" and (schema.categories or schema.table) and explainer.method not in (
            "saliency", "tree_shap"):
        from danlu.explanations.views import train_split_x  # as danlu.explain: the training frequency baseline

        x = train_split_x(explainer, None)
        if x is not None:
            explainer.set_table_baseline(x)
    return explainer
