"""Every limit the server enforces, with its default, in one place: the CLI, the app and the protocol read it.

A limit is what stops a small or slow request from costing the server much more than it costs the client.
docs/limits-and-safety.md (section Serving) lists the same names and defaults.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

from danlu.errors import DanluError


@dataclass(frozen=True)
class ConnectionLimits:
    """Enforced by ``danlu.serve.protocol`` on the raw connection, before the app sees a request."""

    header_timeout_s: float = 10.0  # from the connection (or the previous answer) to the end of the headers
    max_header_kb: float = 64.0  # request line plus headers; browsers send every localhost cookie
    max_connections: int = 1000  # open connections per worker process; the next ones get a 503 and are closed

    def check(self) -> None:
        _positive("--header-timeout", self.header_timeout_s)
        _positive("--max-header-kb", self.max_header_kb)
        _at_least_one("--max-connections", self.max_connections)


@dataclass(frozen=True)
class DecodeLimits:
    """Enforced before an image is decoded, from its header (``danlu.serve.decoding``)."""

    max_image_mb: float = 128.0  # decoded size of one image
    max_request_image_mb: float = 512.0  # decoded size of all images of one request
    decode_threads: int = 0  # images decoded at once per worker; 0: min(4, cores)

    def check(self) -> None:
        _positive("--max-image-mb", self.max_image_mb)
        _positive("--max-request-image-mb", self.max_request_image_mb)
        if self.decode_threads < 0:
            raise DanluError("--decode-threads must be 0 (automatic) or more")

    @property
    def threads(self) -> int:
        if self.decode_threads:
            return self.decode_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(4, cores))


BODY_TIMEOUT_S = 30.0  # the whole request body must arrive within this, however it is trickled


def _positive(option: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise DanluError(f"{option} must be a number more than 0, got {value}")


def _at_least_one(option: str, value: int) -> None:
    if value < 1:
        raise DanluError(f"{option} must be at least 1, got {value}")


def check_body_timeout(seconds: float) -> None:
    _positive("--body-timeout", seconds)


def as_dict(limits: ConnectionLimits | DecodeLimits) -> dict[str, float]:
    return {f.name: getattr(limits, f.name) for f in fields(limits)}
