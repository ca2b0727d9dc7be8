"""The PostgreSQL backend of the store (issue 15), behind :class:`iotedge.edge.store.aio.AsyncEdgeStore`.

Modules: ``schema`` (its numbered migrations), ``store`` (:class:`PostgresStore`),
``rollups`` and ``windows`` (per-minute and per-hour rollups and the window reads over them),
``keys`` (API keys in the database and ``PgKeyRing``), ``leases`` (:class:`PgShardLeases`,
the collectors' shards as session advisory locks), ``connect`` (:func:`open_pg_store`). The
edge runs on it when ``--store`` (``IOTEDGE_STORE``) is a ``postgresql://`` URL (see
:mod:`iotedge.edge.store.choose`).
"""

from iotedge.edge.store.postgres.connect import open_pg_store, redact_url
from iotedge.edge.store.postgres.leases import PgShardLeases, register_shard_metrics
from iotedge.edge.store.postgres.schema import PG_SCHEMA_VERSION, pg_migrate, pg_schema_version
from iotedge.edge.store.postgres.store import PostgresStore

__all__ = [
    "PG_SCHEMA_VERSION",
    "PgShardLeases",
    "PostgresStore",
    "open_pg_store",
    "pg_migrate",
    "pg_schema_version",
    "redact_url",
    "register_shard_metrics",
]
