"""How iotedge runs an ASGI app: one uvicorn server configuration and the event loop choice."""

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import uvicorn

from iotedge.config import EdgeSettings
from iotedge.guard import Limits, guarded_protocol

__all__ = ["GRACEFUL_SHUTDOWN_S", "edge_limits", "run_async", "uvicorn_server"]


def run_async(coro: Coroutine[Any, Any, None], *, tls: bool = False) -> None:
    """Run ``coro`` on uvloop when installed (uvicorn[standard] brings it), else asyncio.

    With ``tls``, on asyncio: the TLS handshake is ours (``iotedge.guard``), and it needs a
    transport that can be paused before it reads, which uvloop's are not.
    """
    if tls:
        asyncio.run(coro)
        return
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is missing only on unusual platforms
        asyncio.run(coro)
        return
    uvloop.run(coro)


GRACEFUL_SHUTDOWN_S = 3
# An idle keep-alive connection is closed after this: longer than common clients' own expiry
# (httpx 5 s, aiohttp 15 s; uvicorn's default is 5 s), so a client never sends its next
# request on a connection the server is closing at that instant ("server disconnected without
# a response"). Idle connections are the first evicted at the connection cap: no room lost.
KEEP_ALIVE_S = 30
DEFAULT_LIMITS = Limits()


def edge_limits(settings: EdgeSettings) -> Limits:
    """The connection limits of the edge API."""
    return Limits(
        max_head=settings.max_header,
        max_url=settings.max_url,
        head_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=settings.max_connections,
    )


def uvicorn_server(
    app: Any,
    host: str,
    port: int,
    *,
    limits: Limits = DEFAULT_LIMITS,
    tls: ssl.SSLContext | None = None,
    on_event: Callable[[str], None] | None = None,
    **extra: Any,
) -> uvicorn.Server:
    """A uvicorn server for ``app`` that leaves logging to us and serves no access log.

    Connections go through :mod:`iotedge.guard` (head size, slow clients, connection cap,
    and TLS with ``tls``, whose failed handshakes are logged and passed to ``on_event``).
    """
    # No proxy headers: the failed-login cap counts the peer's own address, not a claimed one.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits, tls=tls, on_event=on_event),
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        # Stop within seconds on SIGTERM even when clients hold requests open (k8s, compose).
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_keep_alive=KEEP_ALIVE_S,
        **extra,
    )
    return uvicorn.Server(config)
