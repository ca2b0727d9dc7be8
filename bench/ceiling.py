"""The practical ceiling: a bare Starlette app with a fixed small JSON body.

Served exactly as iotedge serves its apps (``iotedge.serving.uvicorn_server``: uvicorn with
uvloop and httptools when installed, no access log), so the gap between this and the
simulator is the cost of the simulator's own work.

    python bench/ceiling.py --port 8099
"""

import argparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from iotedge.serving import uvicorn_server

__all__ = ["create_app", "main"]

_BODY = {"id": "device_1", "status": "ok"}


async def _hello(request: Request) -> JSONResponse:
    return JSONResponse(_BODY)


def create_app() -> Starlette:
    """A Starlette app answering every route with the same small JSON body."""
    return Starlette(routes=[Route("/", _hello), Route("/healthz", _hello)])


def main() -> None:
    """Serve the ceiling app on loopback."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    uvicorn_server(create_app(), args.host, args.port).run()


if __name__ == "__main__":
    main()
