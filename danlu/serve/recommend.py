"""``danlu serve RUN`` for a recommendation run: POST /v1/recommend, GET /v1/items, GET /v1/model, GET /healthz
and the web page at / (pick a few items, see what is recommended; static/recommend.js).

    curl -s localhost:8000/v1/recommend -d '{"user": "42", "k": 10}'
    curl -s localhost:8000/v1/recommend -d '{"items": ["1", "2", "3"], "k": 5, "exclude": ["318"]}'

The run is loaded once. Requests are checked in the event loop, then micro-batched like /v1/predict's
(danlu/serve/batching.py): those that arrive together are scored in one model call on the model thread
(numpy/torch release the GIL, so the event loop keeps accepting requests). Bad requests get {"error",
"detail"} JSON with 422, a wrong key 401.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from danlu.errors import DanluError

MAX_K = 1000
MAX_ITEMS = 10_000


def parse_request(body: bytes) -> dict[str, Any]:
    """{"user": id} or {"items": [ids]}, with optional "k" (10) and "exclude" ([]); anything else is refused."""
    from danlu.serve.inputs import RequestError

    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError("the body is not JSON", str(e)[:200]) from None
    if not isinstance(data, dict):
        raise RequestError("the body is a JSON object", 'e.g. {"user": "42", "k": 10}')
    unknown = sorted(set(data) - {"user", "items", "k", "exclude"})
    if unknown:
        raise RequestError(f"unknown field(s) {unknown}", "fields: user or items, k, exclude")
    if ("user" in data) == ("items" in data):
        raise RequestError("give exactly one of user and items", '{"user": "42"} or {"items": ["1", "2"]}')
    k = data.get("k", 10)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise RequestError(f"k is a whole number from 1 to {MAX_K}", f"got {k!r}")
    out: dict[str, Any] = {"k": k}
    for key in ("items", "exclude"):
        value = data.get(key, [] if key == "exclude" else None)
        if value is None:
            continue
        if not isinstance(value, list) or len(value) > MAX_ITEMS or not all(
                isinstance(v, str | int) and not isinstance(v, bool) for v in value):
            raise RequestError(f"{key} is a list of at most {MAX_ITEMS} item ids (strings or numbers)")
        out[key] = value
    if "user" in data:
        if not isinstance(data["user"], str | int) or isinstance(data["user"], bool):
            raise RequestError("user is an id (a string or a number)", f"got {data['user']!r}")
        out["user"] = data["user"]
    return out


def create_recommend_app(run_dir: Path, api_key: str | None = None, max_body_mb: float = 1.0,
                         max_batch_size: int = 64, max_wait_ms: float = 5.0, *, body_timeout_s: float | None = None,
                         hosts: Any = None) -> FastAPI:
    """The app; requests that arrive together are scored in one model call (the micro-batcher of
    /v1/predict, danlu/serve/batching.py; ``max_batch_size=1`` turns it off). Behind serve's request gate
    (danlu/serve/gate.py): Host allow-list, the API key before the body, JSON only, the body limit counted on
    the bytes received and a body deadline."""
    from fastapi.staticfiles import StaticFiles

    from danlu.recommend.predict import RecommenderRun
    from danlu.serve.batching import BatcherClosed, MicroBatcher
    from danlu.serve.catalogue import Catalogue, html_safe_json, parse_query
    from danlu.serve.gate import BODY_TIMEOUT_S, JSON_ONLY, PAGE_HEADERS, STATIC, GatedFastAPI
    from danlu.serve.inputs import RequestError

    served = RecommenderRun(run_dir)
    counted = {"batches": 0, "requests": 0}  # /healthz shows them: the mean batch a load test saw

    def count(inputs: int, jobs: int, seconds: float) -> None:
        counted["batches"] += 1
        counted["requests"] += jobs

    batcher = MicroBatcher(served.answer_many, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                           on_batch=count)
    report_path = Path(run_dir) / "report.json"
    from danlu.runs.files import read_json

    report = read_json(report_path) if report_path.exists() else {}
    metrics = report.get("metrics", {}) if isinstance(report, dict) else {}
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:  # answer whatever is still queued, then stop
            await batcher.close()

    app = GatedFastAPI(title=f"danlu · {served.recipe.name}", docs_url=None, lifespan=lifespan)
    max_body = int(max_body_mb * 1024 * 1024)
    app.set_gate(max_body=max_body, api_key=api_key, key_prefix="/v1/",
                 body_timeout=BODY_TIMEOUT_S if body_timeout_s is None else body_timeout_s, hosts=hosts,
                 content_types=lambda path: JSON_ONLY if path == "/v1/recommend" else None,
                 body_hint="ask for fewer items per request (the server's limit is --max-body-mb)")

    def refuse(status: int, error: str, detail: Any = None) -> JSONResponse:
        return JSONResponse({"error": error, "detail": detail}, status_code=status)

    def authorized(x_api_key: str | None, authorization: str | None) -> JSONResponse | None:
        """The same rule as /v1/predict's: X-API-Key: KEY or Authorization: Bearer KEY, constant-time."""
        if not api_key:
            return None
        given = x_api_key or None
        if given is None:
            scheme, _, token = (authorization or "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if given is None or not hmac.compare_digest(given.encode("latin-1", "replace"), api_key.encode()):
            return refuse(401, "missing or wrong API key", "send it as the header X-API-Key: KEY or "
                                                           "Authorization: Bearer KEY")
        return None

    @app.post("/v1/recommend", summary="Top-k items for a known user or for a few items (a new user)")
    async def recommend(request: Request, x_api_key: str | None = Header(None),
                        authorization: str | None = Header(None)) -> JSONResponse:
        denied = authorized(x_api_key, authorization)
        if denied is not None:
            return denied
        body = await request.body()
        if len(body) > max_body:
            return refuse(413, f"the body is over {max_body_mb:g} MB")
        batcher.arriving += 1  # the batcher waits for company only while requests are being read
        try:
            asked = parse_request(body)
            one = served.ask(user=asked.get("user"), items=asked.get("items"), k=asked["k"],
                             exclude=asked.get("exclude", []))
        except RequestError as e:
            return refuse(e.status, e.error, e.detail)
        except DanluError as e:
            return refuse(422, e.message, e.hint)
        finally:
            batcher.arriving -= 1
        try:
            result = await batcher.submit(one, 1)
        except BatcherClosed:
            return refuse(503, "the server is starting or shutting down", "try again in a moment")
        except DanluError as e:
            return refuse(422, e.message, e.hint)
        return JSONResponse(result)

    @app.get("/v1/model", summary="What this server recommends with, and its test metrics")
    async def model(x_api_key: str | None = Header(None), authorization: str | None = Header(None)) -> JSONResponse:
        denied = authorized(x_api_key, authorization)
        if denied is not None:
            return denied
        return JSONResponse({"run": served.run_dir.name, "task": "recommendation", "kind": "recommendation",
                             "recipe": served.recipe.name, "description": served.recipe.description,
                             "model": served.recipe.model.name,
                             "users": len(served.users), "items": len(served.items), "metrics": metrics,
                             "key_required": api_key is not None})

    catalogue = Catalogue(served.items.ids, [served.label(i) for i in range(len(served.items))])

    @app.get("/v1/items", summary="Search the item catalogue by title or id: ?q=toy&limit=20&offset=0 (a page)")
    async def items(request: Request, x_api_key: str | None = Header(None),
                    authorization: str | None = Header(None)) -> Response:
        denied = authorized(x_api_key, authorization)
        if denied is not None:
            return denied
        try:
            q, limit, offset = parse_query(dict(request.query_params))
        except RequestError as e:
            return refuse(e.status, e.error, e.detail)
        return Response(html_safe_json(catalogue.search(q, limit, offset)), media_type="application/json",
                        headers={"X-Content-Type-Options": "nosniff"})

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:  # the same page and CSP as the other runs'; app.js picks the block
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", **counted})

    return app
