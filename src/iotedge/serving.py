"""How iotedge runs an ASGI app: one uvicorn server configuration and the event loop choice."""

import asyncio
from collections.abc import Coroutine
from typing import Any

import uvicorn

__all__ = ["GRACEFUL_SHUTDOWN_S", "run_async", "uvicorn_server"]

GRACEFUL_SHUTDOWN_S = 3


def run_async(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on uvloop when installed (uvicorn[standard] brings it), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is missing only on unusual platforms
        asyncio.run(coro)
        return
    uvloop.run(coro)


def uvicorn_server(app: Any, host: str, port: int, **extra: Any) -> uvicorn.Server:
    """A uvicorn server for ``app`` that leaves logging to us and serves no access log."""
    # No proxy headers: the failed-login cap counts the peer's own address, not a claimed one.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        # Stop within seconds on SIGTERM even when clients hold requests open (k8s, compose).
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        **extra,
    )
    return uvicorn.Server(config)
