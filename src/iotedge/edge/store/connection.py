"""The one owner of the SQLite connections: a writer and a reader, opened and checked at start.

Why two and not one or three: SQLite in WAL mode lets one writer and any number of readers
work at once, and a reader sees the last committed state without waiting. So every write
transaction of the process (the collector's batches, the notification drainer's delivery
state) goes through the single writer, serialised by a lock here instead of by SQLite's
busy-wait between competing connections, and every read (API, metrics, the drainer's
listings) uses the reader, which a long write never blocks. The notification drainer gets
this object from the lifespan rather than opening its own file.
"""

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iotedge.edge.store.schema import migrate
from iotedge.errors import StoreError

__all__ = ["SqliteDatabase", "quick_check"]

_BUSY_TIMEOUT_MS = 5000  # another process (a CLI command, a test) may hold the file briefly
_CHECKPOINT_PAGES = 10_000
_WRITER_CACHE_KIB = 8 * 1024  # SQLite's default is 2 MiB; each MiB is edge memory


def _connect(path: Path, *, reader: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000
    )
    conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    if reader:
        conn.execute("PRAGMA query_only=ON")
    else:
        conn.row_factory = sqlite3.Row  # the drainer reads columns by name; tuples still unpack
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power cut
        # A poll batch dirties one page per series (each series' newest leaf). Checkpointing
        # every 10,000 WAL pages instead of 1,000 copies a page rewritten batch after batch
        # into the file once, not after almost every batch, for a WAL of up to 40 MB; and a
        # cache holding those pages keeps the writer from reading them back every batch.
        # Neither changes what a commit guarantees.
        conn.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
    return conn


def quick_check(conn: sqlite3.Connection) -> str | None:
    """None when ``PRAGMA quick_check`` finds the file sound, else its first complaint (one line)."""
    rows = [str(row[0]) for row in conn.execute("PRAGMA quick_check(20)").fetchall()]
    if rows == ["ok"]:
        return None
    lines = [line for row in rows for line in row.splitlines() if line.strip() and not line.startswith("***")]
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    return (lines[0] if lines else "failed") + more


class SqliteDatabase:
    """The store file's writer and reader connections.

    Opening checks the file (``PRAGMA quick_check``: a corrupt store is never served) and
    applies the missing schema migrations. Any failure is a :class:`StoreError` whose
    message names the file and what is wrong with it, fit for one line on a terminal.

    Args:
        path: the SQLite file (created with its directory when missing).
        check: run ``quick_check`` (skip only for throwaway stores in benchmarks).
    """

    def __init__(self, path: Path, *, check: bool = True) -> None:
        self.path = path
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        writer: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = _connect(path, reader=False)
            problem = quick_check(writer) if check else None
            if problem is not None:
                raise StoreError(f"the store {path} is corrupt ({problem}); see `iotedge store check`")
            migrate(writer)
            self._reader = _connect(path, reader=True)
        except sqlite3.DatabaseError as exc:
            if writer is not None:
                writer.close()
            raise StoreError(f"cannot open the store {path}: {exc}; see `iotedge store check`") from exc
        except (sqlite3.Error, OSError) as exc:
            if writer is not None:
                writer.close()
            raise StoreError(f"cannot open the store {path}: {exc}") from exc
        except StoreError:
            if writer is not None:
                writer.close()
            raise
        self._writer = writer

    def close(self) -> None:
        """Close both connections (committed data is already on disk)."""
        with self._write_lock, self._read_lock:
            self._reader.close()
            self._writer.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """The writer inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any error)."""
        with self._write_lock:
            try:
                self._writer.execute("BEGIN IMMEDIATE")
                try:
                    yield self._writer
                except BaseException:
                    self._writer.execute("ROLLBACK")
                    raise
                self._writer.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"store write failed: {exc}") from exc

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The reader: every statement sees the last committed state."""
        with self._read_lock:
            yield self._reader

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement, as tuples."""
        try:
            with self.read() as conn:
                return conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed: {exc}") from exc
