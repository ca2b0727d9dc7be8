"""The edge app factory: builds the FastAPI app whose lifespan owns every resource."""

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
from fastapi import FastAPI

from iotedge import __version__
from iotedge.config import EdgeSettings
from iotedge.edge.api import anomalies, health, objects, processed
from iotedge.edge.auth import KeyRing
from iotedge.edge.collector import Collector
from iotedge.edge.context import EdgeContext
from iotedge.edge.hardening import SecurityMiddleware
from iotedge.edge.http_errors import install_error_handlers
from iotedge.edge.ratelimit import RateLimits
from iotedge.edge.rules import RuleEngine, load_rules
from iotedge.edge.store import Store
from iotedge.edge.upstream import DeviceApiClient
from iotedge.errors import ConfigError
from iotedge.tls import client_context

__all__ = ["STORE_FILENAME", "create_app"]

_log = logging.getLogger(__name__)

STORE_FILENAME = "iotedge.sqlite3"


async def _supervise(loops: dict[str, Callable[[], Coroutine[Any, Any, None]]]) -> None:
    """Run the named background loops; if one crashes, log it and restart it after a pause."""

    async def guarded(name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a background loop must not take the edge down
                _log.exception("background loop %s crashed; restarting in 1 s", name)
                await asyncio.sleep(1.0)

    async with asyncio.TaskGroup() as group:
        for name, loop in loops.items():
            group.create_task(guarded(name, loop), name=name)


def _on_sighup(keys: KeyRing) -> Callable[[], None]:
    """Re-read the keys file on SIGHUP; returns the function that removes the handler."""

    def reload() -> None:
        try:
            keys.reload()
        except ConfigError as exc:
            _log.error("SIGHUP: keeping the previous keys: %s", exc)
            return
        _log.info("SIGHUP: reloaded %d API keys", len(keys))

    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
        return lambda: None

    def remove() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return remove


def create_app(
    settings: EdgeSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
    run_collector: bool = True,
) -> FastAPI:
    """Build an edge app for ``settings``.

    Args:
        settings: validated edge settings.
        transport: httpx transport for the device API (tests faking an upstream we do not own).
        clock: wall clock used for reading times, windows and staleness.
        run_collector: start the polling loop (tests may drive ``collector.refresh()`` instead).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        edge_id = settings.resolved_edge_id
        rules = load_rules(settings.rules_file)
        keys = KeyRing(settings.resolved_keys_file, env_keys=settings.api_keys, clock=clock)
        if not len(keys):
            _log.warning(
                "no API keys yet: every data request will get 401; create one with "
                "`iotedge keys create --client CLIENT --keys-file %s`",
                settings.resolved_keys_file,
            )
        store = Store(settings.data_dir / STORE_FILENAME)
        upstream = DeviceApiClient(
            settings.upstream,
            timeout=settings.upstream_timeout,
            transport=transport,
            max_connections=settings.poll_concurrency,
            verify=client_context(settings.upstream_ca) if settings.upstream_ca else True,
        )
        engine = RuleEngine(rules, store=store, edge_id=edge_id, poll_interval=settings.poll_interval)
        collector = Collector(
            upstream=upstream,
            store=store,
            engine=engine,
            interval=settings.poll_interval,
            concurrency=settings.poll_concurrency,
            retention=settings.retention,
            clock=clock,
        )
        ctx = EdgeContext(
            settings=settings,
            edge_id=edge_id,
            store=store,
            keys=keys,
            upstream=upstream,
            engine=engine,
            collector=collector,
            clock=clock,
            limits=RateLimits(
                rate=settings.rate_limit, burst=settings.rate_burst, auth_failures=settings.auth_failures
            ),
        )
        app.state.ctx = ctx  # for tests and the CLI; requests read the lifespan state
        loops: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
        if run_collector:
            loops["iotedge.edge.collector"] = collector.run
        supervisor = asyncio.create_task(_supervise(loops), name="iotedge.edge.supervisor")
        _log.info(
            "edge %s: polling %s every %.3g s, store %s, %d API keys",
            edge_id,
            settings.upstream,
            settings.poll_interval,
            store.path,
            len(keys),
        )
        reload_on_hangup = _on_sighup(keys)
        try:
            yield {"ctx": ctx}
        finally:
            reload_on_hangup()
            keys.flush_usage()
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            await upstream.aclose()
            store.close()

    app = FastAPI(
        title="iotedge edge API",
        version=__version__,
        description=(
            "Statistics, series and anomalies of the IoT objects this edge polls. "
            "Send your client's key in the `x-api-key` header; you see only your client's data."
        ),
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(SecurityMiddleware, max_body=settings.max_body, max_url=settings.max_url)
    for module in (health, processed, objects, anomalies):
        app.include_router(module.router)

    @app.get("/", tags=["health"])
    async def root() -> dict[str, str]:
        """Welcome, and where to look next (no key needed)."""
        return {
            "message": "iotedge edge API",
            "hint": "send x-api-key; /objects lists your objects, /docs the API",
        }

    return app
