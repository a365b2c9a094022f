"""The studio's HTTP app: ``create_studio_app(runs_dir)``, a FastAPI app on the same stack as ``danlu serve``.

Pages are one static page (static/), data is JSON under /api, figures are the run folders' own PNGs.
Everything is read from the run folders at request time (``RunsIndex``), so a run that is training shows
its new epochs on the next poll, and a damaged folder is one row marked damaged. With an API key, every
/api route asks for it (X-API-Key or Bearer), the page asks the user once per tab.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections import OrderedDict
from collections.abc import Sequence
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
from danlu.studio.explaining import MAX_EXPLAIN_INPUTS, Explainers, explain_body_model
from danlu.studio.folders import RunsIndex

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MAX_LOADED = 2  # predictors kept in memory for "try it" (each holds a model)
MAX_INPUTS = 16
MAX_BODY = 10 * 1024 * 1024


class TryBody(BaseModel):
    inputs: list[str | list[float | str | None] | dict[str, float | str | None]] = Field(
        description="data URLs or base64 images (image runs), texts (text runs), or feature rows (tabular runs)")
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


def _decode_image(item: Any, i: int) -> bytes:
    if not isinstance(item, str):
        raise DanluError(f"input {i} is not an image", hint="send images as data URLs or base64 strings")
    data = item.split(",", 1)[1] if item.startswith("data:") else item
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise DanluError(f"input {i} is not valid base64", hint="send a data URL: data:image/png;base64,...") from None


def create_studio_app(runs_dir: str | Path, api_key: str | None = None, *, bind_host: str = "127.0.0.1",
                      allowed_hosts: Sequence[str] = ()) -> FastAPI:
    from danlu.serve.hosts import HostCheck
    from danlu.serve.swagger import add_local_docs

    api_key = api_key or None
    index = RunsIndex(Path(runs_dir))
    predictors = Predictors(index)
    hosts = HostCheck(bind_host, allowed_hosts)
    app = FastAPI(title="danlu studio", docs_url=None, redoc_url=None,
                  description=f"Runs, curves, comparisons and studies of {Path(runs_dir).resolve()}")
    app.state.index = index

    @app.exception_handler(DanluError)
    async def _danlu_error(request: Request, e: DanluError) -> JSONResponse:
        status = 404 if e.message.startswith("no ") else 422
        return JSONResponse({"error": e.message, "detail": e.hint}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail), "detail": None}, status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}", "detail": None},
                            status_code=422)

    @app.middleware("http")
    async def gate(request: Request, call_next: Any) -> Response:
        if not hosts.allows(request.headers.get("host", "").encode("latin-1")):
            return JSONResponse({"error": "this server does not answer for that host",
                                 "detail": "start the studio with --allowed-hosts NAME"}, status_code=421)
        if api_key and request.url.path.startswith("/api/"):
            from danlu.serve.app import check_api_key
            from danlu.serve.inputs import RequestError

            try:
                check_api_key(api_key, request.headers.get("x-api-key"), request.headers.get("authorization"))
            except RequestError as e:
                return JSONResponse({"error": e.error, "detail": e.detail}, status_code=401)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY:
            return JSONResponse({"error": "request body over 10 MiB"}, status_code=413)
        return await call_next(request)

    @app.get("/api/info", summary="The studio's runs folder, and whether a key is needed")
    async def info() -> dict[str, Any]:
        return {"runs_dir": str(index.root.resolve()), "key_required": api_key is not None}

    @app.get("/api/runs", summary="Every run: status, recipe, key test metrics, duration; damaged ones marked")
    def runs() -> dict[str, Any]:
        return {"runs": index.list(), "studies": index.studies()}

    @app.get("/api/runs/{name}", summary="One run: resolved recipe, report, per-epoch metrics, figures")
    def run(name: str) -> dict[str, Any]:
        return index.detail(name)

    @app.get("/api/runs/{name}/metrics", summary="Per-epoch rows after the first `after` (live curves poll this)")
    def metrics(name: str, after: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        path = index.path_of(name)
        summary = index.summary(path)
        return {"status": summary["status"], "epoch": summary.get("epoch"), "epochs": summary.get("epochs"),
                "rows": index.history(path)[after:]}

    @app.get("/api/runs/{name}/figures/{figure}.png", response_class=FileResponse, summary="A figure of a run")
    def figure(name: str, figure: str) -> FileResponse:
        return FileResponse(index.figure(name, figure), media_type="image/png")

    @app.get("/api/compare", summary="Test-metric deltas against the first run, the recipe diff, the histories")
    def compare_runs(runs: Annotated[list[str], Query(min_length=2)]) -> dict[str, Any]:
        from danlu.runs.compare import compare

        paths = [index.path_of(r) for r in runs]
        out = compare(paths)
        out["histories"] = {p.name: index.history(p) for p in paths}
        return out

    @app.get("/api/studies/{name}", summary="A tuning study: trials, best trial, best recipe, plot names")
    def study(name: str) -> dict[str, Any]:
        return index.study(name)

    @app.get("/api/studies/{name}/plots/{plot}.png", response_class=FileResponse, summary="A study's figure")
    def study_plot(name: str, plot: str) -> FileResponse:
        return FileResponse(index.study_plot(name, plot), media_type="image/png")

    @app.get("/api/runs/{name}/samples", summary="A few test-set inputs of the run, ready to send to predict")
    def samples(name: str, n: Annotated[int, Query(ge=1, le=24)] = 6) -> dict[str, Any]:
        from danlu.serve.samples import test_samples

        predictor = predictors.get(name)
        return {"samples": test_samples(predictor.run_dir, predictor.schema, n)}

    @app.post("/api/runs/{name}/predict", summary="Try a finished run: top-k classes (or values) per input")
    async def predict(name: str, body: TryBody) -> dict[str, Any]:
        if len(body.inputs) > MAX_INPUTS:
            raise DanluError(f"{len(body.inputs)} inputs; at most {MAX_INPUTS} at a time")
        if not body.inputs:
            raise DanluError("nothing to predict", hint="give at least one input")
        return await run_in_threadpool(_predict, predictors, index, name, body)

    explainers = Explainers()

    @app.post("/api/runs/{name}/explain", summary="Why a finished run says what it says: /v1/explain's answer")
    async def explain(name: str, body: ExplainTryBody) -> dict[str, Any]:  # type: ignore[valid-type]
        if len(body.inputs) > MAX_EXPLAIN_INPUTS:
            raise DanluError(f"{len(body.inputs)} inputs; at most {MAX_EXPLAIN_INPUTS} at a time for explanations")
        if not body.inputs:
            raise DanluError("nothing to explain", hint="give at least one input")

        def run() -> dict[str, Any]:
            predictor, inputs, labels = _try_inputs(predictors, index, name, body)
            return explainers.explain(name, predictor, inputs, labels, body.method, body.target, body.top_k)

        return await run_in_threadpool(run)

    add_local_docs(app)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    from danlu.serve.app import STATIC as SERVE_STATIC

    app.mount("/shared", StaticFiles(directory=SERVE_STATIC), name="shared")  # draw.js, shared with serve's page
    return app


def _try_inputs(predictors: Predictors, index: RunsIndex, name: str, body: TryBody
                ) -> tuple[Any, list[Any], list[str] | None]:
    """(the run's Predictor, its inputs decoded, their labels): what predict and explain both take."""
    detail = index.summary(index.path_of(name))
    if detail["status"] != "done":
        raise DanluError(f"the run {name} is {detail['status']}, not done", hint="try a finished run")
    predictor = predictors.get(name)
    if predictor.schema.kind == "image":
        inputs: list[Any] = [_decode_image(x, i) for i, x in enumerate(body.inputs)]
        return predictor, inputs, [f"input {i}" for i in range(len(inputs))]
    return predictor, list(body.inputs), None


def _predict(predictors: Predictors, index: RunsIndex, name: str, body: TryBody) -> dict[str, Any]:
    predictor, inputs, labels = _try_inputs(predictors, index, name, body)
    skipped: list[str] = []
    rows = predictor.predict(inputs, top_k=body.top_k, labels=labels, skipped=skipped)
    return {"predictions": rows, "skipped": skipped, "kind": predictor.schema.kind}
