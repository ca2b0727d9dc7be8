"""The outbox tables: the store's contract table and the drainer's own delivery state."""

import sqlite3
from pathlib import Path

from iotedge.edge.store import OUTBOX_DDL

__all__ = ["OUTBOX_DDL", "connect", "ensure_schema"]


# Written only by the drainer. One row per (outbox row, channel, kind of message):
# kind is 'event' (the transition itself), 'flapping' or 'stable'; status is pending,
# sent, failed or suppressed; reason says why a row is held or suppressed.
_DELIVERY_DDL = (
    """
CREATE TABLE IF NOT EXISTS outbox_delivery (
  outbox_id INTEGER NOT NULL,
  channel TEXT NOT NULL,
  kind TEXT NOT NULL,
  series TEXT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL NOT NULL,
  last_error TEXT,
  n_grouped INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  updated_at REAL NOT NULL,
  PRIMARY KEY (outbox_id, channel, kind)
)
""",
    "CREATE INDEX IF NOT EXISTS outbox_delivery_due ON outbox_delivery (status, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS outbox_delivery_series ON outbox_delivery (series, status)",
    "CREATE INDEX IF NOT EXISTS outbox_event ON outbox (event_id, transition)",
    # Noise-control memory per (object, metric, rule), so restarts keep cooldowns.
    """
CREATE TABLE IF NOT EXISTS notify_series (
  series TEXT PRIMARY KEY,
  client TEXT NOT NULL,
  severity TEXT NOT NULL,
  recent TEXT NOT NULL DEFAULT '[]',
  flapping INTEGER NOT NULL DEFAULT 0,
  last_outbox_id INTEGER,
  last_transition TEXT,
  last_at REAL,
  opened_notified_at REAL,
  grouped INTEGER NOT NULL DEFAULT 0
)
""",
    # The last outbox id the drainer has triaged; ids only grow, SQLite has one writer.
    """
CREATE TABLE IF NOT EXISTS notify_cursor (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_outbox_id INTEGER NOT NULL
)
""",
)


def connect(path: str | Path, *, timeout_s: float = 10.0) -> sqlite3.Connection:
    """A connection in autocommit mode (callers use ``BEGIN IMMEDIATE``), WAL journal."""
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the outbox and the delivery-state tables when missing (idempotent)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(OUTBOX_DDL)
        for ddl in _DELIVERY_DDL:
            conn.execute(ddl)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
