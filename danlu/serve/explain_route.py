"""POST /v1/explain: the same inputs as /v1/predict, answered with why the model said what it said.

Images come back as a PNG heat map over the image (base64) and the raw signed map, pooled down to at most
``MAP_SIDE`` pixels a side; sound clips as the time-frequency occlusion map (bands x windows, with the cells'
edges in Hz and seconds) and the same two-panel PNG as ``danlu explain`` draws; texts as (token, score) pairs;
table rows as (column, score) pairs. Inputs go
through ``parse_json`` and ``Engine.prepare``, so whatever /v1/predict refuses is refused here the same way.

Attributions need gradients, so they do not join the prediction batches: each request runs in a worker
thread, one at a time (an explanation costs tens of forward and backward passes, and two at once would
only share the same cores). Captum loads on the first request, not when the server starts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from danlu.serve.docs import ERRORS, UPLOAD_SCHEMA
from danlu.serve.inputs import RequestError, parse_json, parse_uploads

MAX_EXPLAIN_INPUTS = 8  # per request: each input costs ~32-64 forward/backward passes
# audio: each clip costs bands x windows + 1 = 257 forward passes of the whole model (features included):
# two clips are about the cost of eight images
MAX_AUDIO_EXPLAIN_INPUTS = 2
MAX_LABEL = 1000  # characters of "target" or "method": labels are names, not documents
MAP_SIDE = 32  # the raw map in the answer is average-pooled to at most this many pixels a side
FIELDS = ("inputs", "top_k", "method", "target")

EXPLAIN_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object", "required": ["inputs"],
                    "properties": {
                        "inputs": {"type": "array", "description": "as for /v1/predict (base64 images or data URLs, "
                                                                  "texts, or feature rows)"},
                        "top_k": {"type": "integer", "default": 3},
                        "method": {"type": "string", "default": "auto",
                                   "description": "auto, gradcam, guided_gradcam, ig, occlusion, saliency or shap, "
                                                  "as fits the model (audio: occlusion)"},
                        "target": {"type": ["string", "null"], "default": None,
                                   "description": "the class (or regression target) to explain; default the "
                                                  "prediction"},
                    }},
                "example": {"inputs": ["data:image/png;base64,iVBORw0KGgo..."], "method": "auto"},
            },
            "multipart/form-data": {"schema": {  # /v1/predict's upload form, plus method and target
                **UPLOAD_SCHEMA, "properties": {**UPLOAD_SCHEMA["properties"], "method": {"type": "string"},
                                                "target": {"type": "string"}}}},
        },
    }
}


def parse_explain(body: bytes, schema: Any, max_inputs: int) -> tuple[Any, str, Any]:
    """(PredictRequest, method, target) from a JSON body; RequestError for anything /v1/predict would refuse,
    and for a method or target that is not a string."""
    try:
        payload = json.loads(body, parse_constant=_no_constant)  # NaN / Infinity: predict's own error below
    except (ValueError, UnicodeDecodeError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        return parse_json(body, schema, max_inputs), "auto", None  # raises predict's own error for this body
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(map(repr, unknown))}",
                           'the body takes "inputs" (a list) and optionally "top_k", "method" and "target"')
    method = payload.pop("method", "auto")
    target = payload.pop("target", None)
    if not isinstance(method, str):
        raise RequestError('"method" must be a string', "auto, gradcam, guided_gradcam, ig, occlusion, saliency "
                           "or shap")
    if target is not None and not isinstance(target, str | int) or isinstance(target, bool):
        raise RequestError('"target" must be a label (a string) or null', "null explains the predicted class")
    check_label_sizes(method, target)
    req = parse_json(json.dumps(payload, allow_nan=False).encode(), schema, max_inputs)
    return req, method, target


def check_label_sizes(method: str, target: Any) -> None:
    if len(method) > MAX_LABEL or target is not None and len(str(target)) > MAX_LABEL:
        raise RequestError(f'"target" and "method" take at most {MAX_LABEL} characters',
                           "a class label, or null for the predicted class; a method name")


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def pooled_map(signed: Any, side: int = MAP_SIDE) -> dict[str, Any]:
    """The signed [H, W] map average-pooled to at most ``side`` a side, 4 significant digits: small to send,
    enough to redraw or test against."""
    import torch

    m = torch.as_tensor(signed, dtype=torch.float32)[None, None]
    h, w = m.shape[2:]
    if max(h, w) > side:
        m = torch.nn.functional.adaptive_avg_pool2d(m, (min(h, side), min(w, side)))
    values = [[_finite(float(f"{v:.4g}")) for v in row] for row in m[0, 0].tolist()]
    return {"shape": [len(values), len(values[0]) if values else 0], "values": values}


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _clean(obj: Any) -> Any:
    """NaN or infinity (a degenerate attribution) as null: JSON has neither, and the answer must not be a 500."""
    if isinstance(obj, float):
        return _finite(obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def answer_body(records: list[dict], kind: str, method: str, audio: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON answer for an Explainer's records: the web pages draw it (static/explain.js), the studio's
    "try it" answers with it too. ``audio``: the schema's audio format (the map's time axis)."""
    from danlu.explanations.api import public_row

    rows = []
    for rec in records:
        row = public_row(rec)
        if kind == "audio":
            row.update(audio_map(rec, audio or {}))
        elif kind == "image":
            from danlu.explanations.render import display_map, overlay_png

            png = overlay_png(rec["pixels"], display_map(rec["map"], method))
            row["heatmap_png"] = base64.b64encode(png).decode("ascii")
            row["map"] = pooled_map(rec["map"])
        rows.append(row)
    return _clean({"method": method, "explanations": rows})


def audio_map(rec: dict, audio: dict[str, Any]) -> dict[str, Any]:
    """``map`` ({shape, values [bands][windows], bands_hz, seconds}: the probability drop when each
    time-frequency cell is removed) and ``heatmap_png`` (log-mel above, the map below) for one clip."""
    from danlu.explanations.audio import figure_png, map_axes
    from danlu.explanations.records import caption

    rate, seconds = int(audio.get("sample_rate", 16000)), float(audio.get("seconds", 1.0))
    heat = rec["map"]
    values = [[_finite(float(f"{v:.4g}")) for v in row] for row in heat.tolist()]
    axes = map_axes(rate, int(audio.get("samples", round(rate * seconds))), *heat.shape)
    png = figure_png(rec["spectrogram"], heat, caption(rec), seconds, rate)
    return {"map": {"shape": list(heat.shape), "values": values, **axes},
            "heatmap_png": base64.b64encode(png).decode("ascii")}


class ExplainService:
    """Explainers per method for one served run, and the one lock they run under."""

    def __init__(self, engine: Any, data_dir: Path | None = None):
        self.engine, self.data_dir = engine, data_dir
        self.schema = engine.schema
        self._explainers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._train_x: Any = False  # not looked for yet

    def explainer(self, method: str) -> Any:
        from danlu.explanations.api import Explainer

        if method not in self._explainers:
            explainer = Explainer(self.engine.predictor, method)  # refuses a method that does not fit
            if self.schema.kind == "tabular" and (self.schema.categories or self.schema.table) and \
                    explainer.method not in ("saliency", "tree_shap"):
                # as danlu.explain does: category columns' baseline is their training frequency, when the
                # data is still there (read once, on the first request that needs it)
                from danlu.explanations.views import train_split_x

                with self._lock:
                    if self._train_x is False:
                        self._train_x = train_split_x(explainer, self.data_dir)
                if self._train_x is not None:
                    explainer.set_table_baseline(self._train_x)
            self._explainers[method] = explainer
        return self._explainers[method]

    def prepare(self, parse: Callable[[], tuple[Any, str, Any]]) -> tuple[Any, Any, str, Any]:
        """(request, model input, method, target): parsed and decoded, in the decode pool (images) or a
        worker thread, never on the event loop (a 9.8 MB body parsed there held /healthz ~1 s)."""
        req, method, target = parse()
        return req, self.engine.prepare(req.inputs, req.labels), method, target

    def answer(self, req: Any, method: str, target: Any, x: Any = None) -> dict[str, Any]:
        from danlu.explanations.fit import target_index

        explainer = self.explainer(method)
        t = target_index(target, self.schema)  # an unknown label lists the labels (422)
        if x is None:
            x = self.engine.prepare(req.inputs, req.labels)
        kind = self.schema.kind
        with self._lock:
            if kind == "image":
                records = explainer.images(x, req.labels, t, req.top_k)
            elif kind == "text":
                records = explainer.texts(x, req.labels, [s.strip() for s in req.inputs], t, req.top_k)
            elif kind == "audio":
                records = explainer.clips(x, req.labels, t, req.top_k)
            else:
                records = explainer.rows(x, req.labels, t, req.top_k)
        return answer_body(records, kind, explainer.method, self.schema.audio)


def add_explain_route(app: FastAPI, engine: Any, max_inputs: int, data_dir: Path | None,
                      respond: Callable[[Any], Any], media_type: Callable[[bytes], bytes],
                      read_form: Callable[..., Awaitable[tuple[list[tuple[str, bytes]], dict[str, str]]]],
                      decoder: Executor | None = None) -> None:
    """Register POST /v1/explain on a served run's app (the Gate in front checks host, key and body size).
    ``respond``, ``media_type`` and ``read_form`` (/v1/predict's multipart reader) are the app's own (passed
    in: this module is imported by danlu.serve.app); ``decoder`` is its image decode pool, where the
    request is parsed and decoded, within --decode-threads as /v1/predict's are."""

    service = ExplainService(engine, data_dir)
    limit = min(max_inputs, MAX_AUDIO_EXPLAIN_INPUTS if engine.schema.kind == "audio" else MAX_EXPLAIN_INPUTS)

    # response_model=None and no return annotation: the answer is built here, and a string annotation
    # (this module has postponed annotations) would break /openapi.json for the whole server
    @app.post("/v1/explain", openapi_extra=EXPLAIN_OPENAPI, responses=ERRORS, response_model=None,
              summary="Explain predictions: image heat maps, time-frequency maps of sound clips, token scores, "
                      "or feature attributions (JSON or multipart files)")
    async def explain(request: Request):
        kind = media_type(request.headers.get("content-type", "").encode("latin-1"))
        if kind == b"multipart/form-data":  # image files, as /v1/predict takes them, plus method and target
            files, fields = await read_form(request, limit, extra=("method", "target"))

            def parse() -> tuple[Any, str, Any]:
                req = parse_uploads(files, fields.get("top_k"), engine.schema.kind, limit)
                check_label_sizes(fields.get("method", "auto"), fields.get("target"))
                return req, fields.get("method", "auto"), fields.get("target")
        elif kind == b"application/json":
            parse = partial(parse_explain, await request.body(), engine.schema, limit)
        else:
            shown = kind.decode("latin-1")[:60] or "none"
            raise RequestError(f"the content type must be application/json or multipart/form-data, not {shown}",
                               'send {"inputs": [...]} with the header Content-Type: application/json '
                               "(images as base64 or data URLs), or image files in the form field 'files'",
                               status=415)
        if decoder is not None:
            req, x, method, target = await asyncio.get_running_loop().run_in_executor(decoder, service.prepare, parse)
        else:
            req, x, method, target = await run_in_threadpool(service.prepare, parse)
        return respond(await run_in_threadpool(service.answer, req, method, target, x))
