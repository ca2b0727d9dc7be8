"""Opening the PostgreSQL store: reach the server, migrate, then start the pool.

An unreachable server, a missing database or refused credentials give one
:class:`StoreError` line naming the URL without its password, fit for a terminal at start.
"""

from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from iotedge.edge.store.postgres.schema import pg_migrate
from iotedge.edge.store.postgres.store import Conn, PostgresStore
from iotedge.errors import StoreError

__all__ = ["open_pg_store", "redact_url"]

_CONNECT_TIMEOUT_S = 5


def redact_url(url: str) -> str:
    """``url`` without its password (URL or ``key=value`` form)."""
    if "://" in url:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unparsable connection string)"
    return " ".join(f"{key}={value}" for key, value in params.items() if key != "password")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


async def open_pg_store(url: str, *, min_size: int = 1, max_size: int = 8) -> PostgresStore:
    """Connect to ``url``, apply the missing migrations and return the store on an open pool.

    Raises:
        StoreError: the server cannot be reached, refuses us, or has a newer schema.
    """
    shown = redact_url(url)
    try:
        conn: Conn = await psycopg.AsyncConnection.connect(url, connect_timeout=_CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach PostgreSQL at {shown}: {_first_line(exc)}") from exc
    try:
        async with conn:
            await pg_migrate(conn)
    except psycopg.Error as exc:
        raise StoreError(f"cannot migrate the PostgreSQL store at {shown}: {_first_line(exc)}") from exc
    pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        # A caller waits this long for a connection, then gets a StoreError (the API's 503),
        # rather than the pool's default half a minute.
        timeout=_CONNECT_TIMEOUT_S,
        kwargs={"connect_timeout": _CONNECT_TIMEOUT_S},
        name="iotedge-store",
    )
    try:
        await pool.open(wait=True, timeout=_CONNECT_TIMEOUT_S)
    except Exception as exc:
        await pool.close()
        raise StoreError(f"cannot reach PostgreSQL at {shown}: {_first_line(exc)}") from exc
    return PostgresStore(pool, url=shown)
