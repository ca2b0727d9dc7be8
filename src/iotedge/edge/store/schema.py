"""Every table of the store, as numbered forward-only migrations applied at start.

The ``schema_version`` table records each step applied. A store written before versioning
(no such table) has exactly the tables of step 1, which only creates what is missing, so it
upgrades like any other. A store from a newer release is refused rather than guessed at.
Each step is plain SQL for SQLite; the PostgreSQL backend will carry its own SQL for the
same numbered steps, so both backends always agree on the version.
"""

import sqlite3
import time
from dataclasses import dataclass

from iotedge.edge.store.rollups import LEVELS, STATE_DDL, rebuild_sql, state_init_sql, table_ddl
from iotedge.errors import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "migrate", "schema_version"]


@dataclass(frozen=True, kw_only=True)
class Migration:
    """One numbered step: the statements that bring version - 1 to ``version``."""

    version: int
    name: str
    statements: tuple[str, ...]


_V1_TABLES = (
    """CREATE TABLE IF NOT EXISTS objects (
  id TEXT PRIMARY KEY,
  client TEXT NOT NULL,
  type TEXT NOT NULL,
  first_seen REAL NOT NULL,
  last_listed REAL NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS objects_client ON objects (client)",
    """CREATE TABLE IF NOT EXISTS readings (
  object_id TEXT NOT NULL,
  metric TEXT NOT NULL,
  ts REAL NOT NULL,
  value REAL NOT NULL,
  PRIMARY KEY (object_id, metric, ts)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS latest (
  object_id TEXT NOT NULL,
  metric TEXT NOT NULL,
  ts REAL NOT NULL,
  value REAL NOT NULL,
  PRIMARY KEY (object_id, metric)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS anomalies (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  object_id TEXT NOT NULL,
  client TEXT NOT NULL,
  type TEXT NOT NULL,
  metric TEXT NOT NULL,
  rule TEXT NOT NULL,
  severity TEXT NOT NULL,
  value REAL,
  threshold REAL,
  message TEXT NOT NULL,
  started_at REAL NOT NULL,
  ended_at REAL,
  last_value REAL
)""",
    "CREATE INDEX IF NOT EXISTS anomalies_client_started ON anomalies (client, started_at)",
    "CREATE INDEX IF NOT EXISTS anomalies_open ON anomalies (ended_at) WHERE ended_at IS NULL",
    # Notifications to send, written in the same transaction as the anomaly transition they
    # announce; the notification drainer (iotedge.edge.notify) reads it.
    """CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id INTEGER NOT NULL,
  transition TEXT NOT NULL,
  client TEXT NOT NULL,
  severity TEXT NOT NULL,
  payload TEXT NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  created_at REAL NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS outbox_event ON outbox (event_id, transition)",
    # Written only by the drainer. One row per (outbox row, channel, kind of message):
    # kind is 'event' (the transition itself), 'flapping' or 'stable'; status is pending,
    # sent, failed or suppressed; reason says why a row is held or suppressed.
    """CREATE TABLE IF NOT EXISTS outbox_delivery (
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
)""",
    "CREATE INDEX IF NOT EXISTS outbox_delivery_due ON outbox_delivery (status, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS outbox_delivery_series ON outbox_delivery (series, status)",
    # Noise-control memory per (object, metric, rule), so restarts keep cooldowns.
    """CREATE TABLE IF NOT EXISTS notify_series (
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
)""",
    # The last outbox id the drainer has triaged; ids only grow, SQLite has one writer.
    """CREATE TABLE IF NOT EXISTS notify_cursor (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_outbox_id INTEGER NOT NULL
)""",
)

# Readings remember the client that owned the device when they were taken (issue 13, finding
# 4), so history never follows a device to a new owner. Existing rows get the owner the
# catalogue names now: the best the old store knows.
_V2_OWNER = (
    "ALTER TABLE readings ADD COLUMN client TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE latest ADD COLUMN client TEXT NOT NULL DEFAULT ''",
    "UPDATE readings SET client = "
    "COALESCE((SELECT o.client FROM objects o WHERE o.id = readings.object_id), '')",
    "UPDATE latest SET client = COALESCE((SELECT o.client FROM objects o WHERE o.id = latest.object_id), '')",
)

# Per-minute and per-hour rollups of the readings (issue 16), filled from the readings already
# stored; from then on insert_readings keeps them in the same transaction as the raw rows.
_V3_ROLLUPS = tuple(
    statement for table, step in LEVELS for statement in (table_ddl(table), rebuild_sql(table, step))
)

# The newest minutes are rolled up when they close (issue 16, ingest rate): the watermark starts
# after the newest reading, since migration 3 rolled up every stored reading.
_V4_WATERMARK = (STATE_DDL, state_init_sql())

MIGRATIONS: tuple[Migration, ...] = (
    Migration(version=1, name="tables of the first release", statements=_V1_TABLES),
    Migration(version=2, name="readings carry their owner", statements=_V2_OWNER),
    Migration(version=3, name="per-minute and per-hour rollups", statements=_V3_ROLLUPS),
    Migration(version=4, name="rollups close minute by minute", statements=_V4_WATERMARK),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
"""The version this release writes."""

_VERSION_DDL = """CREATE TABLE IF NOT EXISTS schema_version (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at REAL NOT NULL
)"""


def schema_version(conn: sqlite3.Connection) -> int:
    """The newest step applied to the store (0 for an empty or unversioned store)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, *, now: float | None = None) -> list[int]:
    """Apply the missing steps in order, each in its own transaction; returns those applied.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the store has schema version {current}, newer than this release's {SCHEMA_VERSION}: "
            "upgrade iotedge or use another data directory"
        )
    applied: list[int] = []
    for step in MIGRATIONS:
        if step.version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        if schema_version(conn) >= step.version:  # another process applied it meanwhile
            conn.execute("ROLLBACK")
            continue
        try:
            conn.execute(_VERSION_DDL)
            for statement in step.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?,?,?)",
                (step.version, step.name, time.time() if now is None else now),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied.append(step.version)
    return applied
