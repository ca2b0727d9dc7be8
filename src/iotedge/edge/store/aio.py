"""The store interface the edge calls (:class:`AsyncEdgeStore`), and SQLite behind it.

The PostgreSQL backend talks to a server over the network, so the interface is made of
coroutines. :class:`AsyncSqliteStore` puts the embedded store behind it, answering from the
event loop (SQLite answers in microseconds), so both backends run the same tests and the
same callers. :class:`~iotedge.edge.store.sqlite.SqliteStore` keeps the same operations
as plain methods for the tools that open the file directly.
"""

from collections.abc import Iterable, Sequence
from typing import Protocol

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.store.records import AnomalyEvent, ClientAnswer, EventEnd, ObjectAnswer, ObjectRow, Scope
from iotedge.edge.store.sqlite import SqliteStore
from iotedge.edge.store.summaries import Bucket, Summary

__all__ = ["AsyncEdgeStore", "AsyncSqliteStore"]


class AsyncEdgeStore(Protocol):
    """Readings, objects, anomaly events and the outbox, scoped by client on every read."""

    async def close(self) -> None:
        """Release the connections."""

    async def writable(self) -> bool:
        """Whether a write can be taken now (readiness)."""

    async def upsert_objects(self, entries: Iterable[CatalogueEntry], now: float) -> None:
        """Record the catalogue as listed at ``now``."""

    async def objects(self, scope: Scope) -> list[ObjectRow]:
        """The objects visible in ``scope``, by id."""

    async def object(self, object_id: str, scope: Scope) -> ObjectRow | None:
        """One object if it exists and is visible in ``scope``."""

    async def clients(self, scope: Scope) -> list[str]:
        """The clients visible in ``scope`` that have objects."""

    async def insert_readings(self, readings: list[Reading]) -> int:
        """Store a batch idempotently; returns how many were new."""

    async def latest(self, scope: Scope = None) -> list[tuple[str, str, str, float, float]]:
        """(object_id, client, metric, ts, value) of the newest reading per object and metric."""

    async def latest_of(self, object_id: str) -> dict[str, tuple[float, float]]:
        """metric -> (ts, value) of one object's newest readings."""

    async def raw_series(
        self, object_id: str, metric: str, since: float, until: float, limit: int
    ) -> list[tuple[float, float]]:
        """The newest ``limit`` readings in [since, until), ascending."""

    async def summary(self, object_id: str, metric: str, since: float, until: float) -> Summary:
        """Statistics of one object's metric over [since, until)."""

    async def client_summaries(
        self, client: str, since: float, until: float
    ) -> tuple[dict[str, Summary], dict[str, dict[str, Summary]]]:
        """Per-metric statistics across a client's objects, and per object and metric."""

    async def object_answer(
        self, object_id: str, scope: Scope, since: float, until: float
    ) -> ObjectAnswer | None:
        """``object``, ``summary`` of each metric, ``latest_of`` and ``anomaly_counts`` together.

        None when the object does not exist or is not visible in ``scope``.
        """

    async def client_answer(self, client: str, since: float, until: float) -> ClientAnswer:
        """``client_summaries`` and ``objects`` of one client together."""

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
        """Down-sampled series of several objects together."""

    async def recent_values(self, object_id: str, metric: str, limit: int) -> list[float]:
        """The newest ``limit`` values of one metric, oldest first (rule baselines)."""

    async def prune(self, before: float, *, rollups_before: float | None = None) -> int:
        """Delete readings older than ``before``; returns how many.

        Rollups follow the readings unless ``rollups_before`` is given: then the buckets that
        end before it are dropped, and those of the deleted readings are kept.
        """

    async def count_readings(self) -> int:
        """How many readings are stored."""

    async def size_bytes(self) -> int:
        """Size of the store on disk."""

    async def record_transitions(
        self, opened: Sequence[AnomalyEvent], closed: Sequence[EventEnd], *, edge_id: str, now: float
    ) -> list[int]:
        """Write opened and closed events with their outbox rows in one transaction."""

    async def open_anomalies(self) -> list[AnomalyEvent]:
        """Every event still open."""

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
        """Events visible in ``scope``, newest first."""

    async def anomaly_counts(self, object_id: str) -> tuple[int, int]:
        """(open, total) events of one object under its current owner."""


class AsyncSqliteStore:
    """:class:`SqliteStore` behind :class:`AsyncEdgeStore`: each coroutine calls the sync method.

    SQLite answers in microseconds, so the calls stay on the event loop, as they do today.
    """

    def __init__(self, store: SqliteStore) -> None:
        self.sync = store

    async def close(self) -> None:
        """Close the database."""
        self.sync.close()

    async def writable(self) -> bool:
        """Whether a write transaction can be taken now."""
        return self.sync.writable()

    async def upsert_objects(self, entries: Iterable[CatalogueEntry], now: float) -> None:
        """Record the catalogue as listed at ``now``."""
        self.sync.upsert_objects(entries, now)

    async def objects(self, scope: Scope) -> list[ObjectRow]:
        """The objects visible in ``scope``, by id."""
        return self.sync.objects(scope)

    async def object(self, object_id: str, scope: Scope) -> ObjectRow | None:
        """One object if it exists and is visible in ``scope``."""
        return self.sync.object(object_id, scope)

    async def clients(self, scope: Scope) -> list[str]:
        """The clients visible in ``scope`` that have objects."""
        return self.sync.clients(scope)

    async def insert_readings(self, readings: list[Reading]) -> int:
        """Store a batch idempotently; returns how many were new."""
        return self.sync.insert_readings(readings)

    async def latest(self, scope: Scope = None) -> list[tuple[str, str, str, float, float]]:
        """(object_id, client, metric, ts, value) of the newest reading per object and metric."""
        return self.sync.latest(scope)

    async def latest_of(self, object_id: str) -> dict[str, tuple[float, float]]:
        """metric -> (ts, value) of one object's newest readings."""
        return self.sync.latest_of(object_id)

    async def raw_series(
        self, object_id: str, metric: str, since: float, until: float, limit: int
    ) -> list[tuple[float, float]]:
        """The newest ``limit`` readings in [since, until), ascending."""
        return self.sync.raw_series(object_id, metric, since, until, limit)

    async def summary(self, object_id: str, metric: str, since: float, until: float) -> Summary:
        """Statistics of one object's metric over [since, until)."""
        return self.sync.summary(object_id, metric, since, until)

    async def client_summaries(
        self, client: str, since: float, until: float
    ) -> tuple[dict[str, Summary], dict[str, dict[str, Summary]]]:
        """Per-metric statistics across a client's objects, and per object and metric."""
        return self.sync.client_summaries(client, since, until)

    async def object_answer(
        self, object_id: str, scope: Scope, since: float, until: float
    ) -> ObjectAnswer | None:
        """``object``, ``summary`` of each metric, ``latest_of`` and ``anomaly_counts`` together."""
        return self.sync.object_answer(object_id, scope, since, until)

    async def client_answer(self, client: str, since: float, until: float) -> ClientAnswer:
        """``client_summaries`` and ``objects`` of one client together."""
        return self.sync.client_answer(client, since, until)

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
        """Down-sampled series of several objects together."""
        return self.sync.bucketed(object_ids, metric, since, until, step, origin=origin)

    async def recent_values(self, object_id: str, metric: str, limit: int) -> list[float]:
        """The newest ``limit`` values of one metric, oldest first."""
        return self.sync.recent_values(object_id, metric, limit)

    async def prune(self, before: float, *, rollups_before: float | None = None) -> int:
        """Delete readings older than ``before``, and rollups as :meth:`SqliteStore.prune` says."""
        return self.sync.prune(before, rollups_before=rollups_before)

    async def count_readings(self) -> int:
        """How many readings are stored."""
        return self.sync.count_readings()

    async def size_bytes(self) -> int:
        """Size of the database files on disk."""
        return self.sync.size_bytes()

    async def record_transitions(
        self, opened: Sequence[AnomalyEvent], closed: Sequence[EventEnd], *, edge_id: str, now: float
    ) -> list[int]:
        """Write opened and closed events with their outbox rows in one transaction."""
        return self.sync.record_transitions(opened, closed, edge_id=edge_id, now=now)

    async def open_anomalies(self) -> list[AnomalyEvent]:
        """Every event still open."""
        return self.sync.open_anomalies()

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
        """Events visible in ``scope``, newest first."""
        return self.sync.anomalies(
            scope,
            object_id=object_id,
            metric=metric,
            rule=rule,
            state=state,
            since=since,
            until=until,
            limit=limit,
        )

    async def anomaly_counts(self, object_id: str) -> tuple[int, int]:
        """(open, total) events of one object under its current owner."""
        return self.sync.anomaly_counts(object_id)
