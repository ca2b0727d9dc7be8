"""Which store the edge runs on: ``--store`` names a PostgreSQL URL or a SQLite file.

The SQLite store opens synchronously (the CLI checks it before serving). The PostgreSQL
store lives on the event loop that serves it, so the CLI first checks it in a loop of its
own (reachable, schema accepted, migrations applied) and the app opens it again at start.
"""

from iotedge.config import EdgeSettings
from iotedge.edge.store.aio import AsyncEdgeStore, AsyncSqliteStore
from iotedge.edge.store.sqlite import SqliteStore

__all__ = ["check_postgres", "open_async_store", "shown_store"]


def shown_store(settings: EdgeSettings) -> str:
    """The store as logs name it (a URL without its password)."""
    if settings.store_is_postgres:
        from iotedge.edge.store.postgres import redact_url

        return redact_url(settings.store)
    return str(settings.store_path)


async def check_postgres(url: str) -> None:
    """Open the PostgreSQL store at ``url`` (migrating it) and close it again.

    Raises:
        StoreError: unreachable, refused, or a schema newer than this release (one line, no password).
    """
    from iotedge.edge.store.postgres import open_pg_store

    store = await open_pg_store(url)
    await store.close()


async def open_async_store(settings: EdgeSettings, sqlite: SqliteStore | None = None) -> AsyncEdgeStore:
    """The store of ``settings``: ``sqlite`` (already opened) or the file behind the async interface,
    or the PostgreSQL store on a new pool.

    Raises:
        StoreError: the store cannot be opened.
    """
    if settings.store_is_postgres:
        from iotedge.edge.store.postgres import open_pg_store

        return await open_pg_store(settings.store)
    return AsyncSqliteStore(sqlite if sqlite is not None else SqliteStore(settings.store_path))
