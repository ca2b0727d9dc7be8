"""The web console at ``/ui/``: static pages served from the package, no build step.

``GET /ui/`` answers the page with ``<html lang>`` set from ``Accept-Language``; the
scripts, styles and vendored libraries (see ``static/vendor/MANIFEST.json``) are served
under ``/ui/static/``. The page talks to the JSON API with the key the user typed in.
"""

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

from iotedge.edge.ui.lang import pick_language

__all__ = ["STATIC_DIR", "install_console"]

STATIC_DIR = Path(__file__).parent / "static"

_router = APIRouter(include_in_schema=False)
_LANG_MARK = 'lang="en"'


@_router.get("/ui")
async def _to_console() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=308)


@_router.get("/ui/", response_class=HTMLResponse)
async def _console(request: Request) -> HTMLResponse:
    page = (STATIC_DIR / "index.html").read_text()
    lang = pick_language(request.headers.get("accept-language"))
    return HTMLResponse(page.replace(_LANG_MARK, f'lang="{lang}"', 1))


def install_console(app: FastAPI) -> None:
    """Serve the console on ``app``."""
    app.include_router(_router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="console-static")
