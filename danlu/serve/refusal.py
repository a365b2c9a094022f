"""``RequestError``: what was wrong with a request, in a module light enough for the gate to import (no
torch: ``danlu studio`` starts without it)."""

from __future__ import annotations

from typing import Any


class RequestError(Exception):
    """What was wrong with a request, answered as {"error", "detail"} JSON with ``status`` (422: bad input)."""

    def __init__(self, error: str, detail: Any = None, status: int = 422):
        super().__init__(error)
        self.error, self.detail, self.status = error, detail, status
