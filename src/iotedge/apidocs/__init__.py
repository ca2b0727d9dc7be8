"""Interactive API docs served from the package: Swagger UI at /docs and ReDoc at /redoc.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, without an integrity check, and
start them with an inline script: an edge without internet shows a blank page, and the
page's policy must allow a foreign host and inline code. Here the assets are vendored
(``assets/``, with versions, licences and checksums in ``assets/MANIFEST.json``) and the
pages start them with a script of ours, so their policy allows this origin only.
"""

import json
from functools import cache
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from iotedge.web import error_response

__all__ = ["ASSETS_PATH", "DOCS_CSP", "DOCS_PATHS", "install_api_docs", "manifest"]

ASSETS_PATH = "/docs/assets"
DOCS_PATHS = ("/docs", "/redoc")
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'"
)
"""The policy of /docs and /redoc: code from this origin only (the UIs set inline styles)."""

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_CACHE = "public, max-age=86400"  # the assets change only with the package version

_SWAGGER_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, layout: "BaseLayout",
  presets: [SwaggerUIBundle.presets.apis], showExtensions: true, showCommonExtensions: true,
  validatorUrl: null
});
"""
_REDOC_INIT = """Redoc.init("/openapi.json", {}, document.getElementById("redoc"));
"""


@cache
def manifest() -> dict[str, Any]:
    """The vendored packages: names, versions, licences, files and their sha256."""
    data: dict[str, Any] = json.loads(resources.files(__name__).joinpath("assets/MANIFEST.json").read_text())
    return data


@cache
def _asset(name: str) -> bytes | None:
    if name in ("swagger-init.js", "redoc-init.js"):
        return (_SWAGGER_INIT if name.startswith("swagger") else _REDOC_INIT).encode()
    if name not in manifest()["sha256"] or not name.endswith(tuple(_TYPES)):
        return None  # licence texts and the manifest stay in the package, not on the API
    return resources.files(__name__).joinpath("assets", name).read_bytes()


def _page(title: str, head: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{head}</head>'
        f"<body>{body}</body></html>\n"
    )


def install_api_docs(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets from the package (build ``app`` with docs_url=None)."""
    title = app.title
    swagger = _page(
        f"{title} - Swagger UI",
        f'<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">',
        f'<div id="swagger-ui"></div><script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>'
        f'<script src="{ASSETS_PATH}/swagger-init.js"></script>',
    )
    redoc = _page(
        f"{title} - ReDoc",
        "<style>body{margin:0;padding:0}</style>",
        f'<div id="redoc"></div><script src="{ASSETS_PATH}/redoc.standalone.js"></script>'
        f'<script src="{ASSETS_PATH}/redoc-init.js"></script>',
    )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger)

    @app.get("/redoc", include_in_schema=False)
    async def redoc_ui() -> HTMLResponse:
        return HTMLResponse(redoc)

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        body = _asset(name)
        if body is None:
            return error_response(404, "Not Found", f"no docs asset {name!r}")
        media_type = _TYPES[name[name.rindex(".") :]]
        return Response(body, media_type=media_type, headers={"cache-control": _CACHE})
