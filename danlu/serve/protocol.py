"""uvicorn's httptools protocol with the limits it lacks on slow and greedy clients.

Tried with raw sockets against uvicorn 0.54 + httptools 0.9: a connection that sends nothing, or half a
request line, is held forever (``timeout_keep_alive`` only starts after a first answer); a 5 MB header is
read and answered (``h11_max_incomplete_event_size`` applies to h11 only); ``limit_concurrency`` answers
503 to the next *request* but leaves idle connections open. So, per connection:

- headers must be complete within ``header_timeout_s`` of the connection (or of the previous answer on a
  kept-alive one): 408 if some bytes came, closed silently if none;
- the request line and headers may not exceed ``max_header_kb``: 431 and closed, at most one read
  (64-256 KB) past the limit buffered;
- past ``max_connections`` open connections a new one gets a 503 and is closed at once.

The body's deadline and the API key are the app's (``danlu.serve.app.Gate``): they need the route.
Selected with ``uvicorn.Config(http="danlu.serve.protocol:GuardedHttpToolsProtocol")``; the limits travel
as the config's ``danlu_limits`` attribute, so worker processes get them with the pickled config.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from danlu.serve.limits import ConnectionLimits

PROTOCOL = "danlu.serve.protocol:GuardedHttpToolsProtocol"
log = logging.getLogger("danlu.serve")


class _Rejected(Exception):
    """Raised from a parser callback to stop parsing a request that was answered and closed."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: Any, *args: Any, **kwargs: Any):
        super().__init__(config, *args, **kwargs)
        self.limits: ConnectionLimits = getattr(config, "danlu_limits", None) or ConnectionLimits()
        self.max_header_bytes = int(self.limits.max_header_kb * 1024)
        self.header_timer: asyncio.TimerHandle | None = None
        self.in_headers = True  # between requests or inside a request's line and headers
        self.header_bytes = 0  # received since the current request's headers began
        self.rejected = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning("refused a connection: %d open, --max-connections is %d", len(self.connections) - 1,
                        self.limits.max_connections)
            self._reject(503, f"more than {self.limits.max_connections} open connections; retry later")
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.rejected:
            return
        self._unset_keepalive_if_required()
        if self.in_headers:
            self.header_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.rejected:  # a callback answered and raised _Rejected to stop the parser
                return
            log.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self.in_headers and self.header_bytes > self.max_header_bytes:
            self._reject(431, f"the request line and headers are larger than {self.limits.max_header_kb:g} KiB")

    def on_headers_complete(self) -> None:
        self.in_headers = False
        self._disarm_header_timer()
        size = len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)
        if size > self.max_header_bytes:
            self._reject(431, f"the request line and headers are larger than {self.limits.max_header_kb:g} KiB")
            raise _Rejected
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.in_headers, self.header_bytes = True, 0
            self._arm_header_timer()  # the next request's headers get the same deadline

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self.header_timer = self.loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_too_slow(self) -> None:
        self.header_timer = None
        if self.transport.is_closing() or not self.in_headers:
            return
        if self.header_bytes == 0:  # idle: nobody to answer
            self.rejected = True
            self.transport.close()
            return
        self._reject(408, f"the request headers did not arrive within {self.limits.header_timeout_s:g} s")

    def _reject(self, status: int, message: str) -> None:
        """Answer plain text and close, without the app; later bytes on this connection are dropped."""
        self.rejected = True
        self._disarm_header_timer()
        if self.transport.is_closing():
            return
        body = message.encode()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, reason[status], len(body), body))
        self.transport.close()
