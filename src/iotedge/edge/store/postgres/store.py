"""The PostgreSQL store: psycopg 3 (async) over a connection pool, the same semantics as SQLite.

Every read that returns client data takes a ``Scope`` or is limited to an object's current
owner (``readings.client`` = ``objects.client``), as in the SQLite store. Statistics
combine per-minute and per-hour rollups with the raw rows of a window's partial minutes
(``postgres/windows.py``); a batch of readings goes in by binary COPY, then one statement
moves it into the readings, the rollups and the latest values in the same transaction.
"""

import json
import math
from collections.abc import AsyncIterator, Iterable, Sequence, Set
from contextlib import asynccontextmanager
from dataclasses import astuple, replace
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.store.events import anomaly_json, event_conditions
from iotedge.edge.store.postgres import windows
from iotedge.edge.store.postgres.rollups import LEVELS, expire_sql, ingest_sql, prune_sql
from iotedge.edge.store.readings import (
    client_answer_of,
    client_objects_of,
    client_objects_sql,
    object_answer_of,
    object_answer_sql,
    summaries_of,
)
from iotedge.edge.store.records import AnomalyEvent, ClientAnswer, EventEnd, ObjectAnswer, ObjectRow, Scope
from iotedge.edge.store.rollups import expiry_cut, floor_to
from iotedge.edge.store.summaries import Bucket, Summary, clamped_mean
from iotedge.errors import StoreError, StoreUnavailable

if TYPE_CHECKING:
    from iotedge.edge.notify.state import NotificationRow

__all__ = ["PostgresStore"]

Conn = psycopg.AsyncConnection[tuple[Any, ...]]

_COLUMNS = (
    "id, object_id, client, type, metric, rule, severity, value, threshold, message, "
    "started_at, ended_at, last_value"
)
_NAMES = _COLUMNS.split(", ")
_OWNER_OF = "r.client = (SELECT client FROM objects WHERE id = %s)"
_OWNED = "JOIN objects o ON o.id = r.object_id AND o.client = r.client"
# A batch goes in by binary COPY into a session's temporary table, then one statement moves
# it into ``readings``, the rollups and ``latest`` (postgres/rollups.py).
_INCOMING = (
    'CREATE TEMP TABLE IF NOT EXISTS incoming (object_id TEXT COLLATE "C", metric TEXT COLLATE "C", '
    'ts DOUBLE PRECISION, value DOUBLE PRECISION, client TEXT COLLATE "C", n INTEGER) ON COMMIT DELETE ROWS'
)
_COPY = "COPY incoming (object_id, metric, ts, value, client, n) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ("text", "text", "float8", "float8", "text", "int4")
_UPDATE_LATEST = (
    "ON CONFLICT (object_id, metric) DO UPDATE SET ts = excluded.ts, value = excluded.value, "
    "client = excluded.client WHERE excluded.ts >= latest.ts"
)
# The usual batch has one reading per (object, metric). Otherwise the newest one wins and,
# on a tie, the later one (as SQLite's row-by-row upsert does).
_LATEST_UNIQUE = (
    "INSERT INTO latest (object_id, metric, ts, value, client) "  # noqa: S608
    f"SELECT object_id, metric, ts, value, client FROM incoming ORDER BY object_id, metric {_UPDATE_LATEST}"
)
_LATEST_NEWEST = (
    "INSERT INTO latest (object_id, metric, ts, value, client) "  # noqa: S608
    "SELECT DISTINCT ON (object_id, metric) object_id, metric, ts, value, client "
    f"FROM incoming ORDER BY object_id, metric, ts DESC, n DESC {_UPDATE_LATEST}"
)
_CLIENT_OBJECTS = client_objects_sql("%s")
_INGEST_UNIQUE = ingest_sql(_LATEST_UNIQUE, unique=True)
_INGEST_NEWEST = ingest_sql(_LATEST_NEWEST, unique=False)


def _scope(scope: Scope, column: str) -> tuple[str, list[Any]]:
    """A SQL condition restricting ``column`` to the scope, and its parameters."""
    if scope is None:
        return "TRUE", []
    return f"{column} = ANY(%s)", [sorted(scope)]


def _event(row: Sequence[Any]) -> AnomalyEvent:
    return AnomalyEvent(**dict(zip(_NAMES, row, strict=True)))


def _on(conn: Conn) -> windows.AsyncQuery:
    """Runs read-only statements on ``conn`` (several in one transaction)."""

    async def query(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()

    return query


class PostgresStore:
    """The edge's PostgreSQL store; it implements :class:`iotedge.edge.store.aio.AsyncEdgeStore`.

    Build it with :func:`iotedge.edge.store.postgres.open_pg_store`, which checks the server
    and applies the migrations first.

    Args:
        pool: an open connection pool on the store's database.
        url: the database, without its password (for messages).
    """

    def __init__(self, pool: AsyncConnectionPool[Conn], *, url: str) -> None:
        self._pool = pool
        self.url = url

    @asynccontextmanager
    async def _conn(self, *, write: bool = False) -> AsyncIterator[Conn]:
        """A pooled connection, in one transaction; any database error becomes a StoreError.

        Losing the server (no connection within the pool's timeout, a connection refused or
        cut, the database shut down) is :class:`StoreUnavailable`: the API answers 503
        and the collector buffers its readings until the server is back.
        """
        kind = "write" if write else "read"
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:  # psycopg_pool.PoolTimeout is one too
            first = str(exc).strip().splitlines()
            reason = first[0] if first else type(exc).__name__
            raise StoreUnavailable(f"store {kind} failed on {self.url} (unavailable): {reason}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"store {kind} failed on {self.url}: {exc}".strip()) from exc

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._conn() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def close(self) -> None:
        """Close the pool's connections."""
        await self._pool.close()

    async def notification_rows(self, clients: Set[str] | None, limit: int = 100) -> "list[NotificationRow]":
        """The newest notification deliveries first, only for ``clients`` (``None``: everyone)."""
        from iotedge.edge.notify.state import (
            pg_notification_rows,
        )  # notify imports the store: import at call time

        try:
            return await pg_notification_rows(self._pool, clients, limit)
        except psycopg.Error as exc:
            raise StoreError(f"store read failed on {self.url}: {exc}".strip()) from exc

    async def notifications_pending(self) -> int:
        """Notifications not yet delivered: pending deliveries plus outbox rows not triaged."""
        from iotedge.edge.notify.state import (
            pg_pending_count,
        )  # notify imports the store: import at call time

        try:
            return await pg_pending_count(self._pool)
        except psycopg.Error as exc:
            raise StoreError(f"store read failed on {self.url}: {exc}".strip()) from exc

    async def writable(self) -> bool:
        """Whether a connection and a transaction can be taken now (for readiness)."""
        try:
            await self._query("SELECT 1")
        except StoreError:
            return False
        return True

    # -- objects
    async def upsert_objects(self, entries: Iterable[CatalogueEntry], now: float) -> None:
        """Record the catalogue as seen at ``now`` (an object's owner is the newest listing's)."""
        rows = [(e.id, e.client, e.type, now, now) for e in entries]
        if not rows:
            return
        async with self._conn(write=True) as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO objects (id, client, type, first_seen, last_listed) VALUES (%s,%s,%s,%s,%s) "
                "ON CONFLICT (id) DO UPDATE SET client=excluded.client, type=excluded.type, "
                "last_listed=excluded.last_listed",
                rows,
            )

    async def objects(self, scope: Scope) -> list[ObjectRow]:
        """The objects visible in ``scope``, by id."""
        condition, params = _scope(scope, "client")
        rows = await self._query(
            f"SELECT id, client, type, first_seen, last_listed FROM objects WHERE {condition} ORDER BY id",  # noqa: S608
            params,
        )
        return [ObjectRow(*row) for row in rows]

    async def object(self, object_id: str, scope: Scope) -> ObjectRow | None:
        """One object if it exists and is visible in ``scope``."""
        rows = await self._query(
            "SELECT id, client, type, first_seen, last_listed FROM objects WHERE id = %s", (object_id,)
        )
        if not rows:
            return None
        row = ObjectRow(*rows[0])
        return row if scope is None or row.client in scope else None

    async def clients(self, scope: Scope) -> list[str]:
        """The clients visible in ``scope`` that have objects."""
        condition, params = _scope(scope, "client")
        sql = f"SELECT DISTINCT client FROM objects WHERE {condition} ORDER BY client"  # noqa: S608
        return [row[0] for row in await self._query(sql, params)]

    # -- readings
    async def insert_readings(self, readings: list[Reading]) -> int:
        """Store a batch in one transaction; duplicates (same object, metric, time) are ignored.

        Each reading keeps the client it names (the owner when it was taken). Returns how
        many readings were new.
        """
        if not readings:
            return 0
        async with self._conn(write=True) as conn:
            await conn.execute(_INCOMING)
            async with conn.cursor().copy(_COPY) as copy:
                copy.set_types(_COPY_TYPES)
                for n, r in enumerate(readings):
                    await copy.write_row((r.object_id, r.metric, r.ts, r.value, r.client, n))
            unique = len({(r.object_id, r.metric) for r in readings}) == len(readings)
            cur = await conn.execute(_INGEST_UNIQUE if unique else _INGEST_NEWEST)
            row = await cur.fetchone()
            fresh = int(row[0]) if row is not None else 0
        return max(fresh, 0)

    async def latest(self, scope: Scope = None) -> list[tuple[str, str, str, float, float]]:
        """(object_id, client, metric, ts, value) of the newest reading per object and metric."""
        condition, params = _scope(scope, "o.client")
        rows = await self._query(
            f"SELECT r.object_id, o.client, r.metric, r.ts, r.value FROM latest r {_OWNED} WHERE {condition}",  # noqa: S608
            params,
        )
        return [(a, b, c, d, e) for a, b, c, d, e in rows]

    async def latest_of(self, object_id: str) -> dict[str, tuple[float, float]]:
        """metric -> (ts, value) of one object's newest readings."""
        rows = await self._query(
            f"SELECT r.metric, r.ts, r.value FROM latest r {_OWNED} WHERE r.object_id = %s",  # noqa: S608
            (object_id,),
        )
        return {metric: (ts, value) for metric, ts, value in rows}

    async def raw_series(
        self, object_id: str, metric: str, since: float, until: float, limit: int
    ) -> list[tuple[float, float]]:
        """The newest ``limit`` readings in [since, until), ascending in time."""
        rows = await self._query(
            "SELECT r.ts, r.value FROM readings r WHERE r.object_id = %s AND r.metric = %s "  # noqa: S608
            f"AND r.ts >= %s AND r.ts < %s AND {_OWNER_OF} ORDER BY r.ts DESC LIMIT %s",
            (object_id, metric, since, until, object_id, limit),
        )
        return [(ts, value) for ts, value in reversed(rows)]

    async def summary(self, object_id: str, metric: str, since: float, until: float) -> Summary:
        """Statistics of one object's metric over [since, until) (rollups plus raw edges)."""
        return await windows.summary(self._query, object_id, metric, since, until)

    async def client_summaries(
        self, client: str, since: float, until: float
    ) -> tuple[dict[str, Summary], dict[str, dict[str, Summary]]]:
        """Per-metric statistics across a client's objects, and per object and metric."""
        moments = await windows.client_moments(self._query, client, since, until)
        latest = {
            (object_id, metric): (ts, value)
            for object_id, _, metric, ts, value in await self.latest(frozenset({client}))
            if since <= ts < until
        }
        return summaries_of(moments, latest)

    async def object_answer(
        self, object_id: str, scope: Scope, since: float, until: float
    ) -> ObjectAnswer | None:
        """``object``, ``summary`` of each metric, ``latest_of`` and ``anomaly_counts`` in two statements.

        None when the object does not exist or is not visible in ``scope``.
        """
        condition, params = _scope(scope, "o.client")
        async with self._conn() as conn:
            query = _on(conn)
            found = object_answer_of(
                await query(object_answer_sql(condition, "%s"), [object_id, object_id, *params])
            )
            if found is None:
                return None
            obj, (open_count, total), latest, metrics = found
            summaries = (
                await windows.object_summaries(query, obj.id, obj.client, metrics, since, until)
                if metrics
                else {}
            )
        return ObjectAnswer(obj, summaries, latest, open_count, total)

    async def client_answer(self, client: str, since: float, until: float) -> ClientAnswer:
        """``client_summaries`` and ``objects`` of one client, in two statements on one connection."""
        async with self._conn() as conn:
            query = _on(conn)
            moments = await windows.client_moments(query, client, since, until)
            objects, latest = client_objects_of(await query(_CLIENT_OBJECTS, (client,)))
        return client_answer_of(moments, objects, latest, since, until)

    async def bucketed(
        self,
        object_ids: Sequence[str],
        metric: str,
        since: float,
        until: float,
        step: float,
        *,
        origin: float | None = None,
    ) -> list[Bucket]:
        """Down-sampled series of several objects together on the grid ``origin + k * step``.

        A grid of whole minutes is read from the rollups between the window's raw edges.
        Bucket numbers truncate toward zero, as SQLite's ``CAST(... AS INTEGER)`` does, so
        both backends put every reading in the same bucket.
        """
        start = since if origin is None else origin
        rows = await windows.bucket_rows(self._query, list(object_ids), metric, since, until, step, start)
        return [
            Bucket(start + b * step, clamped_mean(total, int(count), low, high), low, high, int(count))
            for b, total, low, high, count in rows
            if count
        ]

    async def recent_values(self, object_id: str, metric: str, limit: int) -> list[float]:
        """The newest ``limit`` values of one metric under its current owner, oldest first."""
        rows = await self._query(
            f"SELECT r.value FROM readings r WHERE r.object_id = %s AND r.metric = %s AND {_OWNER_OF} "  # noqa: S608
            "ORDER BY r.ts DESC LIMIT %s",
            (object_id, metric, object_id, limit),
        )
        return [row[0] for row in reversed(rows)]

    async def prune(self, before: float, *, rollups_before: float | None = None) -> int:
        """Delete readings older than ``before``; returns how many.

        Rollups follow the readings unless ``rollups_before`` is given, as in SQLite
        (:meth:`iotedge.edge.store.sqlite.SqliteStore.prune`).
        """
        if math.isnan(before):
            return 0
        async with self._conn(write=True) as conn:
            cur = await conn.execute("DELETE FROM readings WHERE ts < %s", (before,))
            removed = max(cur.rowcount, 0)
            if rollups_before is not None:
                if not math.isnan(rollups_before):
                    cut = expiry_cut(rollups_before) if math.isfinite(rollups_before) else rollups_before
                    for table, _ in LEVELS:
                        await conn.execute(expire_sql(table), {"cut": cut})
                return removed
            if not removed:
                return 0
            for table, step in LEVELS:
                if not math.isfinite(before):
                    await conn.execute(f"DELETE FROM {table}")  # noqa: S608
                    continue
                for statement in prune_sql(table, step):
                    await conn.execute(statement, {"cut": floor_to(before, step)})
            return removed

    async def count_readings(self) -> int:
        """How many readings are stored."""
        return int((await self._query("SELECT COUNT(*) FROM readings"))[0][0])

    async def size_bytes(self) -> int:
        """Size of the store's database on the server's disk."""
        return int((await self._query("SELECT pg_database_size(current_database())"))[0][0])

    # -- anomaly events and the outbox
    async def record_transitions(
        self,
        opened: Sequence[AnomalyEvent],
        closed: Sequence[EventEnd],
        *,
        edge_id: str,
        now: float,
    ) -> list[int]:
        """Open and close anomaly events, writing their outbox rows in the same transaction.

        An opened event that already has ``ended_at`` gets both outbox rows. Returns the
        opened events' ids.
        """
        async with self._conn(write=True) as conn:
            for event in opened:
                stored = event if event.last_value is not None else replace(event, last_value=event.value)
                marks = ",".join(["%s"] * len(_NAMES))
                await conn.execute(
                    f"INSERT INTO anomalies ({_COLUMNS}) VALUES ({marks})",  # noqa: S608
                    astuple(stored),
                )
                await _outbox(conn, event.id, "opened", edge_id, now)
                if event.ended_at is not None:
                    await _outbox(conn, event.id, "resolved", edge_id, now)
            for end in closed:
                await conn.execute(
                    "UPDATE anomalies SET ended_at = %s, last_value = COALESCE(%s, last_value) "
                    "WHERE id = %s AND ended_at IS NULL",
                    (end.ended_at, end.last_value, end.event_id),
                )
                await _outbox(conn, end.event_id, "resolved", edge_id, now)
        return [event.id for event in opened]

    async def open_anomalies(self) -> list[AnomalyEvent]:
        """Every event still open (to resume rule state after a restart)."""
        sql = f"SELECT {_COLUMNS} FROM anomalies WHERE ended_at IS NULL"  # noqa: S608
        return [_event(row) for row in await self._query(sql)]

    async def anomalies(
        self,
        scope: Scope,
        *,
        object_id: str | Sequence[str] | None = None,
        metric: str | Sequence[str] | None = None,
        rule: str | None = None,
        state: str = "all",
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[AnomalyEvent]:
        """Events visible in ``scope`` (by the client that owned the device then), newest first."""
        condition, args = _scope(scope, "client")
        where = [condition]
        for column, value in (("object_id", object_id), ("metric", metric), ("rule", rule)):
            if value is None:
                continue
            where.append(f"{column} = ANY(%s)")
            args.append([value] if isinstance(value, str) else list(value))
        conditions, values = event_conditions(state, since, until, mark="%s")
        where += conditions
        args += values
        sql = (
            f"SELECT {_COLUMNS} FROM anomalies WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY started_at DESC, id DESC LIMIT %s"
        )
        return [_event(row) for row in await self._query(sql, [*args, limit])]

    async def anomaly_counts(self, object_id: str) -> tuple[int, int]:
        """(open, total) anomaly events of one object, under its current owner."""
        row = (
            await self._query(
                "SELECT COUNT(*) FILTER (WHERE a.ended_at IS NULL), COUNT(*) FROM anomalies a "
                "JOIN objects o ON o.id = a.object_id AND o.client = a.client WHERE a.object_id = %s",
                (object_id,),
            )
        )[0]
        return int(row[0]), int(row[1])


async def _outbox(conn: Conn, event_id: int, transition: str, edge_id: str, now: float) -> None:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM anomalies WHERE id = %s", (event_id,))  # noqa: S608
    row = await cur.fetchone()
    if row is None:
        return
    event = _event(row)
    await conn.execute(
        "INSERT INTO outbox (event_id, transition, client, severity, payload, idempotency_key, created_at) "
        "VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (idempotency_key) DO NOTHING",
        (
            event_id,
            transition,
            event.client,
            event.severity,
            json.dumps(anomaly_json(event, edge_id=edge_id)),
            f"{edge_id}:{event_id}:{transition}",
            now,
        ),
    )
