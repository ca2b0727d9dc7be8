"""The edge app factory: builds the FastAPI app whose lifespan owns every resource."""

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from iotedge import __version__
from iotedge.apidocs import install_api_docs
from iotedge.config import EdgeSettings
from iotedge.edge.api import anomalies, fleet, grafana, health, notifications, objects, processed, status
from iotedge.edge.api.fastlane import EdgeAPI, ShortLane
from iotedge.edge.auth import KeyRing, KeySource
from iotedge.edge.collector import Collector
from iotedge.edge.container import ContainerMonitor, ContainerSampler
from iotedge.edge.context import EdgeContext
from iotedge.edge.hardening import SecurityMiddleware
from iotedge.edge.http_errors import install_error_handlers
from iotedge.edge.metrics import EdgeMetrics
from iotedge.edge.metrics_http import MetricsMiddleware, metrics_server_for
from iotedge.edge.mqtt import build_bridge
from iotedge.edge.notify import Drainer, MqttChannel, pending_count
from iotedge.edge.notify.backend import PgOutbox
from iotedge.edge.openapi import document_common_answers
from iotedge.edge.ratelimit import RateLimits
from iotedge.edge.rules import RuleEngine, load_rules
from iotedge.edge.shards import ShardOwnership, shard_of
from iotedge.edge.store import SqliteDatabase, SqliteStore
from iotedge.edge.store.aio import AsyncEdgeStore, AsyncSqliteStore
from iotedge.edge.store.cached import CachedSqliteStore
from iotedge.edge.store.choose import open_async_store, shown_store
from iotedge.edge.ui import install_console
from iotedge.edge.upstream import DeviceApiClient
from iotedge.errors import ConfigError, StoreError
from iotedge.tls import client_context

if TYPE_CHECKING:
    from iotedge.edge.store.postgres.leases import KeptWhileAway

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


async def _open_keys(settings: EdgeSettings, clock: Callable[[], float]) -> KeySource:
    """The API keys: the keys file (SQLite mode), or the PostgreSQL store's table.

    Raises:
        StoreError: the PostgreSQL store cannot be read (one line, no password).
    """
    if not settings.store_is_postgres:
        keys = KeyRing(settings.resolved_keys_file, env_keys=settings.api_keys, clock=clock)
        if not len(keys):
            _log.warning(
                "no API keys yet: every data request will get 401; create one with "
                "`iotedge keys create --client CLIENT --keys-file %s`",
                settings.resolved_keys_file,
            )
        return keys
    from iotedge.edge.store.postgres.keys import PgKeyRing

    ring = PgKeyRing(settings.store, env_keys=settings.api_keys, clock=clock)
    await ring.start()
    _log.info(
        "API keys live in the database (`iotedge keys ... --store %s`); the keys file is not read",
        shown_store(settings),
    )
    if not len(ring):
        _log.warning(
            "no API keys yet: every data request will get 401; create one with "
            "`iotedge keys create --client CLIENT --store %s`",
            shown_store(settings),
        )
    return ring


def _shard_leases(
    settings: EdgeSettings, registry: CollectorRegistry, collector: Callable[[], Collector]
) -> "KeptWhileAway | None":
    """The shard leases of a collector on a PostgreSQL store (None: this process polls everything).

    When a refresh takes shards another collector held, ``collector()`` is told to resume
    their clients' open anomaly events from the store before polling them.
    """
    if settings.role == "api" or not settings.store_is_postgres:
        return None
    from iotedge.edge.store.postgres.leases import KeptWhileAway, PgShardLeases, register_shard_metrics

    held: set[int] = set()

    def changed(owned: frozenset[int]) -> None:
        taken = owned - held
        held.clear()
        held.update(owned)
        if taken:
            count = settings.shards
            collector().take_over(lambda client: shard_of(client, count) in taken)

    leases = PgShardLeases(
        settings.store, interval_s=settings.poll_interval, shards=settings.shards, on_change=changed
    )
    register_shard_metrics(leases, registry)
    return KeptWhileAway(leases)


async def _close_keys(keys: KeySource) -> None:
    """Write the keys' last-use times and release what they hold."""
    keys.flush_usage()
    aclose = getattr(keys, "aclose", None)
    if aclose is not None:
        await aclose()


def _on_sighup(keys: KeySource) -> Callable[[], None]:
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


def _path_of(store: SqliteStore | AsyncEdgeStore) -> str:
    if isinstance(store, SqliteStore):
        return str(store.path)
    if isinstance(store, AsyncSqliteStore):
        return str(store.sync.path)
    return str(getattr(store, "url", "the given store"))


async def _measure_store(store: AsyncEdgeStore, metrics: EdgeMetrics, every: float = 15.0) -> None:
    """Keep the store size gauge current (a network store is not asked from a scrape)."""
    while True:
        try:
            metrics.store_size.set(await store.size_bytes())
        except StoreError as exc:
            _log.debug("store size unknown: %s", exc)
        await asyncio.sleep(every)


def _with_answer_cache(
    settings: EdgeSettings, db: AsyncEdgeStore, given: SqliteStore | AsyncEdgeStore | None
) -> AsyncEdgeStore:
    """``db`` with its statistics answers cached (:mod:`iotedge.edge.store.cached`), or as it is.

    Cached only where this process makes every write: a SQLite store it opened itself, in
    the ``all`` role. The ``api`` role serves what other processes write (on PostgreSQL, or
    a SQLite file a collector writes), so it reads the store on every request.
    """
    mine = type(db) is AsyncSqliteStore and not isinstance(given, AsyncSqliteStore)
    if settings.answer_cache and settings.role == "all" and mine and isinstance(db, AsyncSqliteStore):
        return CachedSqliteStore(db.sync)  # every write of this process goes through it
    return db


def create_app(
    settings: EdgeSettings,
    *,
    upstream_session: aiohttp.ClientSession | None = None,
    clock: Callable[[], float] = time.time,
    run_collector: bool = True,
    store: SqliteStore | AsyncEdgeStore | None = None,
    shards: ShardOwnership | None = None,
) -> FastAPI:
    """Build an edge app for ``settings``.

    ``settings.role`` decides what runs: ``all`` (the API and the collector), ``api`` (the
    API only: no collector loop, no MQTT ingest, no notification drainer) or ``collector``
    (the collector, MQTT ingest and the drainer, with only ``/healthz`` and ``/readyz``
    over HTTP). The metrics listener runs in every role.

    Args:
        settings: validated edge settings.
        upstream_session: aiohttp session for the device API (tests faking an upstream we do not own).
        clock: wall clock used for reading times, windows and staleness.
        run_collector: start the polling loop (tests may drive ``collector.refresh()`` instead).
        store: the store, already opened and checked (the CLI opens it before serving so a
            bad file is one clear error); the lifespan opens the one ``settings`` names when
            None. The lifespan closes it.
        shards: which clients' objects this collector polls (default: all of them).
    """
    polling = settings.role != "api"

    edge_id = settings.resolved_edge_id
    metrics = EdgeMetrics(
        registry=CollectorRegistry(),
        edge_id=edge_id,
        clock=clock,
        per_object=settings.metrics_per_object,
    )
    # Built here, so a bad token file or certificate fails at start with one clear line.
    metrics_server = metrics_server_for(settings, metrics.registry, metrics.record_connection_event)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        rules = load_rules(settings.rules_file)
        keys = await _open_keys(settings, clock)
        # One owner of the SQLite store's connections: the drainer and the notification views
        # share them (see iotedge.edge.store.connection for why one writer and one reader).
        db: AsyncEdgeStore
        if isinstance(store, SqliteStore):
            db = AsyncSqliteStore(store)
        else:
            db = store if store is not None else await open_async_store(settings)
        db = _with_answer_cache(settings, db, store)
        local = db.sync if isinstance(db, AsyncSqliteStore) else None
        notifying = settings.notify
        known = await db.objects(None) if polling else []
        bridge = (
            build_bridge(
                settings,
                registry=metrics.registry,
                known=known,
                sink=lambda readings, new, now: collector.ingest(readings, new, now=now),
                summaries=db.client_summaries,
                clients=lambda: {entry.client for entry in collector.catalogue.values()},
                on_connected=lambda: drainer.channel_back("mqtt") if drainer is not None else None,
                clock=clock,
            )
            if settings.mqtt_broker and polling
            else None
        )
        outbox: SqliteDatabase | PgOutbox | None = (
            local.database
            if local is not None
            else PgOutbox(settings.store)
            if settings.store_is_postgres
            else None
        )
        drainer = (
            Drainer(
                outbox,
                notifying,
                clock=clock,
                on_outcome=metrics.record_notification,
                mqtt_channel=MqttChannel(publisher=bridge, topic_for=bridge.layout.anomalies)
                if bridge is not None
                else None,
            )
            if outbox is not None and notifying.enabled_channels() and polling
            else None
        )
        upstream = DeviceApiClient(
            settings.upstream,
            timeout=settings.upstream_timeout,
            session=upstream_session,
            max_connections=settings.poll_concurrency,
            on_outcome=metrics.observe_upstream,
            verify=client_context(settings.upstream_ca) if settings.upstream_ca else True,
        )
        latest = await db.latest() if polling else []
        engine = RuleEngine(
            rules,
            poll_interval=settings.poll_interval,
            open_events=await db.open_anomalies() if polling else [],
            last_seen={(object_id, metric): ts for object_id, _, metric, ts, _ in latest},
        )
        leases = _shard_leases(settings, metrics.registry, lambda: collector) if shards is None else None
        collector = Collector(
            upstream=upstream,
            store=db,
            engine=engine,
            edge_id=edge_id,
            interval=settings.poll_interval,
            concurrency=settings.poll_concurrency,
            retention=settings.retention,
            rollup_retention=settings.rollup_retention,
            clock=clock,
            metrics=metrics,
            on_anomaly=drainer.wake if drainer is not None else None,
            clients=frozenset(settings.clients) or None,
            shards=shards if shards is not None else leases,
            buffer_limit=settings.store_buffer_readings,
            known=known,
            latest=latest,
        )
        del latest
        monitor = ContainerMonitor(ContainerSampler(disk_path=settings.data_dir))
        metrics.bind(
            container=lambda: monitor.latest,
            latest_values=collector.latest_values,
            # Only the owned objects' events: with several collectors each counts its own.
            open_anomalies=lambda: engine.open_by_label(collector.owned_catalogue()),
        )
        sqlite_store = db.sync if isinstance(db, AsyncSqliteStore) else None
        if sqlite_store is not None:
            metrics.store_size.set_function(lambda: float(sqlite_store.size_bytes()))
        metrics.objects.set_function(lambda: float(len(collector.catalogue)))
        if local is not None:
            sqlite_outbox = local.database
            metrics.notifications_pending.set_function(lambda: float(pending_count(sqlite_outbox)))
        elif drainer is not None:
            # On PostgreSQL the count is the drainer's, from its last pass (NaN before it).
            pg_drainer = drainer
            metrics.notifications_pending.set_function(
                lambda: float("nan") if pg_drainer.pending is None else float(pg_drainer.pending)
            )
        ctx = EdgeContext(
            settings=settings,
            edge_id=edge_id,
            store=db,
            keys=keys,
            upstream=upstream,
            engine=engine,
            collector=collector,
            clock=clock,
            notifications_db=local.database if local is not None else None,
            drainer=drainer,
            mqtt=bridge,
            limits=RateLimits(
                rate=settings.rate_limit, burst=settings.rate_burst, auth_failures=settings.auth_failures
            ),
        )
        app.state.ctx = ctx  # for tests and the CLI; requests read the lifespan state
        loops: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {"iotedge.edge.container": monitor.run}
        if sqlite_store is None:
            loops["iotedge.edge.store_size"] = lambda: _measure_store(db, metrics)
        if run_collector and polling:
            loops["iotedge.edge.collector"] = collector.run
        if drainer is not None:
            loops["iotedge.edge.outbox"] = drainer.run
        if bridge is not None:
            loops["iotedge.edge.mqtt"] = bridge.run
        if leases is not None:
            await leases.start()  # the first share, before the first cycle
        supervisor = asyncio.create_task(_supervise(loops), name="iotedge.edge.supervisor")
        if polling:
            _log.info(
                "edge %s (role %s): polling %s every %.3g s, store %s, %d API keys",
                edge_id,
                settings.role,
                settings.upstream,
                settings.poll_interval,
                shown_store(settings) if store is None else _path_of(store),
                len(keys),
            )
        else:
            _log.info(
                "edge %s (role api): serving store %s, not polling, %d API keys",
                edge_id,
                shown_store(settings) if store is None else _path_of(store),
                len(keys),
            )
        if settings.metrics_port:
            await metrics_server.start()  # logs its own URL
        reload_on_hangup = _on_sighup(keys)
        try:
            yield {"ctx": ctx, "container": lambda: monitor.latest}  # container: for GET /status
        finally:
            reload_on_hangup()
            await _close_keys(keys)
            if settings.metrics_port:
                await metrics_server.stop()
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            if leases is not None:
                await leases.close()  # gives the shards back at once
            await upstream.aclose()
            if drainer is not None:
                await drainer.aclose()
            await db.close()

    app = EdgeAPI(
        title="iotedge edge API",
        version=__version__,
        description=(
            "Statistics, series and anomalies of the IoT objects this edge polls. "
            "Send your client's key in the `x-api-key` header; you see only your client's data."
        ),
        lifespan=lifespan,
        openapi_url=None if settings.role == "collector" else "/openapi.json",
        docs_url=None,  # served from the package by install_api_docs: no CDN, works offline
        redoc_url=None,
        # The edge exports Prometheus metrics, not OpenTelemetry; FastAPI's native telemetry
        # would otherwise look up the global OTel providers (and the environment) per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    if settings.role == "collector":
        # Probes only: the data API is the api role's.
        install_error_handlers(app)
        app.add_middleware(SecurityMiddleware, max_body=settings.max_body, max_url=settings.max_url)
        app.add_middleware(MetricsMiddleware, metrics=metrics)
        app.state.metrics = metrics
        app.include_router(health.router)
        return app
    install_api_docs(app)
    install_error_handlers(app)
    document_common_answers(app)
    app.add_middleware(SecurityMiddleware, max_body=settings.max_body, max_url=settings.max_url)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts 413/414 answers too
    # Plain statistics GETs, before the stack above, with its effects (iotedge.edge.api.fastlane).
    app.short_lane = ShortLane(app, metrics, settings.max_url)
    app.state.metrics = metrics
    # grafana serves GET / (welcome and Grafana's "Save & test") and the JSON data source protocol.
    for module in (health, processed, objects, anomalies, notifications, fleet, grafana, status):
        app.include_router(module.router)
    install_console(app)
    return app
