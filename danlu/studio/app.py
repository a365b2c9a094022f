"""The studio's HTTP app: ``create_studio_app(runs_dir)``, a FastAPI app on the same stack as ``danlu serve``.

Pages are one static page (static/), data is JSON under /api, figures are the run folders' own PNGs.
Everything is read from the run folders at request time (``RunsIndex``), so a run that is training shows
its new epochs on the next poll, and a damaged folder is one row marked damaged. With an API key, every
/api route asks for it (X-API-Key or Bearer), the page asks the user once per tab.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from danlu.errors import DanluError
from danlu.serve.gate import JSON_ONLY, PAGE_HEADERS, GatedFastAPI
from danlu.serve.limits import BODY_TIMEOUT_S, DecodeLimits
from danlu.serve.refusal import RequestError
from danlu.studio.explaining import MAX_AUDIO_EXPLAIN_INPUTS, MAX_EXPLAIN_INPUTS, Explainers, explain_body_model
from danlu.studio.folders import HISTORY_PAGE, RunsIndex

STATIC = Path(__file__).parent / "static"
FILE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
MAX_LOADED = 2  # predictors kept in memory for "try it" (each holds a model)
MAX_INPUTS = 16
MAX_BODY_MB = 10.0
MAX_COMPARED = 16  # runs in one comparison


class TryBody(BaseModel):
    inputs: list[str | list[float | str | None] | dict[str, float | str | None]] = Field(
        description="data URLs or base64 images (image runs) or audio clips (audio runs), texts (text runs), or "
                    "feature rows (tabular runs)")
    top_k: int = Field(3, ge=1, le=50)


ExplainTryBody = explain_body_model(TryBody)


class Predictors:
    """The last few runs' Predictors, loaded on first use (a model load takes ~0.1-1 s)."""

    def __init__(self, index: RunsIndex):
        self.index, self._loaded, self._lock = index, OrderedDict(), threading.Lock()

    def get(self, name: str) -> Any:
        with self._lock:
            path = self.index.path_of(name)
            stamp = (path / "model.safetensors").stat().st_mtime_ns if (path / "model.safetensors").exists() else 0
            hit = self._loaded.get(name)
            if hit is not None and hit[0] == stamp:
                self._loaded.move_to_end(name)
                return hit[1]
            from danlu.predictor import Predictor

            predictor = Predictor.load(path)
            self._loaded[name] = (stamp, predictor)
            while len(self._loaded) > MAX_LOADED:
                self._loaded.popitem(last=False)
            return predictor


def _decode_base64(item: Any, i: int, kind: str = "image") -> bytes:
    """A data URL's or base64 string's bytes; never a path (a string is not read from the server's disk)."""
    if not isinstance(item, str):
        raise DanluError(f"input {i} is not an {kind}", hint=f"send {kind}s as data URLs or base64 strings")
    data = item.split(",", 1)[1] if item.startswith("data:") else item
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        mime = "audio/wav" if kind == "audio clip" else "image/png"
        raise DanluError(f"input {i} is not valid base64", hint=f"send a data URL: data:{mime};base64,...") from None


def _audio_clips(items: list[Any]) -> list[bytes]:
    """Audio uploads as bytes, each header read first: a clip over serve's length bound is refused before
    it is decoded."""
    from danlu.data.audio import clip_header
    from danlu.serve.engine import SERVE_MAX_AUDIO_SECONDS

    clips = [_decode_base64(x, i, "audio clip") for i, x in enumerate(items)]
    for i, clip in enumerate(clips):
        try:
            rate, frames, _ = clip_header(clip)
        except DanluError as e:
            raise DanluError(f"input {i}: {e.message}", hint=e.hint) from None
        if rate <= 0 or frames > SERVE_MAX_AUDIO_SECONDS * rate:
            raise DanluError(f"input {i}: the clip's header claims {frames} samples at {rate} Hz; at most "
                             f"{SERVE_MAX_AUDIO_SECONDS:g} s are taken here", hint="send a shorter clip")
    return clips


def create_studio_app(runs_dir: str | Path, api_key: str | None = None, *, bind_host: str = "127.0.0.1",
                      allowed_hosts: Sequence[str] = (), max_body_mb: float = MAX_BODY_MB,
                      body_timeout_s: float = BODY_TIMEOUT_S, decode: DecodeLimits | None = None) -> FastAPI:
    """The studio over ``runs_dir``, behind serve's request gate (``danlu.serve.gate``) with serve's
    decode limits on its "try it" routes; run it with ``danlu.serve.server.uvicorn_config`` for serve's
    connection limits too (``danlu studio`` does)."""
    from danlu.serve.hosts import HostCheck
    from danlu.serve.limits import check_body_timeout
    from danlu.serve.swagger import add_local_docs

    check_body_timeout(body_timeout_s)
    decode = decode or DecodeLimits()
    decode.check()
    index = RunsIndex(Path(runs_dir))
    app = _new_app(index, api_key is not None)
    _add_run_routes(app, index)
    _add_try_routes(app, index, decode)
    add_local_docs(app)
    _add_page(app)
    app.set_gate(max_body=int(max_body_mb * 1024 * 1024), api_key=api_key, key_prefix="/api/",
                 body_timeout=body_timeout_s, hosts=HostCheck(bind_host, allowed_hosts),
                 content_types=lambda path: JSON_ONLY if path.startswith("/api/") else None,
                 body_hint=f"send fewer or smaller inputs (the studio takes at most {max_body_mb:g} MiB)")
    return app


def _new_app(index: RunsIndex, key_required: bool) -> GatedFastAPI:
    """The app and its error handlers: every error is {"error", "detail"} JSON, a missing run a 404."""
    app = GatedFastAPI(title="danlu studio", docs_url=None, redoc_url=None,
                       description=f"Runs, curves, comparisons and studies of {index.root.resolve()}")
    app.state.index, app.state.key_required = index, key_required

    @app.exception_handler(DanluError)
    async def _danlu_error(request: Request, e: DanluError) -> JSONResponse:
        status = 404 if e.message.startswith("no ") else 422
        return JSONResponse({"error": e.message, "detail": e.hint}, status_code=status)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, e: RequestError) -> JSONResponse:
        return JSONResponse({"error": e.error, "detail": e.detail}, status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail), "detail": None}, status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}", "detail": None},
                            status_code=422)

    return app


def _add_run_routes(app: FastAPI, index: RunsIndex) -> None:
    """The read-only routes: info, the list, one run, its metrics (paged), figures, compare, studies."""

    @app.get("/api/info", summary="The studio's runs folder, and whether a key is needed")
    async def info() -> dict[str, Any]:
        return {"runs_dir": str(index.root.resolve()), "key_required": app.state.key_required}

    @app.get("/api/runs", summary="Every run: status, recipe, key test metrics, duration; damaged ones marked")
    def runs() -> dict[str, Any]:
        return {"runs": index.list(), "studies": index.studies()}

    @app.get("/api/runs/{name}", summary="One run: resolved recipe, report, per-epoch metrics, figures")
    def run(name: str) -> dict[str, Any]:
        return index.detail(name)

    @app.get("/api/runs/{name}/metrics",
             summary=f"Per-epoch rows after the first `after`, at most {HISTORY_PAGE} (live curves poll this)")
    def metrics(name: str, after: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        path = index.path_of(name)
        summary = index.summary(path)
        rows, more = index.history(path, after)
        return {"status": summary["status"], "epoch": summary.get("epoch"), "epochs": summary.get("epochs"),
                "rows": rows, "more": more}

    @app.get("/api/runs/{name}/figures/{figure}.png", response_class=Response, summary="A figure of a run")
    def figure(name: str, figure: str) -> Response:
        return Response(index.figure(name, figure), media_type="image/png", headers=FILE_HEADERS)

    @app.get("/api/compare", summary="Test-metric deltas against the first run, the recipe diff, the histories")
    def compare_runs(runs: Annotated[list[str], Query(min_length=2, max_length=MAX_COMPARED)]) -> dict[str, Any]:
        from danlu.runs.compare import compare

        paths = [index.path_of(r) for r in runs]
        out = compare(paths)
        out["histories"] = {p.name: index.history(p)[0] for p in paths}
        return out

    @app.get("/api/studies/{name}", summary="A tuning study: trials, best trial, best recipe, plot names")
    def study(name: str) -> dict[str, Any]:
        return index.study(name)

    @app.get("/api/studies/{name}/plots/{plot}.png", response_class=Response, summary="A study's figure")
    def study_plot(name: str, plot: str) -> Response:
        return Response(index.study_plot(name, plot), media_type="image/png", headers=FILE_HEADERS)


def _add_try_routes(app: FastAPI, index: RunsIndex, decode: DecodeLimits) -> None:
    """"Try it": samples, predict and explain on a finished run. Images are costed from their headers and
    decoded in a pool of ``decode.threads`` threads, as ``danlu serve`` does: a 773 KB float TIFF of 9000²
    pixels once took 5 s and +2.2 GB here."""
    predictors, explainers = Predictors(index), Explainers()
    decoder = ThreadPoolExecutor(decode.threads, thread_name_prefix="danlu-studio-decode")

    async def in_decoder(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(decoder, partial(fn, *args))

    @app.get("/api/runs/{name}/samples", summary="A few test-set inputs of the run, ready to send to predict")
    def samples(name: str, n: Annotated[int, Query(ge=1, le=24)] = 6) -> dict[str, Any]:
        from danlu.serve.samples import test_samples

        predictor = predictors.get(name)
        return {"samples": test_samples(predictor.run_dir, predictor.schema, n)}

    # bodies are parsed and validated in the decode pool too, not on the event loop (an 800 KB image body
    # validated there held the other routes ~240 ms); the schema still shows in /docs
    @app.post("/api/runs/{name}/predict", openapi_extra=_body_schema(TryBody),
              summary="Try a finished run: top-k classes (or values) per input")
    async def predict(name: str, request: Request) -> dict[str, Any]:
        def run(raw: bytes) -> dict[str, Any]:
            body = _parsed(TryBody, raw)
            _check_count(len(body.inputs), MAX_INPUTS, "predict")
            return _predict(predictors, index, name, body, decode)

        return await in_decoder(run, await request.body())

    @app.post("/api/runs/{name}/explain", openapi_extra=_body_schema(ExplainTryBody),
              summary="Why a finished run says what it says: /v1/explain's answer")
    async def explain(name: str, request: Request) -> dict[str, Any]:
        def prepare(raw: bytes) -> tuple[Any, ...]:
            body = _parsed(ExplainTryBody, raw)
            _check_count(len(body.inputs), MAX_EXPLAIN_INPUTS, "explain")
            predictor, inputs, labels = _try_inputs(predictors, index, name, body, decode)
            if predictor.schema.kind == "audio":  # each clip costs 257 model runs, as /v1/explain bounds it
                _check_count(len(inputs), MAX_AUDIO_EXPLAIN_INPUTS, "explain (audio clips)")
            return body, predictor, inputs, labels

        body, predictor, inputs, labels = await in_decoder(prepare, await request.body())
        return await run_in_threadpool(explainers.explain, name, predictor, inputs, labels, body.method,
                                       body.target, body.top_k)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def _parsed(model: type[BaseModel], raw: bytes) -> Any:
    """The JSON body validated as ``model``; a RequestError (422) naming the first problem."""
    from pydantic import ValidationError

    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in ("body", *first.get("loc", ())))
        raise RequestError(f"{where}: {first.get('msg', 'invalid request')}"[:500]) from None


def _check_count(n: int, most: int, verb: str) -> None:
    if n > most:
        raise DanluError(f"{n} inputs; at most {most} at a time" + (" for explanations" if verb == "explain" else ""))
    if not n:
        raise DanluError(f"nothing to {verb}", hint="give at least one input")


def _add_page(app: FastAPI) -> None:
    """The page at /, its files, and serve's shared drawing code under /shared."""
    from danlu.serve.gate import STATIC as SERVE_STATIC

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/shared", StaticFiles(directory=SERVE_STATIC), name="shared")  # draw.js, shared with serve's page


def _try_inputs(predictors: Predictors, index: RunsIndex, name: str, body: TryBody, decode: DecodeLimits
                ) -> tuple[Any, list[Any], list[str] | None]:
    """(the run's Predictor, its inputs decoded, their labels): what predict and explain both take. Images
    are costed from their headers first (serve's ``check_images``): over the limits is a 422 or 413."""
    detail = index.summary(index.path_of(name))
    if detail["status"] != "done":
        raise DanluError(f"the run {name} is {detail['status']}, not done", hint="try a finished run")
    predictor = predictors.get(name)
    if predictor.schema.kind == "image":
        inputs: list[Any] = [_decode_base64(x, i) for i, x in enumerate(body.inputs)]
        labels = [f"input {i}" for i in range(len(inputs))]
        from danlu.serve.decoding import MIB, check_images
        from danlu.serve.inputs import MAX_IMAGE_PIXELS

        _, h, w = predictor.schema.input_shape
        check_images(inputs, labels, (h, w), int(decode.max_image_mb * MIB), int(decode.max_request_image_mb * MIB),
                     MAX_IMAGE_PIXELS).close()
        return predictor, inputs, labels
    if predictor.schema.kind == "audio":
        return predictor, _audio_clips(list(body.inputs)), [f"input {i}" for i in range(len(body.inputs))]
    return predictor, list(body.inputs), None


def _predict(predictors: Predictors, index: RunsIndex, name: str, body: TryBody, decode: DecodeLimits
             ) -> dict[str, Any]:
    predictor, inputs, labels = _try_inputs(predictors, index, name, body, decode)
    skipped: list[str] = []
    rows = predictor.predict(inputs, top_k=body.top_k, labels=labels, skipped=skipped)
    return {"predictions": rows, "skipped": skipped, "kind": predictor.schema.kind}
