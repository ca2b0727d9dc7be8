"""API keys in PostgreSQL: the keys file's operations, and :class:`PgKeyRing` for API replicas.

In the PostgreSQL mode every replica reads the keys from the ``api_keys`` table (migration
3). The write functions mirror ``iotedge.edge.auth``'s file operations; each change of a
key fires a statement trigger that notifies the channel ``iotedge_api_keys``.
:class:`PgKeyRing` loads every key at start, reloads them all on each notification and at
least once a second besides (a missed notification, a dropped connection), and answers
``authenticate`` from memory. Last-use times are gathered in memory and written in one
statement every few seconds; that write notifies nobody.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from iotedge.edge.auth import (
    KeyRecord,
    Principal,
    generate_key,
    hash_key,
    match_key,
    parse_env_keys,
    validate_client,
)
from iotedge.edge.store.postgres.connect import redact_url
from iotedge.edge.store.postgres.schema import pg_migrate
from iotedge.errors import ConfigError, StoreError

__all__ = [
    "CHANNEL",
    "PgKeyRing",
    "create_key",
    "delete_client",
    "list_keys",
    "open_keys_connection",
    "revoke_keys",
]

_log = logging.getLogger(__name__)

CHANNEL = "iotedge_api_keys"
"""The channel a change of ``api_keys`` is announced on (by the migration's trigger)."""

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
_COLUMNS = "id, client, hash, created_at, expires_at, revoked_at"
_CONNECT_TIMEOUT_S = 5


def _record(row: tuple[Any, ...]) -> KeyRecord:
    return KeyRecord(*row[:6])


async def open_keys_connection(url: str) -> Conn:
    """An autocommit connection to ``url`` with the store's schema applied (for the CLI).

    Raises:
        StoreError: the server cannot be reached or refuses us (one line, no password).
    """
    try:
        conn: Conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S
        )
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach PostgreSQL at {redact_url(url)}: {_first_line(exc)}") from exc
    try:
        await pg_migrate(conn)
    except psycopg.Error as exc:
        await conn.close()
        raise StoreError(
            f"cannot migrate the PostgreSQL store at {redact_url(url)}: {_first_line(exc)}"
        ) from exc
    return conn


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


async def create_key(conn: Conn, client: str, *, expires_at: float | None = None) -> tuple[KeyRecord, str]:
    """Add a new key for ``client``; returns its record and the key itself (never stored)."""
    validate_client(client)
    while True:  # 32 bits of id: collisions are rare, not impossible
        key_id, key = generate_key()
        record = KeyRecord(
            id=key_id, client=client, hash=hash_key(key), created_at=time.time(), expires_at=expires_at
        )
        cur = await conn.execute(
            f"INSERT INTO api_keys ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, NULL) "  # noqa: S608
            "ON CONFLICT DO NOTHING",
            (record.id, record.client, record.hash, record.created_at, record.expires_at),
        )
        if cur.rowcount == 1:
            return record, key


async def list_keys(conn: Conn) -> list[tuple[KeyRecord, float | None]]:
    """Every key, oldest first, with its last use (epoch seconds, None if never used)."""
    cur = await conn.execute(f"SELECT {_COLUMNS}, last_used_at FROM api_keys ORDER BY created_at, id")  # noqa: S608
    return [(_record(row), row[6]) for row in await cur.fetchall()]


async def revoke_keys(
    conn: Conn, *, key_ids: Iterable[str] = (), client: str | None = None
) -> list[KeyRecord]:
    """Mark keys revoked now (by id, or every key of ``client``); returns the newly revoked.

    Raises:
        ConfigError: when a key id is not in the table.
    """
    wanted = sorted(set(key_ids))
    async with conn.transaction():
        cur = await conn.execute("SELECT id FROM api_keys WHERE id = ANY(%s)", (wanted,))
        missing = set(wanted) - {row[0] for row in await cur.fetchall()}
        if missing:
            raise ConfigError(f"no key with id {', '.join(sorted(missing))} in the store")
        cur = await conn.execute(
            f"UPDATE api_keys SET revoked_at = %s WHERE revoked_at IS NULL "  # noqa: S608
            f"AND (id = ANY(%s) OR client = %s) RETURNING {_COLUMNS}",
            (time.time(), wanted, client),
        )
        return sorted((_record(row) for row in await cur.fetchall()), key=lambda r: (r.created_at, r.id))


async def delete_client(conn: Conn, client: str) -> int:
    """Remove every key of ``client`` (the client is gone); returns how many."""
    cur = await conn.execute("DELETE FROM api_keys WHERE client = %s", (client,))
    return max(cur.rowcount, 0)


class PgKeyRing:
    """The valid keys of the PostgreSQL store and of the environment, current within a second.

    Satisfies :class:`iotedge.edge.auth.KeySource`. ``await start()`` loads the keys (a
    StoreError if the database cannot be reached) and starts the background task that
    listens for changes, reloads every ``reload_s`` and writes last-use times every
    ``usage_flush_s``; ``await aclose()`` stops it and writes the last of them. While the
    database is unreachable the keys last loaded stay in force.

    Args:
        url: the store's database.
        env_keys: the ``IOTEDGE_API_KEYS`` text.
        clock: wall clock for expiry.
        reload_s: the full reload's period (also the longest a missed notification can delay
            a revocation).
        usage_flush_s: how often last-use times are written.
    """

    def __init__(
        self,
        url: str,
        *,
        env_keys: str = "",
        clock: Callable[[], float] = time.time,
        reload_s: float = 1.0,
        usage_flush_s: float = 10.0,
    ) -> None:
        self.url = url
        self._shown = redact_url(url)
        self._env = parse_env_keys(env_keys)
        self._clock = clock
        self._reload_s = reload_s
        self._usage_flush_s = usage_flush_s
        self._by_hash: dict[str, KeyRecord] = {record.hash: record for record in self._env}
        self._used: dict[str, float] = {}
        self._flush_wanted = False
        self._conn: Conn | None = None
        self._task: asyncio.Task[None] | None = None
        self.loaded_at: float | None = None
        """Monotonic time of the last successful load (None before the first)."""

    # -- the interface the API uses (synchronous, from memory)
    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, key: str | None) -> Principal:
        """The principal of ``key``; a revocation counts at once, whatever clock revoked it.

        Raises:
            AuthError: when the key is missing, unknown, revoked or expired.
        """
        now = self._clock()
        record = match_key(self._by_hash, key, now, revoked_at_any_time=True)
        self._used[record.id] = now
        return Principal(key_id=record.id, client=record.client)

    def reload(self) -> None:
        """Nothing to do at once (SIGHUP): the background task reloads every key each ``reload_s``."""

    def flush_usage(self) -> None:
        """Ask for the last-use times to be written now (by the background task; aclose writes them too)."""
        self._flush_wanted = True

    # -- life cycle
    async def start(self) -> None:
        """Connect, listen, load every key, then keep them current in the background.

        Raises:
            StoreError: the database cannot be reached, or its schema is not there yet.
        """
        self._conn = await self._connect()
        try:
            await self._load(self._conn)
        except psycopg.Error as exc:
            await self._conn.close()
            raise StoreError(f"cannot read the API keys at {self._shown}: {_first_line(exc)}") from exc
        self._task = asyncio.create_task(self._run(), name="pg-keyring")

    async def aclose(self) -> None:
        """Stop the background task, write the pending last-use times, close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                await self._flush(self._conn)
            await self._conn.close()
        self._conn = None

    async def _connect(self) -> Conn:
        try:
            conn: Conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot reach PostgreSQL at {self._shown}: {_first_line(exc)}") from exc
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            await conn.close()
            raise StoreError(f"cannot listen on {self._shown}: {_first_line(exc)}") from exc
        return conn

    async def _load(self, conn: Conn) -> None:
        """Replace the keys in memory with the table's (and the environment's) in one assignment."""
        cur = await conn.execute(f"SELECT {_COLUMNS} FROM api_keys")  # noqa: S608
        records = [*self._env, *(_record(row) for row in await cur.fetchall())]
        self._by_hash = {record.hash: record for record in records}
        self.loaded_at = time.monotonic()

    async def _flush(self, conn: Conn) -> None:
        """Write the last-use times gathered since the previous flush (never moving one back)."""
        self._flush_wanted = False
        used, self._used = self._used, {}
        if not used:
            return
        ids = sorted(used)
        try:
            await conn.execute(
                "UPDATE api_keys k SET last_used_at = GREATEST(COALESCE(k.last_used_at, 0), u.ts) "
                "FROM unnest(%s::text[], %s::float8[]) AS u(id, ts) WHERE k.id = u.id",
                (ids, [used[key_id] for key_id in ids]),
            )
        except psycopg.Error:
            for key_id, ts in used.items():  # keep them for the next flush
                self._used[key_id] = max(ts, self._used.get(key_id, 0.0))
            raise

    async def _run(self) -> None:
        """Listen, reload and flush until cancelled; reconnect after a lost connection."""
        flushed = time.monotonic()
        while True:
            conn = self._conn
            try:
                if conn is None or conn.closed:
                    conn = self._conn = await self._connect()
                    await self._load(conn)
                async for _ in conn.notifies(timeout=self._reload_s, stop_after=1):
                    pass
                # A notification or the period's end: reload everything (a few hundred keys
                # at most; simpler and safer than applying each change).
                await self._load(conn)
                if self._flush_wanted or time.monotonic() - flushed >= self._usage_flush_s:
                    flushed = time.monotonic()
                    await self._flush(conn)
            except (psycopg.Error, StoreError) as exc:
                _log.warning("API keys: %s; keeping the keys loaded, retrying in %.0f s", exc, self._reload_s)
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        await conn.close()
                await asyncio.sleep(self._reload_s)
