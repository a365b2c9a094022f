"""/docs with Swagger UI from this machine: FastAPI's default page loads its script and style from a CDN,
so offline (or behind a strict proxy) it was blank. The assets come from the swagger-ui-bundle package."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def assets_folder() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def add_local_docs(app: FastAPI) -> None:
    """GET /docs (Swagger UI) and its files under /docs-assets; create the app with ``docs_url=None``."""
    try:
        folder = assets_folder()
    except ImportError:  # the page says what to install instead of loading a CDN
        folder = None

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if folder is None:
            return HTMLResponse("<p>Swagger UI needs the swagger-ui-bundle package: pip install 'danlu[serve]'. "
                                "The API description itself is at <a href='openapi.json'>openapi.json</a>.</p>",
                                status_code=503)
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} · API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon-32x32.png")

    if folder is not None:
        app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")
