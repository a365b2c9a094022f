"""``danlu serve``: a run behind HTTP, with micro-batching, metrics, an API key, and a web page.

    from danlu.serve import create_app
    app = create_app("runs/20250101-120000-digits-mlp", backend="onnx", api_key="secret")

Modules: app (routes, errors, body limit), batching (the micro-batcher), engine (torch or ONNX Runtime),
inputs (request parsing and validation), metrics (Prometheus text), docs (OpenAPI models), server (uvicorn).
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any) -> Any:
    """See ``danlu.serve.app.create_app``; imported lazily so ``import danlu.serve`` stays cheap."""
    from danlu.serve.app import create_app as build

    return build(*args, **kwargs)


__all__ = ["create_app"]
