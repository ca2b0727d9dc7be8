"""The PostgreSQL tables, as numbered forward-only migrations applied at open.

PostgreSQL starts from the store's current shape, so its numbering is its own line: step 1
here holds what SQLite reached in its steps 1 and 2 (readings carry their owner). The
``schema_version`` table has the same columns as SQLite's. Each step runs in one
transaction under an advisory lock, so several processes opening the same database at once
apply it exactly once.

Text keys use the "C" collation: byte order, as SQLite compares, so listings sort the same
on both backends, and index comparisons are plain ``memcmp`` rather than the locale's.
``latest`` is rewritten by every batch, so its pages keep room for HOT updates.

Window queries: the readings' primary key ``(object_id, metric, ts)`` is the index every
read of one object's series walks, and the rollups' keys ``(object_id, metric, client,
bucket)`` do the same for whole minutes and hours, so a window's cost follows the rows in
its partial minutes plus one per minute and per hour, not the history stored
(bench/pg_bench.py measures it; no time partitioning was needed). A BRIN index on ``ts`` serves retention
pruning at a few pages of index for any history, since readings arrive roughly in time order.
"""

import time
from dataclasses import dataclass

from psycopg import AsyncConnection

from iotedge.edge.store.postgres.rollups import LEVELS, rebuild_sql, table_ddl
from iotedge.errors import StoreError

__all__ = ["PG_MIGRATIONS", "PG_SCHEMA_VERSION", "PgMigration", "pg_migrate", "pg_schema_version"]

_LOCK_KEY = 0x10_7ED6E  # advisory lock held while migrating (any constant shared by all edges)


@dataclass(frozen=True, kw_only=True)
class PgMigration:
    """One numbered step: the statements that bring version - 1 to ``version``."""

    version: int
    name: str
    statements: tuple[str, ...]


_V1_TABLES = (
    """CREATE TABLE objects (
  id TEXT COLLATE "C" PRIMARY KEY,
  client TEXT COLLATE "C" NOT NULL,
  type TEXT NOT NULL,
  first_seen DOUBLE PRECISION NOT NULL,
  last_listed DOUBLE PRECISION NOT NULL
)""",
    "CREATE INDEX objects_client ON objects (client)",
    """CREATE TABLE readings (
  object_id TEXT COLLATE "C" NOT NULL,
  metric TEXT COLLATE "C" NOT NULL,
  ts DOUBLE PRECISION NOT NULL,
  value DOUBLE PRECISION NOT NULL,
  client TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (object_id, metric, ts)
)""",
    "CREATE INDEX readings_ts ON readings USING brin (ts)",
    """CREATE TABLE latest (
  object_id TEXT COLLATE "C" NOT NULL,
  metric TEXT COLLATE "C" NOT NULL,
  ts DOUBLE PRECISION NOT NULL,
  value DOUBLE PRECISION NOT NULL,
  client TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (object_id, metric)
) WITH (fillfactor = 50)""",
    # Ids are drawn at random by the caller (records.new_event_id), never by the database.
    """CREATE TABLE anomalies (
  id BIGINT PRIMARY KEY,
  object_id TEXT COLLATE "C" NOT NULL,
  client TEXT COLLATE "C" NOT NULL,
  type TEXT NOT NULL,
  metric TEXT COLLATE "C" NOT NULL,
  rule TEXT COLLATE "C" NOT NULL,
  severity TEXT NOT NULL,
  value DOUBLE PRECISION,
  threshold DOUBLE PRECISION,
  message TEXT NOT NULL,
  started_at DOUBLE PRECISION NOT NULL,
  ended_at DOUBLE PRECISION,
  last_value DOUBLE PRECISION
)""",
    "CREATE INDEX anomalies_client_started ON anomalies (client, started_at)",
    "CREATE INDEX anomalies_object ON anomalies (object_id)",
    "CREATE INDEX anomalies_open ON anomalies (ended_at) WHERE ended_at IS NULL",
    """CREATE TABLE outbox (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id BIGINT NOT NULL,
  transition TEXT NOT NULL,
  client TEXT COLLATE "C" NOT NULL,
  severity TEXT NOT NULL,
  payload TEXT NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  created_at DOUBLE PRECISION NOT NULL
)""",
    "CREATE INDEX outbox_event ON outbox (event_id, transition)",
)

# Per-minute and per-hour rollups (the SQLite store's migration 3), filled from the readings
# already stored; from then on insert_readings keeps them in the same statement as the raw rows.
_V2_ROLLUPS = tuple(
    statement for table, step in LEVELS for statement in (table_ddl(table), rebuild_sql(table, step))
)

# API keys (issue 15): in the PostgreSQL mode they live here, so every API replica sees a
# revocation within a second. A change of a key (not of its last use) notifies the channel
# ``iotedge_api_keys`` once per statement; PgKeyRing listens on it.
_V3_API_KEYS = (
    """CREATE TABLE api_keys (
  id TEXT COLLATE "C" PRIMARY KEY,
  client TEXT COLLATE "C" NOT NULL,
  hash TEXT COLLATE "C" NOT NULL UNIQUE,
  created_at DOUBLE PRECISION NOT NULL,
  expires_at DOUBLE PRECISION,
  revoked_at DOUBLE PRECISION,
  last_used_at DOUBLE PRECISION
)""",
    "CREATE INDEX api_keys_client ON api_keys (client)",
    """CREATE FUNCTION iotedge_api_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('iotedge_api_keys', TG_OP);
  RETURN NULL;
END
$$""",
    "CREATE TRIGGER api_keys_changed AFTER INSERT OR DELETE OR UPDATE OF id, client, hash, expires_at, "
    "revoked_at ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION iotedge_api_keys_changed()",
    "CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys "
    "FOR EACH STATEMENT EXECUTE FUNCTION iotedge_api_keys_changed()",
)

# The notifier and the collectors' shard leases (issue 15). Several drainers share these
# tables: a delivery row is claimed with a lease (``claimed_by``, ``claim_until``) under
# ``FOR UPDATE SKIP LOCKED``, so each due message goes to one drainer, and a claim whose
# drainer died becomes due again when its lease runs out. Triage (the cursor and the
# series) runs under one transaction-scoped advisory lock. ``collectors`` lists the live
# collectors by heartbeat; their shards are session advisory locks, which need no table.
# Outbox ids are not committed in id order when several collectors write, so a cursor over
# ids could pass a row that commits later: each row carries its own ``triaged`` flag here.
_V4_NOTIFY_LEASES = (
    "ALTER TABLE outbox ADD COLUMN triaged BOOLEAN NOT NULL DEFAULT false",
    "CREATE INDEX outbox_untriaged ON outbox (id) WHERE NOT triaged",
    """CREATE TABLE outbox_delivery (
  outbox_id BIGINT NOT NULL,
  channel TEXT COLLATE "C" NOT NULL,
  kind TEXT COLLATE "C" NOT NULL,
  series TEXT COLLATE "C" NOT NULL,
  status TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at DOUBLE PRECISION NOT NULL,
  last_error TEXT,
  n_grouped INTEGER NOT NULL DEFAULT 0,
  created_at DOUBLE PRECISION NOT NULL,
  updated_at DOUBLE PRECISION NOT NULL,
  claimed_by TEXT,
  claim_until DOUBLE PRECISION,
  PRIMARY KEY (outbox_id, channel, kind)
)""",
    "CREATE INDEX outbox_delivery_due ON outbox_delivery (next_attempt_at) WHERE status = 'pending'",
    "CREATE INDEX outbox_delivery_series ON outbox_delivery (series, status)",
    """CREATE TABLE notify_series (
  series TEXT COLLATE "C" PRIMARY KEY,
  client TEXT COLLATE "C" NOT NULL,
  severity TEXT NOT NULL,
  recent TEXT NOT NULL DEFAULT '[]',
  flapping INTEGER NOT NULL DEFAULT 0,
  last_outbox_id BIGINT,
  last_transition TEXT,
  last_at DOUBLE PRECISION,
  opened_notified_at DOUBLE PRECISION,
  grouped INTEGER NOT NULL DEFAULT 0
)""",
    """CREATE TABLE collectors (
  id TEXT COLLATE "C" PRIMARY KEY,
  pid INTEGER NOT NULL,
  backend_start TIMESTAMPTZ,
  started_at DOUBLE PRECISION NOT NULL,
  heartbeat_at DOUBLE PRECISION NOT NULL,
  shards_owned INTEGER NOT NULL DEFAULT 0
)""",
)

PG_MIGRATIONS: tuple[PgMigration, ...] = (
    PgMigration(
        version=1, name="tables: objects, owned readings, latest, anomalies, outbox", statements=_V1_TABLES
    ),
    PgMigration(version=2, name="per-minute and per-hour rollups", statements=_V2_ROLLUPS),
    PgMigration(version=3, name="API keys, announced on a channel", statements=_V3_API_KEYS),
    PgMigration(
        version=4,
        name="notifier delivery, noise and claim tables; collectors' heartbeats",
        statements=_V4_NOTIFY_LEASES,
    ),
)
PG_SCHEMA_VERSION = PG_MIGRATIONS[-1].version
"""The PostgreSQL schema version this release writes."""

_VERSION_DDL = """CREATE TABLE IF NOT EXISTS schema_version (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at DOUBLE PRECISION NOT NULL
)"""


async def pg_schema_version(conn: AsyncConnection[tuple[object, ...]]) -> int:
    """The newest step applied (0 for an empty database)."""
    cur = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0  # type: ignore[call-overload]


async def pg_migrate(conn: AsyncConnection[tuple[object, ...]], *, now: float | None = None) -> list[int]:
    """Apply the missing steps in order, each in its own transaction; returns those applied."""
    applied: list[int] = []
    for step in PG_MIGRATIONS:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            current = await pg_schema_version(conn)
            if current > PG_SCHEMA_VERSION:
                raise StoreError(
                    f"the PostgreSQL store has schema version {current}, newer than this "
                    f"release's {PG_SCHEMA_VERSION}: upgrade iotedge or use another database"
                )
            if current >= step.version:
                continue
            await conn.execute(_VERSION_DDL)
            for statement in step.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                (step.version, step.name, time.time() if now is None else now),
            )
        applied.append(step.version)
    return applied
