"""The PostgreSQL backend of the store (issue 15), behind :class:`iotedge.edge.store.aio.AsyncEdgeStore`.

Modules: ``schema`` (its numbered migrations), ``store`` (:class:`PostgresStore`),
``connect`` (:func:`open_pg_store`). The edge runs on it when ``--store`` (``IOTEDGE_STORE``)
is a ``postgresql://`` URL (see :mod:`iotedge.edge.store.choose`).
"""

from iotedge.edge.store.postgres.connect import open_pg_store, redact_url
from iotedge.edge.store.postgres.schema import PG_SCHEMA_VERSION, pg_migrate, pg_schema_version
from iotedge.edge.store.postgres.store import PostgresStore

__all__ = [
    "PG_SCHEMA_VERSION",
    "PostgresStore",
    "open_pg_store",
    "pg_migrate",
    "pg_schema_version",
    "redact_url",
]
