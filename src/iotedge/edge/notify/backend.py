"""Where the drainer keeps its state: the backend seam between delivery logic and SQL.

The drainer's rules (triage, noise control, retries) run unchanged on either backend; what
differs is behind :class:`OutboxBackend`:

- :class:`SqliteOutbox`: the embedded store's connections. One drainer per store, so due
  messages are simply read, and new outbox rows are found by a cursor over ids.
- :class:`PgOutbox`: a PostgreSQL database shared by several drainers (one per collector
  replica). Each due message is claimed with a lease under ``FOR UPDATE SKIP LOCKED``, so
  one drainer sends it; a claim whose drainer died becomes due again when its lease runs
  out, and is sent again with the same idempotency key (at least once across crashes).
  Triage, the only writer of the noise state, runs under one transaction-scoped advisory
  lock, so drainers take turns at it.

Every method is blocking and runs on the drainer's single database thread; the SQL is
written with ``?`` placeholders and the portable ``ON CONFLICT`` forms both engines accept.
"""

import contextlib
import logging
import os
import secrets
import socket
import sqlite3
from collections.abc import Iterator, Sequence, Set
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.rows import RowMaker

from iotedge.edge.store import SqliteDatabase

__all__ = ["OutboxBackend", "OutboxFeed", "PgOutbox", "PgRow", "Sql", "SqliteOutbox"]

logger = logging.getLogger(__name__)

TRIAGE_LOCK = 0x10_7ED6F
"""Advisory lock key held by the PostgreSQL transaction that triages (shared by all edges)."""

_DUE_COLUMNS = "o.event_id, o.transition, o.payload, o.idempotency_key, o.created_at AS recorded_at"


class Result(Protocol):
    """What a statement returns: rows readable by position and by column name."""

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """Every remaining row."""


class Sql(Protocol):
    """A connection inside a transaction, with ``?`` placeholders (a ``sqlite3.Connection``)."""

    def execute(self, sql: str, parameters: tuple[Any, ...] = (), /) -> Result:
        """Run one statement."""


class OutboxFeed(Protocol):
    """How triage finds outbox rows it has not seen yet, and remembers those it has."""

    def new_rows(self, conn: Sql, limit: int) -> list[Any]:
        """Untriaged outbox rows in id order, at most ``limit``."""

    def mark(self, conn: Sql, rows: Sequence[Any]) -> None:
        """``rows`` (from :meth:`new_rows`) are triaged."""


class CursorFeed:
    """One writer of the outbox (SQLite): ids only grow, so the last id triaged suffices."""

    def new_rows(self, conn: Sql, limit: int) -> list[Any]:
        """Outbox rows after the cursor."""
        row = conn.execute("SELECT last_outbox_id FROM notify_cursor WHERE id = 1").fetchone()
        cursor = int(row[0]) if row else 0
        return conn.execute(
            "SELECT * FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (cursor, limit)
        ).fetchall()

    def mark(self, conn: Sql, rows: Sequence[Any]) -> None:
        """Move the cursor to the last row."""
        if rows:
            conn.execute(
                "INSERT INTO notify_cursor (id, last_outbox_id) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET last_outbox_id = excluded.last_outbox_id",
                (rows[-1]["id"],),
            )


class FlagFeed:
    """Several writers of the outbox (PostgreSQL): a row's own ``triaged`` flag."""

    def new_rows(self, conn: Sql, limit: int) -> list[Any]:
        """Outbox rows not flagged yet."""
        return conn.execute("SELECT * FROM outbox WHERE NOT triaged ORDER BY id LIMIT ?", (limit,)).fetchall()

    def mark(self, conn: Sql, rows: Sequence[Any]) -> None:
        """Flag the rows."""
        if rows:
            conn.execute("UPDATE outbox SET triaged = true WHERE id = ANY(?)", ([r["id"] for r in rows],))


class OutboxBackend(Protocol):
    """The drainer's database: transactions, reads, and claims of due messages."""

    feed: OutboxFeed
    release_claim: str
    """SQL appended to the ``SET`` of a delivery update: drops the row's claim, if any."""
    shared: bool
    """Several drainers share it: due rows are claimed a chunk at a time."""

    def transaction(self, *, exclusive: bool = False) -> contextlib.AbstractContextManager[Sql]:
        """One write transaction; ``exclusive`` ones (triage) never overlap across drainers."""

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of a read-only statement."""

    def claim_due(
        self,
        now: float,
        limit: int,
        *,
        after: tuple[int, str, str] | None = None,
        skip: Set[str] = frozenset(),
    ) -> list[Any]:
        """Due delivery rows joined with their outbox row, claimed for this drainer.

        A shared backend returns a chunk at a time, in (outbox id, kind, channel) order,
        from the row after ``after`` (the last ident of the previous chunk of this pass;
        idents are (outbox id, channel, kind)) and without the channels in ``skip``.
        """

    def release(self, idents: Sequence[tuple[int, str, str]]) -> None:
        """Give back claims of rows this pass did not try (their channel went down)."""

    def pending(self) -> int:
        """Messages not yet delivered: pending deliveries plus outbox rows not yet triaged."""

    def close(self) -> None:
        """Close what the backend opened."""


def _due_sql(where: str) -> str:
    return (
        f"SELECT d.*, {_DUE_COLUMNS} FROM outbox_delivery d"  # noqa: S608 (constant fragments)
        " LEFT JOIN outbox o ON o.id = d.outbox_id"
        f" WHERE {where} ORDER BY d.outbox_id, d.kind LIMIT ?"
    )


class SqliteOutbox:
    """The embedded store's connections: its writer for transactions, its reader for reads."""

    feed: OutboxFeed = CursorFeed()
    release_claim = ""
    shared = False

    def __init__(self, database: SqliteDatabase | str | Path) -> None:
        self._owned = not isinstance(database, SqliteDatabase)
        self.database = database if isinstance(database, SqliteDatabase) else SqliteDatabase(Path(database))

    @contextlib.contextmanager
    def transaction(self, *, exclusive: bool = False) -> Iterator[Sql]:
        """The store's writer, in one transaction (SQLite has one writer anyway)."""
        with self.database.write() as conn:
            yield conn

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Rows by column name, on the store's reader."""
        with self.database.read() as conn:
            cursor = conn.cursor()
            cursor.row_factory = sqlite3.Row
            return cursor.execute(sql, params).fetchall()

    def claim_due(
        self,
        now: float,
        limit: int,
        *,
        after: tuple[int, str, str] | None = None,
        skip: Set[str] = frozenset(),
    ) -> list[Any]:
        """One drainer per file: every due row at once, with no claim (``after``, ``skip`` unused)."""
        return self.query(_due_sql("d.status = 'pending' AND d.next_attempt_at <= ?"), (now, limit))

    def release(self, idents: Sequence[tuple[int, str, str]]) -> None:
        """Nothing was claimed."""

    def pending(self) -> int:
        """Pending deliveries plus rows after the cursor."""
        row = self.query(
            "SELECT (SELECT COUNT(*) FROM outbox_delivery WHERE status = 'pending'),"
            " (SELECT COUNT(*) FROM outbox WHERE id > COALESCE("
            "(SELECT last_outbox_id FROM notify_cursor WHERE id = 1), 0))"
        )[0]
        return int(row[0]) + int(row[1])

    def close(self) -> None:
        """Close the store's connections if this backend opened them."""
        if self._owned:
            self.database.close()


class PgRow(Sequence[Any]):
    """A PostgreSQL row readable by position and by column name, like ``sqlite3.Row``."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = tuple(values)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._index)


def pg_row(cursor: Any) -> RowMaker[PgRow]:
    """psycopg row factory making :class:`PgRow`."""
    index = {d.name: i for i, d in enumerate(cursor.description or ())}
    return lambda values: PgRow(index, values)


class _PgSql:
    """A psycopg connection that takes the drainer's ``?`` placeholders."""

    def __init__(self, conn: psycopg.Connection[PgRow]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: tuple[Any, ...] = (), /) -> Result:
        return self._conn.execute(sql.replace("?", "%s"), parameters)


def drainer_id() -> str:
    """A name for this drainer, unique among replicas: host, process and a random tail."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class PgOutbox:
    """A PostgreSQL database shared by several drainers; each due message is claimed with a lease.

    Args:
        url: the database (the store's URL).
        lease_s: how long a claim stays this drainer's. Longer than one claimed chunk's
            sends can take (``claim_chunk`` times the slowest channel timeout); a drainer that
            dies leaves its claims due again after this long.
        claim_chunk: at most this many rows claimed at once, so a slow receiver keeps few
            messages from the other drainers.
        name: this drainer's name in ``claimed_by``.

    The connection is made on first use and remade after it breaks, so a pass that fails
    while PostgreSQL is away is followed by one that reconnects.
    """

    feed: OutboxFeed = FlagFeed()
    release_claim = ", claimed_by = NULL, claim_until = NULL"
    shared = True

    def __init__(
        self, url: str, *, lease_s: float = 120.0, claim_chunk: int = 10, name: str | None = None
    ) -> None:
        self.url = url
        self.lease_s = lease_s
        self.claim_chunk = claim_chunk
        self.name = name or drainer_id()
        self._conn: psycopg.Connection[PgRow] | None = None

    def _connection(self) -> psycopg.Connection[PgRow]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = psycopg.Connection.connect(
                self.url, autocommit=True, row_factory=pg_row, connect_timeout=5
            )
        return self._conn

    @contextlib.contextmanager
    def transaction(self, *, exclusive: bool = False) -> Iterator[Sql]:
        """One transaction; ``exclusive`` takes the triage lock first (released at commit)."""
        conn = self._connection()
        with conn.transaction():
            if exclusive:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (TRIAGE_LOCK,))
            yield _PgSql(conn)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Rows by column name."""
        return _PgSql(self._connection()).execute(sql, params).fetchall()

    def claim_due(
        self,
        now: float,
        limit: int,
        *,
        after: tuple[int, str, str] | None = None,
        skip: Set[str] = frozenset(),
    ) -> list[Any]:
        """Claim up to ``min(limit, claim_chunk)`` due rows no live claim holds, skipping locked ones."""
        outbox_id, channel, kind = after or (-1, "", "")
        return self.query(
            "WITH c AS (UPDATE outbox_delivery d SET claimed_by = ?, claim_until = ?"  # noqa: S608 (constant fragments)
            " FROM (SELECT outbox_id, channel, kind FROM outbox_delivery"
            "  WHERE status = 'pending' AND next_attempt_at <= ?"
            "  AND (claim_until IS NULL OR claim_until <= ?)"
            "  AND (outbox_id, kind, channel) > (?, ?, ?) AND channel <> ALL(?)"
            "  ORDER BY outbox_id, kind, channel LIMIT ? FOR UPDATE SKIP LOCKED) f"
            " WHERE d.outbox_id = f.outbox_id AND d.channel = f.channel AND d.kind = f.kind"
            " RETURNING d.*)"
            f" SELECT d.*, {_DUE_COLUMNS} FROM c d LEFT JOIN outbox o ON o.id = d.outbox_id"
            " ORDER BY d.outbox_id, d.kind, d.channel",
            (
                self.name,
                now + self.lease_s,
                now,
                now,
                outbox_id,
                kind,
                channel,
                sorted(skip),
                min(limit, self.claim_chunk),
            ),
        )

    def release(self, idents: Sequence[tuple[int, str, str]]) -> None:
        """Drop this drainer's claims on ``idents``."""
        for outbox_id, channel, kind in idents:
            self.query(
                "UPDATE outbox_delivery SET claimed_by = NULL, claim_until = NULL"
                " WHERE outbox_id = ? AND channel = ? AND kind = ? AND claimed_by = ? RETURNING 1",
                (outbox_id, channel, kind, self.name),
            )

    def pending(self) -> int:
        """Pending deliveries plus outbox rows not flagged triaged."""
        row = self.query(
            "SELECT (SELECT COUNT(*) FROM outbox_delivery WHERE status = 'pending'),"
            " (SELECT COUNT(*) FROM outbox WHERE NOT triaged)"
        )[0]
        return int(row[0]) + int(row[1])

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
