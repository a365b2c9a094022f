"""The HTTP server: ``create_app(run, ...)`` builds a FastAPI app around one run.

Routes: POST /v1/predict and /v1/explain, GET /v1/model (API key required on /v1 when one is set), GET /healthz,
GET /metrics (Prometheus), the web page at /, OpenAPI at /docs. Every error is JSON
``{"error": ..., "detail": ...}``; bad input is a 422 that names the input and what was wrong, never a 500.
The limits (``danlu.serve.limits``) are enforced in ``Gate`` (host, key, content type, body) and
``danlu.serve.decoding`` (images), and on the connection by ``danlu.serve.protocol``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, suppress
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
from danlu.serve.hosts import HostCheck
from danlu.serve.inputs import PredictRequest, RequestError, parse_json, parse_uploads
from danlu.serve.limits import BODY_TIMEOUT_S, DecodeLimits, check_body_timeout
from danlu.serve.metrics import Metrics, SharedMetrics
from danlu.serve.swagger import add_local_docs

STATIC = Path(__file__).parent / "static"
# The page uses only its own files: no inline script, no CDN; images are previewed from blob: URLs.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# Bodies up to this size are parsed on the event loop (less time than handing them to a thread and back);
# larger ones go to a thread.
INLINE_BODY = 16 * 1024
# Images whose decode is costed (from their headers) at no more than this per request are decoded on the
# event loop too: ~1 ms (1.3-4 ms per MiB of cost measured, 28 px PNG to 512 px JPEG), where the hop to the
# decode pool and back cost mnist-cnn 27 % of its requests/s at 32 clients (1,843 -> 1,333). Costlier ones
# go to the decode pool: a 38-byte image can declare seconds of decoding, and four of them once held
# /healthz for 4.5 s.
INLINE_DECODE = 256 * 1024
METRICS_FLUSH_S = 1.0  # how often a worker shares its metrics with the others (--workers N)
ROUTES = ("/", "/v1/predict", "/v1/explain", "/v1/model", "/v1/samples", "/healthz", "/metrics", "/docs",
          "/openapi.json")

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON; ASCII escapes when a string holds an unpaired surrogate (a request may send
    "\\udfff", which Python decodes but cannot encode as UTF-8), so echoing it back is never a 500."""
    try:
        return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


class SafeJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json_bytes(content)


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
    check_limits(max_batch_size, max_wait_ms, max_body_mb, max_inputs)
    check_body_timeout(body_timeout_s)
    decode = DecodeLimits(max_image_mb, max_request_image_mb, decode_threads)
    decode.check()
    engine = Engine.load(run, backend, runs_dir, data_dir)
    engine.decode_limits = decode
    _warm_up(engine)
    predictor = engine.predictor
    metrics = Metrics({"run": predictor.run_dir.name, "recipe": predictor.recipe.name, "backend": backend})
    batcher = MicroBatcher(engine.run_batch, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                           on_batch=metrics.observe_batch)
    shared = SharedMetrics(metrics, metrics_dir) if metrics_dir else None
    max_body = int(max_body_mb * 1024 * 1024)
    limits = dict(max_inputs=max_inputs, max_body_mb=max_body_mb, max_batch_size=max_batch_size,
                  max_wait_ms=max_wait_ms)
    if engine.kind == "image":
        limits.update(max_image_mb=decode.max_image_mb, max_request_image_mb=decode.max_request_image_mb)
    card = model_card(engine, limits, api_key is not None)
    decoder = ThreadPoolExecutor(decode.threads, thread_name_prefix="danlu-decode") if engine.kind == "image" else None

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

    app = GatedFastAPI(title=f"danlu · {predictor.recipe.name}", version=_version(), lifespan=lifespan,
                       docs_url=None,
                  default_response_class=SafeJSONResponse,
                  description=f"Predictions from the run {predictor.run_dir.name} ({card['task']}, {card['kind']}).")
    app.state.engine, app.state.batcher, app.state.metrics = engine, batcher, metrics
    _add_error_handlers(app)
    schema = engine.schema

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
            if size <= INLINE_BODY:
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
        """POST /v1/predict with a JSON body; Gate calls this directly (see ``Gate``), the route below too."""
        return await answer(partial(parse_json, body, schema, max_inputs), len(body))

    @app.post("/v1/predict", response_model=PredictResponse, openapi_extra=PREDICT_OPENAPI,
              responses=ERRORS, summary="Predict images, texts or feature rows (JSON or multipart files)")
    async def predict(request: Request) -> SafeJSONResponse:
        if media_type(request.headers.get("content-type", "").encode("latin-1")) == b"application/json":
            return SafeJSONResponse(await predict_json(await request.body()))  # Gate refused other types
        with arriving():
            files, fields = await read_form(request, max_inputs, max_body)
        parse = partial(parse_uploads, files, fields.get("top_k"), schema.kind, max_inputs)
        return SafeJSONResponse(await answer(parse, sum(len(d) for _, d in files)))

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

    add_local_docs(app)  # /docs from local files, not a CDN
    from danlu.serve.explain_route import add_explain_route

    add_explain_route(app, engine, max_inputs, data_dir, SafeJSONResponse, media_type,  # captum loads on first use
                      partial(read_form, max_body=max_body))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.gate = Gate(partial(FastAPI.__call__, app), metrics=metrics, max_body=max_body, predict_json=predict_json,
                    api_key=api_key, body_timeout=body_timeout_s, hosts=HostCheck(bind_host, allowed_hosts))
    return app


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


def check_api_key(api_key: str, x_api_key: str | None, authorization: str | None) -> None:
    """Accept ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``, compared in constant time; else a 401."""
    given = x_api_key or None  # an empty X-API-Key header does not hide a Bearer token
    if given is None:
        scheme, _, token = (authorization or "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    if given is None or not hmac.compare_digest(given.encode("latin-1", "replace"), api_key.encode()):
        raise RequestError("missing or wrong API key" if given is None else "wrong API key",
                           "send it as the header X-API-Key: KEY or Authorization: Bearer KEY", status=401)


def model_card(engine: Engine, limits: dict[str, Any], key_required: bool) -> dict[str, Any]:
    """What /v1/model and the web page show: task, classes, the input contract, the test metrics."""
    p, schema = engine.predictor, engine.schema
    report_path = p.run_dir / "report.json"
    report = read_json(report_path) if report_path.is_file() else {}
    if schema.kind == "image":
        spec: dict[str, Any] = {"shape": schema.input_shape, "accepts": "base64 images or data URLs in 'inputs', "
                                                                        "or image files in the multipart field 'files'"}
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
    elif engine.kind == "tabular":
        engine.run_batch([torch.zeros(1, *engine.schema.input_shape)])


def _version() -> str:
    from danlu import __version__

    return __version__


def _error(status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> SafeJSONResponse:
    return SafeJSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def error_answer(e: Exception) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """(status, {"error", "detail"}, extra headers) for an exception from answering a prediction."""
    if isinstance(e, RequestError):
        auth = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return e.status, {"error": e.error, "detail": e.detail}, auth
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


class GatedFastAPI(FastAPI):
    """FastAPI with ``Gate`` in front of its whole middleware stack rather than inside it: a JSON prediction
    is answered before Starlette's error, telemetry and body-limit layers, which took ~14 % of the event
    loop's time per request at 32 clients (py-spy, mnist-cnn). What reaches the routes is as before."""

    gate: Gate | None = None

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        await (self.gate or super().__call__)(scope, receive, send)


class Gate:
    """Pure ASGI middleware: what is checked before a route runs, request metrics, and the JSON
    predictions' fast lane.

    In this order, from the headers alone: the Host allow-list (421: DNS rebinding), the API key on /v1
    routes (401: an unauthenticated client never makes the server read its body), the content type of
    POST /v1/predict (415 unless application/json or multipart/form-data: a web page can send text/plain
    cross-origin without asking, but not application/json). Then the body is read, up to the limit (413,
    declared or actual; the rest of the stream is never read) and within ``body_timeout`` seconds in all
    (408: trickling a byte at a time does not push the deadline back). A JSON POST /v1/predict is answered
    here without FastAPI's routing, dependency and exception layers, which cost about a third of the event
    loop's time per request under load (py-spy, mnist-cnn at 32 clients); errors get the same JSON bodies
    and status codes as the route's handlers give.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body: int,
                 predict_json: Callable[[bytes], Awaitable[dict[str, Any]]] | None = None,
                 api_key: str | None = None, body_timeout: float = BODY_TIMEOUT_S, hosts: HostCheck | None = None):
        self.app, self.metrics, self.max_body = app, metrics, max_body
        self.predict_json, self.api_key, self.body_timeout = predict_json, api_key, body_timeout
        self.hosts = hosts or HostCheck()

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_and_watch(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight += 1
        headers = dict(scope["headers"])  # names are lower case; of a repeated header the last one counts
        try:
            refusal = self._refuse(scope, headers)
            if refusal is not None:
                await _send_json(send_and_watch, *refusal)
                return
            body, state = await self._read_body(headers, receive)
            if state == "too large":
                await _send_json(send_and_watch, 413, {
                    "error": f"the request body is larger than {_size(self.max_body)}",
                    "detail": "send fewer or smaller inputs per request (the server's limit is --max-body-mb)"})
                return
            if state == "stalled":
                await _send_json(send_and_watch, 408, {
                    "error": f"the request body did not arrive within {self.body_timeout:g} s",
                    "detail": "send the whole body at once (the server's limit is --body-timeout)"})
                return
            if state == "gone":  # the client hung up before its request was complete: nobody to answer
                status = 499
                return
            if self.predict_json is not None and scope["path"] == "/v1/predict" and scope["method"] == "POST" \
                    and media_type(headers.get(b"content-type")) == b"application/json":
                await _send_json(send_and_watch, *await self._predict(body), close=False)
                return
            await self.app(scope, _replay(body, receive), send_and_watch)
        finally:
            self.metrics.in_flight -= 1
            route = getattr(scope.get("route"), "path", None) or scope["path"]
            route = route if route in ROUTES else "/static" if route.startswith("/static/") else "other"
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - t0)

    def _refuse(self, scope: dict, headers: dict[bytes, bytes]) -> tuple[int, dict[str, Any], dict | None] | None:
        """(status, payload, extra headers) when the request's headers alone say no; None otherwise."""
        host = headers.get(b"host")
        if not self.hosts.allows(host):
            shown = (host or b"").decode("latin-1")[:100]
            return 421, {"error": f"this server does not answer for the host '{shown}'",
                         "detail": f"use one of {', '.join(self.hosts.allowed)}, or start the server with "
                                   f"--allowed-hosts {_strip(shown) or 'NAME'}"}, None
        path = scope["path"]
        if self.api_key and path.startswith("/v1/"):
            try:
                check_api_key(self.api_key, _text(headers.get(b"x-api-key")), _text(headers.get(b"authorization")))
            except RequestError as e:
                return error_answer(e)
        if path == "/v1/predict" and scope["method"] == "POST":
            kind = media_type(headers.get(b"content-type"))
            if kind not in (b"application/json", b"multipart/form-data"):
                shown = kind.decode("latin-1")[:60] or "none"
                return 415, {"error": f"the content type must be application/json or multipart/form-data, "
                                      f"not {shown}",
                             "detail": "send the header Content-Type: application/json "
                                       "(curl: -H 'content-type: application/json')"}, None
        return None

    async def _predict(self, body: bytes) -> tuple[int, dict[str, Any], dict[str, str] | None]:
        """(status, JSON payload, extra headers), as the route and its exception handlers would answer."""
        try:
            return 200, await self.predict_json(body), None
        except Exception as e:
            answer = error_answer(e)
            if answer[0] == 500:  # a bug: the operator needs the traceback, the client gets JSON
                logging.getLogger("danlu.serve").exception("POST /v1/predict failed")
            return answer

    async def _read_body(self, headers: dict[bytes, bytes],
                         receive: Callable[[], Awaitable[dict]]) -> tuple[bytes, str]:
        """(body, state): "ok", "too large" (declared or actual), "stalled" (not all there within
        body_timeout seconds: a stalled or trickling client would otherwise hold its connection, and a
        graceful shutdown, forever) or "gone" (the client disconnected)."""
        declared = headers.get(b"content-length")
        if declared is not None:
            with suppress(ValueError):
                if int(declared) > self.max_body:
                    return b"", "too large"
        chunks, total = [], 0
        try:
            async with asyncio.timeout(self.body_timeout):  # one deadline for the whole body
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return b"", "gone"
                    chunk = message.get("body", b"")
                    total += len(chunk)
                    if total > self.max_body:
                        return b"", "too large"
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks), "ok"
        except TimeoutError:
            return b"", "stalled"


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def _strip(host: str) -> str:
    """A Host header's name without its port, as --allowed-hosts takes it."""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def media_type(content_type: bytes | None) -> bytes:
    """b"application/json" from b"Application/JSON; charset=utf-8"; b"" when there is none."""
    return (content_type or b"").split(b";", 1)[0].strip().lower()


def _replay(body: bytes, receive: Callable[[], Awaitable[dict]]) -> Callable[[], Awaitable[dict]]:
    """A receive() that hands the app the buffered body once, then passes through (for http.disconnect)."""
    sent = False

    async def replayed() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB" if n >= 1024 * 1024 else f"{n / 1024:.4g} KiB" if n >= 1024 else f"{n} bytes"


async def _send_json(send: Callable[[dict], Awaitable[None]], status: int, payload: dict,
                     headers: dict[str, str] | None = None, close: bool = True) -> None:
    """A JSON response as JSONResponse renders it; ``close`` when the request body was left unread."""
    data = json_bytes(payload)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})

