"""The HTTP server: ``create_app(run, ...)`` builds a FastAPI app around one run.

Routes: POST /v1/predict and /v1/explain, GET /v1/model (API key required on /v1 when one is set), GET /healthz,
GET /metrics (Prometheus), the web page at /, OpenAPI at /docs. Every error is JSON
``{"error": ..., "detail": ...}``; bad input is a 422 that names the input and what was wrong, never a 500.
The limits (``danlu.serve.limits``) are enforced in ``danlu.serve.gate.Gate`` (host, key, content type,
body; shared with the studio) and ``danlu.serve.decoding`` (images), and on the connection by
``danlu.serve.protocol``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from danlu.errors import DanluError
from danlu.runs.files import read_json
from danlu.serve.batching import BatcherClosed, MicroBatcher
from danlu.serve.docs import ERRORS, PREDICT_OPENAPI, PredictResponse
from danlu.serve.engine import Engine
from danlu.serve.gate import (
    JSON_OR_FORM,
    PAGE_HEADERS,
    STATIC,
    GatedFastAPI,
    check_api_key,
    json_bytes,
    media_type,
    refusal_of,
)
from danlu.serve.hosts import HostCheck
from danlu.serve.inputs import PredictRequest, RequestError, parse_json, parse_uploads
from danlu.serve.limits import BODY_TIMEOUT_S, DecodeLimits, check_body_timeout
from danlu.serve.metrics import Metrics, SharedMetrics
from danlu.serve.swagger import add_local_docs

__all__ = ["PAGE_HEADERS", "STATIC", "check_api_key", "create_app", "json_bytes", "media_type"]

# Bodies up to this size are parsed on the event loop (less time than handing them to a thread and back);
# larger ones go to a thread.
INLINE_BODY = 16 * 1024
# Images whose decode is costed (from their headers) at no more than this per request are decoded on the
# event loop too: ~1 ms (1.3-4 ms per MiB of cost measured, 28 px PNG to 512 px JPEG), where the hop to the
# decode pool and back cost mnist-cnn 27 % of its requests/s at 32 clients (1,843 -> 1,333). Costlier ones
# go to the decode pool: a 38-byte image can declare seconds of decoding, and four of them once held
# /healthz for 4.5 s.
INLINE_DECODE = 256 * 1024
# Sound bodies up to this size (base64 JSON; ~2 s of 16 kHz 16-bit WAV) are parsed on the event loop too, and
# decoded there when every clip is a plain PCM16 WAV at the run's rate (tens of µs); anything needing
# libsndfile or soxr (~0.5 ms and more) goes to the decode pool. One-second clips, 32 clients: the server's
# CPU per request fell 7-11 % against the hop to the pool and back (three interleaved rounds, loaded VM).
INLINE_AUDIO_BODY = 96 * 1024
METRICS_FLUSH_S = 1.0  # how often a worker shares its metrics with the others (--workers N)
ROUTES = ("/", "/v1/predict", "/v1/explain", "/v1/model", "/v1/samples", "/healthz", "/metrics", "/docs",
          "/openapi.json")


class SafeJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json_bytes(content)


@dataclass
class Served:
    """What one app serves: the engine and its batcher, metrics and decode pool, and the request limits."""

    engine: Engine
    batcher: MicroBatcher
    metrics: Metrics
    shared: SharedMetrics | None
    decoder: ThreadPoolExecutor | None
    max_body: int
    max_inputs: int
    card: dict[str, Any]


def create_app(run: str | Path, backend: str = "torch", max_batch_size: int = 64, max_wait_ms: float = 5,
               max_body_mb: float = 10, max_inputs: int = 64, api_key: str | None = None, *,
               runs_dir: Path | None = None, data_dir: Path | None = None, body_timeout_s: float = BODY_TIMEOUT_S,
               max_image_mb: float = DecodeLimits.max_image_mb,
               max_request_image_mb: float = DecodeLimits.max_request_image_mb, decode_threads: int = 0,
               bind_host: str = "127.0.0.1", allowed_hosts: Sequence[str] = (),
               metrics_dir: str | None = None) -> FastAPI:
    """Load the run (exporting ONNX first for backend="onnx" when needed) and build the app.

    ``bind_host`` and ``allowed_hosts`` make the Host allow-list (``danlu.serve.hosts``; "*" turns it
    off); ``metrics_dir`` is the folder the workers of one server share their metrics in.
    """
    api_key = api_key or None  # an empty key (e.g. DANLU_API_KEY="") means no key
    from danlu.recommend import is_recommendation_run
    from danlu.runs.store import resolve_run

    try:
        found = resolve_run(run, runs_dir)
    except DanluError:  # Engine.load below says what is wrong with it
        found = None
    if found is not None and is_recommendation_run(found):  # POST /v1/recommend (danlu/serve/recommend.py)
        from danlu.serve.recommend import create_recommend_app

        check_limits(max_batch_size, max_wait_ms, max_body_mb, max_inputs)
        check_body_timeout(body_timeout_s)
        return create_recommend_app(found, api_key, max_body_mb, max_batch_size, max_wait_ms,
                                    body_timeout_s=body_timeout_s, hosts=HostCheck(bind_host, allowed_hosts))
    check_limits(max_batch_size, max_wait_ms, max_body_mb, max_inputs)
    check_body_timeout(body_timeout_s)
    decode = DecodeLimits(max_image_mb, max_request_image_mb, decode_threads)
    decode.check()
    served = _load(run, backend, runs_dir, data_dir, decode, max_batch_size, max_wait_ms, max_body_mb, max_inputs,
                   api_key is not None, metrics_dir)
    app = _new_app(served)
    predict_json = _add_predict_routes(app, served)
    _add_info_routes(app, served)
    add_local_docs(app)  # /docs from local files, not a CDN
    from danlu.serve.explain_route import add_explain_route

    add_explain_route(app, served.engine, max_inputs, data_dir, SafeJSONResponse, media_type,  # captum: first use
                      partial(read_form, max_body=served.max_body), served.decoder)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.set_gate(max_body=served.max_body, api_key=api_key, key_prefix="/v1/", body_timeout=body_timeout_s,
                 hosts=HostCheck(bind_host, allowed_hosts), metrics=served.metrics, routes=ROUTES,
                 content_types=lambda path: JSON_OR_FORM if path in ("/v1/predict", "/v1/explain") else None,
                 fast_lane=partial(_fast_predict, predict_json))
    return app


def _load(run: str | Path, backend: str, runs_dir: Path | None, data_dir: Path | None, decode: DecodeLimits,
          max_batch_size: int, max_wait_ms: float, max_body_mb: float, max_inputs: int, key_required: bool,
          metrics_dir: str | None) -> Served:
    """The run loaded and warmed up, with its batcher, metrics, decode pool and model card."""
    engine = Engine.load(run, backend, runs_dir, data_dir)
    engine.decode_limits = decode
    _warm_up(engine)
    predictor = engine.predictor
    metrics = Metrics({"run": predictor.run_dir.name, "recipe": predictor.recipe.name, "backend": backend})
    batcher = MicroBatcher(engine.run_batch, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                           on_batch=metrics.observe_batch)
    shared = SharedMetrics(metrics, metrics_dir) if metrics_dir else None
    limits = dict(max_inputs=max_inputs, max_body_mb=max_body_mb, max_batch_size=max_batch_size,
                  max_wait_ms=max_wait_ms)
    if engine.kind == "image":
        limits.update(max_image_mb=decode.max_image_mb, max_request_image_mb=decode.max_request_image_mb)
    # images and sound are decoded in a bounded pool (min(4, cores) threads), never on the event loop, and not
    # in the 40 threads of the default pool, which 32 clients' decodes filled, all contending for the GIL
    decoder = ThreadPoolExecutor(decode.threads, thread_name_prefix="danlu-decode") \
        if engine.kind in ("image", "audio") else None
    return Served(engine, batcher, metrics, shared, decoder, int(max_body_mb * 1024 * 1024), max_inputs,
                  model_card(engine, limits, key_required))


def _new_app(served: Served) -> GatedFastAPI:
    """The app with its lifespan (batcher, metrics sharing, decode pool) and error handlers."""
    batcher, shared, decoder = served.batcher, served.shared, served.decoder

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        sharing = asyncio.create_task(_share_metrics(shared)) if shared else None
        try:
            yield
        finally:  # uvicorn has let in-flight requests finish; answer whatever is still queued, then stop
            await batcher.close()
            if decoder is not None:
                decoder.shutdown(wait=False, cancel_futures=True)
            if sharing is not None:
                sharing.cancel()
                with suppress(asyncio.CancelledError):
                    await sharing
                shared.flush()

    card, predictor = served.card, served.engine.predictor
    app = GatedFastAPI(title=f"danlu · {predictor.recipe.name}", version=_version(), lifespan=lifespan,
                       docs_url=None, default_response_class=SafeJSONResponse,
                       description=f"Predictions from the run {predictor.run_dir.name} ({card['task']}, "
                                   f"{card['kind']}).")
    app.state.engine, app.state.batcher, app.state.metrics = served.engine, batcher, served.metrics
    _add_error_handlers(app)
    return app


def _add_predict_routes(app: FastAPI, served: Served) -> Callable[[bytes], Any]:
    """POST /v1/predict (JSON or multipart); returns the JSON answerer the gate's fast lane calls."""
    engine, batcher, decoder, schema = served.engine, served.batcher, served.decoder, served.engine.schema
    max_inputs, max_body = served.max_inputs, served.max_body

    @contextmanager
    def arriving() -> Iterator[None]:
        """Count a request as being read and parsed: the batcher waits for company only while some are."""
        batcher.arriving += 1
        try:
            yield
        finally:
            batcher.arriving -= 1

    async def answer(parse: Callable[[], PredictRequest], size: int) -> dict[str, Any]:
        """Parse and check one request (big ones off the event loop), batch it, format its rows."""
        with arriving():
            if engine.kind == "audio" and size <= INLINE_AUDIO_BODY:
                req = parse()  # a few seconds of base64 WAV: ~0.2 ms per second of 16 kHz sound
                if engine.plain_audio(req.inputs):  # PCM16 WAV at the run's rate: no libsndfile, no resampling
                    x = engine.prepare(req.inputs, req.labels)
                else:
                    x = await asyncio.get_running_loop().run_in_executor(
                        decoder, engine.prepare, req.inputs, req.labels)
            elif size <= INLINE_BODY and engine.kind != "audio":
                req = parse()
                checked = engine.check(req.inputs, req.labels)
                if checked is None or checked.cost <= INLINE_DECODE:
                    x = engine.prepare(req.inputs, req.labels, checked)
                else:  # opened and decoded again in the pool, all in one thread (see CheckedImages.close)
                    checked.close()
                    x = await asyncio.get_running_loop().run_in_executor(
                        decoder, engine.prepare, req.inputs, req.labels)
            elif decoder is not None:
                x, req = await asyncio.get_running_loop().run_in_executor(decoder, _prepare, engine, parse)
            else:
                x, req = await run_in_threadpool(_prepare, engine, parse)
        outputs = await batcher.submit(x, len(x))
        return {"predictions": engine.format(outputs, req.labels, req.top_k)}

    async def predict_json(body: bytes) -> dict[str, Any]:
        """POST /v1/predict with a JSON body; the gate's fast lane calls this directly, the route below too."""
        return await answer(partial(parse_json, body, schema, max_inputs), len(body))

    @app.post("/v1/predict", response_model=PredictResponse, openapi_extra=PREDICT_OPENAPI,
              responses=ERRORS, summary="Predict images, texts or feature rows (JSON or multipart files)")
    async def predict(request: Request) -> SafeJSONResponse:
        if media_type(request.headers.get("content-type", "").encode("latin-1")) == b"application/json":
            return SafeJSONResponse(await predict_json(await request.body()))  # the gate refused other types
        with arriving():
            files, fields = await read_form(request, max_inputs, max_body)
        parse = partial(parse_uploads, files, fields.get("top_k"), schema.kind, max_inputs)
        return SafeJSONResponse(await answer(parse, sum(len(d) for _, d in files)))

    return predict_json


def _add_info_routes(app: FastAPI, served: Served) -> None:
    """GET /v1/model, /v1/samples, /healthz, /metrics and the page."""
    card, batcher, shared, metrics = served.card, served.batcher, served.shared, served.metrics
    predictor, schema, backend = served.engine.predictor, served.engine.schema, served.engine.backend

    @app.get("/v1/model", responses={401: ERRORS[401]},
             summary="The model card: task, classes, input spec, test metrics")
    async def model() -> dict[str, Any]:
        return card

    @app.get("/v1/samples", responses={401: ERRORS[401]},
             summary="A few test-set inputs, ready to send to /v1/predict (the page's one-click samples)")
    async def samples() -> dict[str, Any]:
        from danlu.serve.samples import test_samples

        return {"samples": await run_in_threadpool(test_samples, predictor.run_dir, schema)}

    @app.head("/healthz", include_in_schema=False)  # curl -I and load balancers' HEAD checks
    @app.get("/healthz", summary="Liveness: 200 while serving, 503 while shutting down")
    async def healthz() -> SafeJSONResponse:
        if not batcher.running:
            return SafeJSONResponse({"status": "shutting down"}, status_code=503)
        return SafeJSONResponse({"status": "ok", "backend": backend, "queued_inputs": batcher.queued})

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def prometheus() -> PlainTextResponse:
        text = shared.render() if shared else metrics.render()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def _fast_predict(predict_json: Callable[[bytes], Any], body: bytes
                        ) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """(status, JSON payload, extra headers), as the route and its exception handlers would answer."""
    try:
        return 200, await predict_json(body), None
    except Exception as e:
        answer = error_answer(e)
        if answer[0] == 500:  # a bug: the operator needs the traceback, the client gets JSON
            logging.getLogger("danlu.serve").exception("POST /v1/predict failed")
        return answer

async def _share_metrics(shared: SharedMetrics) -> None:
    while True:
        await asyncio.sleep(METRICS_FLUSH_S)
        try:
            shared.flush()
        except OSError as e:  # the folder went away (tmp cleaner): say so once a second, keep serving
            logging.getLogger("danlu.serve").warning("cannot share metrics in %s: %s", shared.folder, e)


def settle_process() -> None:
    """Tune a serving process for tail latency, once the app is built (the CLI server calls this).

    - ``gc.freeze()``: torch, FastAPI and the model leave ~200k long-lived objects, and each full
      collection walked them all: 105-118 ms with every request waiting, twice in a 7 s load test, which
      was the whole p99 (170 ms; 82-102 ms after, mnist-cnn at 32 clients).
    - a 0.5 ms GIL switch interval instead of 5 ms: the model thread needs the GIL between torch ops, and
      the event loop held it for up to 5 ms each time it was busy parsing requests.
    """
    import gc

    gc.collect()
    gc.freeze()
    sys.setswitchinterval(0.0005)


def check_limits(max_batch_size: int, max_wait_ms: float, max_body_mb: float, max_inputs: int) -> None:
    if max_batch_size < 1 or max_inputs < 1:
        raise DanluError("--max-batch-size and --max-inputs must be at least 1")
    if not (math.isfinite(max_wait_ms) and math.isfinite(max_body_mb)) or max_wait_ms < 0 or max_body_mb <= 0:
        raise DanluError("--max-wait-ms must be a number >= 0 and --max-body-mb a number more than 0")


def _prepare(engine: Engine, parse: Callable[[], PredictRequest]) -> tuple[Any, PredictRequest]:
    """Parse and preprocess one request: bad input fails here, alone, before it joins a batch."""
    req = parse()
    return engine.prepare(req.inputs, req.labels), req


async def read_form(request: Request, max_inputs: int, max_body: int, extra: tuple[str, ...] = ()
                    ) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """(files of the field 'files', the text fields: top_k and those in ``extra``) of a multipart upload;
    /v1/explain reads its form here too, with method and target as extra fields."""
    try:
        form = await request.form(max_files=max_inputs, max_fields=8, max_part_size=max_body)
    except HTTPException as e:
        raise RequestError("the multipart form could not be read", e.detail) from None
    try:
        files, fields = [], {}
        for key, value in form.multi_items():
            if key == "files" and isinstance(value, UploadFile):
                files.append((value.filename or "", await value.read()))
            elif key in ("top_k", *extra) and isinstance(value, str):
                fields[key] = value
            elif key == "files":
                raise RequestError("the field 'files' holds text, not a file",
                                   "upload the image file itself, e.g. curl -F files=@photo.jpg (note the @)")
            else:
                raise RequestError(f"unexpected form field '{key}'", "upload images in the field 'files' (repeat it "
                                   f"for several); optional: {', '.join(('top_k', *extra))}")
        return files, fields
    finally:
        await form.close()


def model_card(engine: Engine, limits: dict[str, Any], key_required: bool) -> dict[str, Any]:
    """What /v1/model and the web page show: task, classes, the input contract, the test metrics."""
    p, schema = engine.predictor, engine.schema
    report_path = p.run_dir / "report.json"
    report = read_json(report_path) if report_path.is_file() else {}
    if schema.kind == "image":
        spec: dict[str, Any] = {"shape": schema.input_shape, "accepts": "base64 images or data URLs in 'inputs', "
                                                                        "or image files in the multipart field 'files'"}
    elif schema.kind == "audio":
        spec = {"audio": schema.audio, "accepts": "WAV, FLAC, OGG or MP3 files in the multipart field 'files', "
                                                  "or base64 of them in 'inputs'; mixed to mono, resampled, "
                                                  "fit to audio.seconds"}
    elif schema.kind == "tabular":
        spec = {"features": schema.features, "categories": schema.categories, "defaults": _feature_means(schema),
                "accepts": "rows as lists in the order of 'features', or objects keyed by feature name; "
                           "null (or a missing value) means the training average"}
    else:
        spec = {"max_length": schema.input_shape[0] if schema.input_shape else None, "accepts": "non-empty strings"}
    return {"run": p.run_dir.name, "recipe": p.recipe.name, "description": p.recipe.description,
            "model": p.recipe.model.name, "task": schema.task, "kind": schema.kind, "classes": schema.classes,
            "targets": schema.targets, "source": schema.source, "input": spec, "metrics": report.get("metrics", {}),
            "test_samples": report.get("samples"), "backend": engine.backend, "limits": limits,
            "api_key_required": key_required}


def _feature_means(schema: Any) -> dict[str, float]:
    """Training mean of each numeric feature (in its own units), as placeholders for the web form."""
    out, j = {}, 0
    for name in schema.features or []:
        width = len(schema.categories.get(name, ())) or 1
        if name not in schema.categories and schema.mean and j < len(schema.mean):
            out[name] = round(float(schema.mean[j]), 4)
        j += width
    return out


def _warm_up(engine: Engine) -> None:
    """One forward pass at start-up, so the first request does not pay for lazy initialization."""
    import torch

    if engine.kind == "image":
        engine.run_batch([torch.zeros(1, *engine.schema.input_shape, dtype=torch.uint8)])
    elif engine.kind in ("tabular", "audio"):
        engine.run_batch([torch.zeros(1, *engine.schema.input_shape)])


def _version() -> str:
    from danlu import __version__

    return __version__


def _error(status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> SafeJSONResponse:
    return SafeJSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def error_answer(e: Exception) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """(status, {"error", "detail"}, extra headers) for an exception from answering a prediction."""
    if isinstance(e, RequestError):
        return refusal_of(e)
    if isinstance(e, BatcherClosed):
        return 503, {"error": "the server is shutting down", "detail": "retry against another instance"}, None
    if isinstance(e, DanluError):  # DataError from preprocessing
        return 422, {"error": e.message, "detail": e.hint}, None
    return 500, {"error": "internal error", "detail": type(e).__name__}, None


def _add_error_handlers(app: FastAPI) -> None:
    async def known(request: Request, e: Exception) -> SafeJSONResponse:
        status, payload, headers = error_answer(e)
        return SafeJSONResponse(payload, status_code=status, headers=headers)

    async def validation_error(request: Request, e: RequestValidationError) -> SafeJSONResponse:
        return _error(422, "the request does not match the API", e.errors())

    async def http_error(request: Request, e: HTTPException) -> SafeJSONResponse:
        text = e.detail if isinstance(e.detail, str) else "request failed"
        return _error(e.status_code, f"{text}: {request.url.path}" if e.status_code == 404 else text,
                      None, dict(e.headers) if e.headers else None)

    for error in (RequestError, DanluError, BatcherClosed, Exception):
        app.add_exception_handler(error, known)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
