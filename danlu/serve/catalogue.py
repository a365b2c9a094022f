"""GET /v1/items for a recommendation run: a bounded, paged search over the item catalogue (titles, else ids),
so the web page can let a visitor pick a few items without ever downloading the whole catalogue."""

from __future__ import annotations

import json
from typing import Any

MAX_LIMIT = 100  # one page never holds more than this many items
MAX_QUERY = 200  # characters; a longer query is refused, not truncated silently


class Catalogue:
    """Each item's id and label (``Title (year)`` or ``item ID``), lower-cased once for the search."""

    def __init__(self, ids: list[str], labels: list[str]):
        self.ids = [str(i) for i in ids]
        self.labels = labels
        self._keys = [f"{lab}\n{i}".casefold() for i, lab in zip(self.ids, labels, strict=True)]
        self._order = sorted(range(len(self.ids)), key=self._keys.__getitem__)  # by label, then id

    def search(self, q: str, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        """Items whose label or id contains ``q`` (case-insensitive): those that start with it first, then
        the rest, each group by label. An empty query lists the whole catalogue by label, a page at a time."""
        needle = q.strip().casefold()
        if not needle:
            hits = self._order
        else:
            starts, inside = [], []
            for n in self._order:
                key = self._keys[n]
                at = key.find(needle)
                if at == 0 or (at > 0 and key[at - 1] == "\n"):  # the label or the id starts with it
                    starts.append(n)
                elif at > 0:
                    inside.append(n)
            hits = starts + inside
        page = hits[offset:offset + limit]
        return {"query": q, "total": len(hits), "offset": offset, "limit": limit,
                "items": [{"item": self.ids[n], "title": self.labels[n]} for n in page]}


def parse_query(params: dict[str, str]) -> tuple[str, int, int]:
    """q (≤ 200 characters), limit (1..100, default 20) and offset (≥ 0); anything else is a RequestError."""
    from danlu.serve.inputs import RequestError

    unknown = sorted(set(params) - {"q", "limit", "offset"})
    if unknown:
        raise RequestError(f"unknown parameter(s) {unknown}", "parameters: q, limit, offset")
    q = params.get("q", "")
    if len(q) > MAX_QUERY:
        raise RequestError(f"q is at most {MAX_QUERY} characters", f"got {len(q)}")
    numbers = {}
    for name, default, low, high in (("limit", 20, 1, MAX_LIMIT), ("offset", 0, 0, 10**9)):
        raw = params.get(name, str(default))
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise RequestError(f"{name} is a whole number from {low} to {high}", f"got {raw[:40]!r}")
        numbers[name] = int(raw)
    return q, numbers["limit"], numbers["offset"]


def html_safe_json(payload: Any) -> bytes:
    """JSON with <, > and & as \\u escapes: titles come from the user's item table and may hold markup; even
    a browser that sniffed the answer as HTML would find no tag in it (the page shows them as text anyway)."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e").encode()
