"""The store interface the rest of the edge depends on.

The methods are synchronous in this release: the SQLite backend answers from the event
loop in microseconds. The same operations as coroutines are
:class:`iotedge.edge.store.aio.AsyncEdgeStore`, which the PostgreSQL backend
(``store/postgres/``, issue 15) implements; the edge moves to it when that backend is wired in.
"""

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.store.records import AnomalyEvent, EventEnd, ObjectRow, Scope
from iotedge.edge.store.summaries import Bucket, Summary

__all__ = ["EdgeStore"]


class EdgeStore(Protocol):
    """Readings, objects, anomaly events and the outbox, scoped by client on every read."""

    path: Path

    def close(self) -> None:
        """Release the connections."""

    def writable(self) -> bool:
        """Whether a write can be taken now (readiness)."""

    # -- objects
    def upsert_objects(self, entries: Iterable[CatalogueEntry], now: float) -> None:
        """Record the catalogue as listed at ``now``."""

    def objects(self, scope: Scope) -> list[ObjectRow]:
        """The objects visible in ``scope``, by id."""

    def object(self, object_id: str, scope: Scope) -> ObjectRow | None:
        """One object if it exists and is visible in ``scope``."""

    def clients(self, scope: Scope) -> list[str]:
        """The clients visible in ``scope`` that have objects."""

    # -- readings
    def insert_readings(self, readings: list[Reading]) -> int:
        """Store a batch idempotently; returns how many were new."""

    def latest(self, scope: Scope = None) -> list[tuple[str, str, str, float, float]]:
        """(object_id, client, metric, ts, value) of the newest reading per object and metric."""

    def latest_of(self, object_id: str) -> dict[str, tuple[float, float]]:
        """metric -> (ts, value) of one object's newest readings."""

    def raw_series(
        self, object_id: str, metric: str, since: float, until: float, limit: int
    ) -> list[tuple[float, float]]:
        """The newest ``limit`` readings in [since, until), ascending."""

    def summary(self, object_id: str, metric: str, since: float, until: float) -> Summary:
        """Statistics of one object's metric over [since, until)."""

    def client_summaries(
        self, client: str, since: float, until: float
    ) -> tuple[dict[str, Summary], dict[str, dict[str, Summary]]]:
        """Per-metric statistics across a client's objects, and per object and metric."""

    def bucketed(
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

    def recent_values(self, object_id: str, metric: str, limit: int) -> list[float]:
        """The newest ``limit`` values of one metric, oldest first (rule baselines)."""

    def prune(self, before: float) -> int:
        """Delete readings older than ``before``; returns how many."""

    def count_readings(self) -> int:
        """How many readings are stored."""

    def size_bytes(self) -> int:
        """Size of the store on disk."""

    # -- anomaly events and the outbox
    def record_transitions(
        self, opened: Sequence[AnomalyEvent], closed: Sequence[EventEnd], *, edge_id: str, now: float
    ) -> list[int]:
        """Write opened and closed events with their outbox rows in one transaction."""

    def open_anomalies(self) -> list[AnomalyEvent]:
        """Every event still open."""

    def anomalies(
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

    def anomaly_counts(self, object_id: str) -> tuple[int, int]:
        """(open, total) events of one object under its current owner."""
