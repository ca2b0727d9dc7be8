"""The embedded SQLite store: one file, WAL journal, ``synchronous=FULL``.

Statistics and down-sampling run in SQL, next to the data. Every read that returns client
data takes a ``Scope`` (or is limited to an object's current owner), so no query can forget
tenant isolation.
"""

from collections.abc import Iterable
from pathlib import Path

from iotedge.edge.normalise import CatalogueEntry
from iotedge.edge.store.connection import SqliteDatabase
from iotedge.edge.store.events import EventsMixin
from iotedge.edge.store.readings import ReadingsMixin, in_scope
from iotedge.edge.store.records import ObjectRow, Scope
from iotedge.errors import StoreError

__all__ = ["SqliteStore"]


class SqliteStore(ReadingsMixin, EventsMixin):
    """The edge's SQLite store; it implements :class:`iotedge.edge.store.aio.AsyncEdgeStore`
    through :class:`~iotedge.edge.store.aio.AsyncSqliteStore`.

    Use it from the event loop; the notification drainer shares its connections
    (:attr:`database`) from its worker thread.

    Args:
        path: the SQLite file.
        check: run ``PRAGMA quick_check`` when opening.
    """

    def __init__(self, path: Path, *, check: bool = True) -> None:
        self.path = path
        self._db = SqliteDatabase(path, check=check)
        self.watermark_moves = 0

    @property
    def database(self) -> SqliteDatabase:
        """The connections, for the notification drainer and its read-only views."""
        return self._db

    def close(self) -> None:
        """Close the database (committed data is already on disk)."""
        self._db.close()

    def writable(self) -> bool:
        """Whether a write transaction can be taken now (for readiness)."""
        try:
            with self._db.write() as db:
                db.execute("SELECT 1")
        except StoreError:
            return False
        return True

    def upsert_objects(self, entries: Iterable[CatalogueEntry], now: float) -> None:
        """Record the catalogue as seen at ``now`` (an object's owner is the newest listing's)."""
        rows = [(e.id, e.client, e.type, now, now) for e in entries]
        with self._db.write() as db:
            db.executemany(
                "INSERT INTO objects (id, client, type, first_seen, last_listed) VALUES (?,?,?,?,?) "
                "ON CONFLICT (id) DO UPDATE SET client=excluded.client, type=excluded.type, "
                "last_listed=excluded.last_listed",
                rows,
            )

    def objects(self, scope: Scope) -> list[ObjectRow]:
        """The objects visible in ``scope``, by id."""
        condition, params = in_scope(scope, "client")
        rows = self._db.query(
            f"SELECT id, client, type, first_seen, last_listed FROM objects WHERE {condition} ORDER BY id",  # noqa: S608
            params,
        )
        return [ObjectRow(*row) for row in rows]

    def object(self, object_id: str, scope: Scope) -> ObjectRow | None:
        """One object if it exists and is visible in ``scope``."""
        rows = self._db.query(
            "SELECT id, client, type, first_seen, last_listed FROM objects WHERE id = ?", (object_id,)
        )
        if not rows:
            return None
        row = ObjectRow(*rows[0])
        return row if scope is None or row.client in scope else None

    def clients(self, scope: Scope) -> list[str]:
        """The clients visible in ``scope`` that have objects."""
        condition, params = in_scope(scope, "client")
        sql = f"SELECT DISTINCT client FROM objects WHERE {condition} ORDER BY client"  # noqa: S608
        return [row[0] for row in self._db.query(sql, params)]
