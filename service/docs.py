"""The API's documentation pages, /docs (Swagger UI) and /redoc, served with their assets
from the package: FastAPI's defaults fetch them from a CDN, which is a blank page on a
machine without internet (and a request to another host from every other one)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from ..errors import NotFound

VENDOR = Path(__file__).resolve().parent.parent / "web" / "vendor"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
    "redoc.standalone.js": "text/javascript",
}
PREFIX = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Add /docs, /redoc and their assets to `app` (made with docs_url=redoc_url=None)."""
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{PREFIX}/favicon-32x32.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            redoc_js_url=f"{PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{PREFIX}/favicon-32x32.png",
            with_google_fonts=False,
        )

    @app.get(PREFIX + "/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in ASSETS:
            raise NotFound(f"no documentation asset {name!r}")
        headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
        return Response((VENDOR / name).read_bytes(), media_type=ASSETS[name], headers=headers)
