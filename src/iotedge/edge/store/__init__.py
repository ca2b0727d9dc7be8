"""The edge's store: one interface (:class:`~iotedge.edge.store.aio.AsyncEdgeStore`), two backends.

Modules, one job each: ``schema`` (every table, as numbered migrations), ``connection``
(the one owner of the SQLite connections), ``readings``, ``rollups`` (per-minute and
per-hour aggregates kept at ingest), ``windows`` (window statistics from rollups, and from
raw rows as the reference), ``summaries`` (statistics types and pooling), ``events``
(anomaly events and the outbox), ``records`` (domain types) and ``sqlite`` (the backend that
puts them together). ``aio`` holds the interface the edge calls, as coroutines
(:class:`~iotedge.edge.store.aio.AsyncEdgeStore`), with SQLite behind it; the ``postgres``
package is the PostgreSQL backend that implements it, and ``choose`` picks one from
``--store``.
"""

from pathlib import Path

from iotedge.edge.store.connection import SqliteDatabase, quick_check
from iotedge.edge.store.events import anomaly_json
from iotedge.edge.store.records import AnomalyEvent, EventEnd, ObjectRow, Scope, new_event_id
from iotedge.edge.store.schema import SCHEMA_VERSION, migrate, schema_version
from iotedge.edge.store.sqlite import SqliteStore
from iotedge.edge.store.summaries import EMPTY, STATISTICS, Bucket, Summary, pool

__all__ = [
    "EMPTY",
    "SCHEMA_VERSION",
    "STATISTICS",
    "AnomalyEvent",
    "Bucket",
    "EventEnd",
    "ObjectRow",
    "Scope",
    "SqliteDatabase",
    "SqliteStore",
    "Store",
    "Summary",
    "anomaly_json",
    "migrate",
    "new_event_id",
    "open_store",
    "pool",
    "quick_check",
    "schema_version",
]

Store = SqliteStore
"""The embedded backend under its earlier name (kept for callers that construct one)."""


def open_store(path: Path, *, check: bool = True) -> SqliteStore:
    """Open (create, check and migrate) the store at ``path``."""
    return SqliteStore(path, check=check)
