"""Prometheus metrics, hand-written: a few counters and histograms rendered in the text exposition format.

Updated only from the server's event loop, so no locks. Each uvicorn worker process counts its own; with
``--workers N`` they meet in a shared folder (``SharedMetrics``), so a scrape answered by any worker
reports all of them.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ERROR_KINDS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               408: "timeout", 413: "too_large", 415: "unsupported_media_type", 422: "bad_input",
               499: "client_gone", 503: "unavailable"}

Labels = tuple[tuple[str, str], ...]


class Histogram:
    """Cumulative-bucket histogram: counts per upper bound, plus sum and count."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def state(self) -> dict[str, Any]:
        return {"counts": self.counts, "sum": self.sum, "count": self.count}

    def add(self, state: dict[str, Any]) -> None:
        self.counts = [a + b for a, b in zip(self.counts, state["counts"], strict=True)]
        self.sum += state["sum"]
        self.count += state["count"]


class Metrics:
    """What /metrics reports: traffic, latency, errors, and how well requests are batched."""

    def __init__(self, info: dict[str, str] | None = None):
        self.info = info or {}
        self.requests: dict[Labels, int] = defaultdict(int)
        self.errors: dict[Labels, int] = defaultdict(int)
        self.latency: dict[Labels, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)  # inputs per forward pass
        self.batch_requests = Histogram(BATCH_BUCKETS)  # requests merged into one forward pass
        self.forward_seconds = Histogram(LATENCY_BUCKETS)
        self.in_flight = 0

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[(("route", route), ("method", method), ("status", str(status)))] += 1
        key = (("route", route),)
        if key not in self.latency:
            self.latency[key] = Histogram(LATENCY_BUCKETS)
        self.latency[key].observe(seconds)
        if status >= 400:
            kind = ERROR_KINDS.get(status, "internal" if status >= 500 else "client_error")
            self.errors[(("route", route), ("kind", kind))] += 1

    def observe_batch(self, inputs: int, requests: int, seconds: float) -> None:
        self.batch_size.observe(inputs)
        self.batch_requests.observe(requests)
        self.forward_seconds.observe(seconds)

    def state(self) -> dict[str, Any]:
        """Everything counted so far, as JSON-able data (what a worker shares with the others)."""
        return {"requests": [[list(k), v] for k, v in self.requests.items()],
                "errors": [[list(k), v] for k, v in self.errors.items()],
                "latency": [[list(k), h.state()] for k, h in self.latency.items()],
                "batch_size": self.batch_size.state(), "batch_requests": self.batch_requests.state(),
                "forward_seconds": self.forward_seconds.state(), "in_flight": self.in_flight}

    def merged(self, states: list[dict[str, Any]]) -> Metrics:
        """A copy of these metrics with other workers' states added."""
        out = Metrics(self.info)
        for state in [self.state(), *states]:
            for name in ("requests", "errors"):
                for key, value in state[name]:
                    getattr(out, name)[tuple(tuple(pair) for pair in key)] += value
            for key, h in state["latency"]:
                out.latency.setdefault(tuple(tuple(pair) for pair in key), Histogram(LATENCY_BUCKETS)).add(h)
            out.batch_size.add(state["batch_size"])
            out.batch_requests.add(state["batch_requests"])
            out.forward_seconds.add(state["forward_seconds"])
            out.in_flight += state["in_flight"]
        return out

    def render(self) -> str:
        out: list[str] = []
        _head(out, "danlu_model_info", "gauge", "The served model (always 1).")
        out.append(f"danlu_model_info{_labels(tuple(self.info.items()))} 1")
        _head(out, "danlu_requests_total", "counter", "HTTP requests by route, method and status code.")
        out.extend(f"danlu_requests_total{_labels(k)} {v}" for k, v in sorted(self.requests.items()))
        _head(out, "danlu_errors_total", "counter", "Requests answered with an error status, by route and kind.")
        out.extend(f"danlu_errors_total{_labels(k)} {v}" for k, v in sorted(self.errors.items()))
        _head(out, "danlu_request_duration_seconds", "histogram", "Time from request start to response end.")
        for k, h in sorted(self.latency.items()):
            _histogram(out, "danlu_request_duration_seconds", h, k)
        _head(out, "danlu_batch_size", "histogram", "Inputs per forward pass of the model.")
        _histogram(out, "danlu_batch_size", self.batch_size, ())
        _head(out, "danlu_batch_requests", "histogram", "Requests merged into one forward pass.")
        _histogram(out, "danlu_batch_requests", self.batch_requests, ())
        _head(out, "danlu_forward_seconds", "histogram", "Time of one batched forward pass.")
        _histogram(out, "danlu_forward_seconds", self.forward_seconds, ())
        _head(out, "danlu_requests_in_flight", "gauge", "Requests being answered right now.")
        out.append(f"danlu_requests_in_flight {self.in_flight}")
        return "\n".join(out) + "\n"


def _head(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Labels) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels) + "}" if labels else ""


def _number(x: float) -> str:
    if math.isinf(x):
        return "+Inf"
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _histogram(out: list[str], name: str, h: Histogram, labels: Labels) -> None:
    running = 0
    for bound, n in zip((*h.buckets, math.inf), h.counts, strict=True):
        running += n
        out.append(f"{name}_bucket{_labels((*labels, ('le', _number(bound))))} {running}")
    out.append(f"{name}_sum{_labels(labels)} {repr(float(h.sum))}")
    out.append(f"{name}_count{_labels(labels)} {h.count}")


class SharedMetrics:
    """One worker's side of the shared folder: it writes its state as ``PID.json`` at each ``flush()``
    (the app calls it every second, and before answering a scrape), and renders every worker's sum.

    A worker that died (uvicorn restarts it under a new pid) still counts in the totals, as Prometheus
    counters must never go down; only its in-flight gauge is dropped.
    """

    def __init__(self, metrics: Metrics, folder: str | os.PathLike):
        self.metrics, self.folder = metrics, Path(folder)
        self.path = self.folder / f"{os.getpid()}.json"
        self.written: Any = None

    def flush(self) -> None:
        """Write the state when it changed: a temp file renamed over the old one (readers never see half a
        file; no fsync: the folder lives as long as the server)."""
        state = self.metrics.state()
        if state != self.written:
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_bytes(json.dumps(state).encode())
            os.replace(tmp, self.path)
            self.written = state

    def render(self) -> str:
        others = []
        for path in sorted(self.folder.glob("*.json")):
            if path == self.path or not path.stem.isdigit():
                continue
            try:
                state = json.loads(path.read_bytes())
            except (OSError, ValueError):  # being replaced right now, or gone: next scrape
                continue
            if not _alive(int(path.stem)):
                state["in_flight"] = 0
            others.append(state)
        return self.metrics.merged(others).render()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
