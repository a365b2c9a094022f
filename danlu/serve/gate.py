"""The request gate and page headers that ``danlu serve`` and ``danlu studio`` share.

``Gate`` is pure ASGI middleware in front of a FastAPI app's whole stack (``GatedFastAPI``). In this order,
from the headers alone: the Host allow-list (421: DNS rebinding), the API key on the key-guarded routes
(401: an unauthenticated client never makes the server read its body), the content type of the POST
routes that take bodies (415: a web page can send text/plain cross-origin without asking, but not
application/json). Then the body is read up to the limit, counted on the bytes received (413, declared or
actual, chunked included; the rest of the stream is never read) and within ``body_timeout`` seconds in
all (408: trickling a byte at a time does not push the deadline back). The connection's own limits
(header timeout, header size, connection cap) are ``danlu.serve.protocol``'s, under both apps.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from danlu.serve.hosts import HostCheck
from danlu.serve.limits import BODY_TIMEOUT_S
from danlu.serve.refusal import RequestError

# The web pages use only their own files: no inline script, no CDN; images are previewed from blob: URLs.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; media-src 'self' blob:; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
JSON_OR_FORM = (b"application/json", b"multipart/form-data")
JSON_ONLY = (b"application/json",)
STATIC = Path(__file__).parent / "static"  # the page (and its headers, PAGE_HEADERS) every served run shares

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON; ASCII escapes when a string holds an unpaired surrogate (a request may send
    "\\udfff", which Python decodes but cannot encode as UTF-8), so echoing it back is never a 500."""
    try:
        return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


def check_api_key(api_key: str, x_api_key: str | None, authorization: str | None) -> None:
    """The key from ``X-API-Key`` or ``Authorization: Bearer KEY``, compared in constant time; else a 401."""
    given = x_api_key or None  # an empty X-API-Key header does not hide a Bearer token
    if given is None:
        scheme, _, token = (authorization or "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    if given is None or not hmac.compare_digest(given.encode("latin-1", "replace"), api_key.encode()):
        raise RequestError("missing or wrong API key" if given is None else "wrong API key",
                           "send it as the header X-API-Key: KEY or Authorization: Bearer KEY", status=401)


def refusal_of(e: RequestError) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """(status, {"error", "detail"}, extra headers) for a RequestError."""
    auth = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
    return e.status, {"error": e.error, "detail": e.detail}, auth


class GatedFastAPI(FastAPI):
    """FastAPI with ``Gate`` in front of its whole middleware stack rather than inside it: a JSON prediction
    is answered before Starlette's error, telemetry and body-limit layers, which took ~14 % of the event
    loop's time per request at 32 clients (py-spy, mnist-cnn). What reaches the routes is as before."""

    gate: Gate | None = None

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        await (self.gate or super().__call__)(scope, receive, send)

    def set_gate(self, **settings: Any) -> Gate:
        """Put a ``Gate(**settings)`` in front of this app."""
        async def inner(scope: dict, receive: Any, send: Any) -> None:
            await FastAPI.__call__(self, scope, receive, send)

        self.gate = Gate(inner, **settings)
        return self.gate


class Gate:
    """What is checked before a route runs (see the module's doc), request metrics when given, and an
    optional fast lane: ``fast_lane(body)`` answers JSON POSTs to ``fast_path`` without FastAPI's routing,
    dependency and exception layers (serve's /v1/predict: about a third of the event loop's time per request
    under load, py-spy, mnist-cnn at 32 clients), as (status, payload, headers).
    """

    def __init__(self, app: ASGIApp, max_body: int, *, api_key: str | None = None, key_prefix: str = "/v1/",
                 body_timeout: float = BODY_TIMEOUT_S, hosts: HostCheck | None = None,
                 content_types: Callable[[str], tuple[bytes, ...] | None] | None = None,
                 body_hint: str = "send fewer or smaller inputs per request (the server's limit is --max-body-mb)",
                 metrics: Any = None, routes: tuple[str, ...] = (),
                 fast_lane: Callable[[bytes], Awaitable[tuple[int, dict, dict | None]]] | None = None,
                 fast_path: str = "/v1/predict"):
        self.app, self.max_body, self.api_key, self.key_prefix = app, max_body, api_key or None, key_prefix
        self.body_timeout, self.hosts = body_timeout, hosts or HostCheck()
        self.content_types = content_types or (lambda path: None)
        self.body_hint, self.metrics, self.routes = body_hint, metrics, routes
        self.fast_lane, self.fast_path = fast_lane, fast_path

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.metrics is None:
            await self._gate(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_and_watch(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight += 1
        try:
            if await self._gate(scope, receive, send_and_watch) == "gone":
                status = 499
        finally:
            self.metrics.in_flight -= 1
            route = getattr(scope.get("route"), "path", None) or scope["path"]
            route = route if route in self.routes else "/static" if route.startswith("/static/") else "other"
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - t0)

    async def _gate(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                    send: Callable[[dict], Awaitable[None]]) -> str | None:
        headers = dict(scope["headers"])  # names are lower case; of a repeated header the last one counts
        refusal = self._refuse(scope, headers)
        if refusal is not None:
            await send_json(send, *refusal)
            return None
        body, state = await self._read_body(headers, receive)
        if state == "too large":
            await send_json(send, 413, {"error": f"the request body is larger than {size_text(self.max_body)}",
                                        "detail": self.body_hint})
            return None
        if state == "stalled":
            await send_json(send, 408, {
                "error": f"the request body did not arrive within {self.body_timeout:g} s",
                "detail": "send the whole body at once (the server's limit is --body-timeout)"})
            return None
        if state == "gone":  # the client hung up before its request was complete: nobody to answer
            return "gone"
        if self.fast_lane is not None and scope["path"] == self.fast_path and scope["method"] == "POST" \
                and media_type(headers.get(b"content-type")) == b"application/json":
            await send_json(send, *await self.fast_lane(body), close=False)
            return None
        await self.app(scope, _replay(body, receive), send)
        return None

    def _refuse(self, scope: dict, headers: dict[bytes, bytes]) -> tuple[int, dict[str, Any], dict | None] | None:
        """(status, payload, extra headers) when the request's headers alone say no; None otherwise."""
        host = headers.get(b"host")
        if not self.hosts.allows(host):
            shown = (host or b"").decode("latin-1")[:100]
            return 421, {"error": f"this server does not answer for the host '{shown}'",
                         "detail": f"use one of {', '.join(self.hosts.allowed)}, or start the server with "
                                   f"--allowed-hosts {_strip(shown) or 'NAME'}"}, None
        path = scope["path"]
        if self.api_key and path.startswith(self.key_prefix):
            try:
                check_api_key(self.api_key, _text(headers.get(b"x-api-key")), _text(headers.get(b"authorization")))
            except RequestError as e:
                return refusal_of(e)
        if scope["method"] == "POST":
            wanted = self.content_types(path)
            kind = media_type(headers.get(b"content-type"))
            if wanted is not None and kind not in wanted:
                shown = kind.decode("latin-1")[:60] or "none"
                return 415, {"error": f"the content type must be {' or '.join(w.decode() for w in wanted)}, "
                                      f"not {shown}",
                             "detail": "send the header Content-Type: application/json "
                                       "(curl: -H 'content-type: application/json')"}, None
        return None

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
                    if total > self.max_body:  # counted on what arrived: chunked bodies declare nothing
                        return b"", "too large"
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks), "ok"
        except TimeoutError:
            return b"", "stalled"


def log_failure(route: str) -> None:
    logging.getLogger("danlu.serve").exception("%s failed", route)


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


def size_text(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB" if n >= 1024 * 1024 else f"{n / 1024:.4g} KiB" if n >= 1024 else f"{n} bytes"


async def send_json(send: Callable[[dict], Awaitable[None]], status: int, payload: dict,
                    headers: dict[str, str] | None = None, close: bool = True) -> None:
    """A JSON response as JSONResponse renders it; ``close`` when the request body was left unread."""
    data = json_bytes(payload)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
