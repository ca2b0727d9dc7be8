"""Shard leases of the collectors: PostgreSQL session advisory locks, one per shard.

The fleet is split into a fixed number of shards (:func:`iotedge.edge.shards.shard_of`).
A collector polls the clients of the shards it holds a lock on. Locks belong to the
session, so the collector keeps one dedicated connection (not the store's pool), and when
it dies its connection drops and PostgreSQL releases every lock it held: no lease to
expire, no consensus of our own.

Each :meth:`PgShardLeases.refresh` (once per poll interval):

1. upserts this collector's heartbeat row in ``collectors``, with its backend's pid;
2. counts the live collectors: a heartbeat newer than ``3 * interval`` whose session still
   exists (so a collector whose connection dropped stops counting at once), and deletes
   the rows of the others;
3. computes the fair share ``ceil(shards / live)``;
4. gives back (``pg_advisory_unlock``) the shards it holds above the fair share, so a
   newcomer gets its share at its next refresh;
5. takes free shards (``pg_try_advisory_lock``) until it holds the fair share.

``live * ceil(shards / live) >= shards``: once every live collector has refreshed with the
same count, every shard is held, and a lock is held by one session at most, so every
client is polled by exactly one collector. A lost connection means owning nothing until
the next refresh reconnects.
"""

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Gauge

from iotedge.edge.shards import shard_of

__all__ = ["LEASE_NAMESPACE", "KeptWhileAway", "PgShardLeases", "collector_id", "register_shard_metrics"]

logger = logging.getLogger(__name__)

LEASE_NAMESPACE = 0x1E0_5AD
"""First key of the two-key advisory locks on shards (the second is the shard number)."""

_CONNECT_TIMEOUT_S = 5
_NOW = "extract(epoch FROM clock_timestamp())"  # the server's clock: collectors' clocks may differ


def collector_id() -> str:
    """A name for this collector, unique among replicas: host, process and a random tail."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class PgShardLeases:
    """The shards one collector holds, as session advisory locks on a dedicated connection.

    Implements :class:`iotedge.edge.shards.ShardOwnership`.

    Args:
        url: the store's database.
        interval_s: the poll interval; a heartbeat older than three of them is dead.
        shards: the fixed number of shards (the same for every collector of a fleet).
        name: this collector's id in ``collectors`` (default: :func:`collector_id`).
        on_change: called with the owned shards after a refresh that changed them.
        refresh_timeout_s: a refresh that takes longer gives up and owns nothing (default:
            the interval, at least the connect timeout).
        settle_s: how long :meth:`start` waits between announcing this collector and taking
            its share (default: the interval, at most 30 s), so collectors started together
            count each other first. Otherwise the first one up takes every shard and keeps
            them through its first cycle, which back-fills history and can last minutes.
    """

    def __init__(
        self,
        url: str,
        *,
        interval_s: float,
        shards: int = 64,
        name: str | None = None,
        on_change: Callable[[frozenset[int]], None] | None = None,
        refresh_timeout_s: float | None = None,
        settle_s: float | None = None,
    ) -> None:
        if shards < 1:
            raise ValueError("shards must be at least 1")
        self.url = url
        self.interval_s = interval_s
        self.refresh_timeout_s = refresh_timeout_s or max(interval_s, _CONNECT_TIMEOUT_S)
        self.shards = shards
        self.settle_s = min(interval_s, 30.0) if settle_s is None else settle_s
        if self.settle_s >= 3 * interval_s:  # the others would count a settling collector dead
            raise ValueError("settle_s must be shorter than three intervals")
        self.collector_id = name or collector_id()
        self.owned: frozenset[int] = frozenset()
        self.live = 0
        self.fair_share = 0
        self.refreshes = 0
        self.reconnects = 0
        self._on_change = on_change
        self._conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None

    @property
    def connected(self) -> bool:
        """Whether the last refresh reached PostgreSQL (its session, so its locks, still stand)."""
        return self._conn is not None and not self._conn.broken and not self._conn.closed

    def owns(self, client: str) -> bool:
        """True when ``client``'s shard is held by this collector on a working connection."""
        if self._conn is None or self._conn.broken or self._conn.closed:
            return False
        return shard_of(client, self.shards) in self.owned

    async def start(self) -> None:
        """Announce this collector, wait ``settle_s``, then take the first share.

        A failure leaves nothing owned; the next refresh retries.
        """
        with contextlib.suppress(psycopg.Error, TimeoutError):
            async with asyncio.timeout(self.refresh_timeout_s):
                await self._heartbeat(await self._connection())
        await asyncio.sleep(self.settle_s)
        await self.refresh()

    async def refresh(self) -> None:
        """Heartbeat, count live collectors, give back extra shards and take free ones."""
        before = self.owned
        try:
            # A server that stops answering must not hold the collector's loop.
            async with asyncio.timeout(self.refresh_timeout_s):
                conn = await self._connection()
                await self._refresh(conn)
        except (psycopg.Error, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            logger.warning("shard leases: lost PostgreSQL (%s); owning no shard until it is back", detail)
            self.owned = frozenset()
            await self._drop()
        self.refreshes += 1
        if self.owned != before:
            logger.info(
                "collector %s holds %s of %s shards (%s live)",
                self.collector_id,
                len(self.owned),
                self.shards,
                self.live,
            )
            if self._on_change is not None:
                self._on_change(self.owned)

    async def close(self) -> None:
        """Give back every shard, remove this collector's heartbeat and close the connection."""
        conn = self._conn
        if conn is not None and not conn.broken and not conn.closed:
            try:
                await conn.execute("SELECT pg_advisory_unlock_all()")
                await conn.execute("DELETE FROM collectors WHERE id = %s", (self.collector_id,))
            except psycopg.Error as exc:
                logger.warning("shard leases: could not sign off cleanly: %s", exc)
        self.owned = frozenset()
        await self._drop()

    def status(self) -> dict[str, Any]:
        """What ``/status`` and the metrics show."""
        return {
            "collector_id": self.collector_id,
            "shards": self.shards,
            "owned": sorted(self.owned),
            "owned_count": len(self.owned),
            "live_collectors": self.live,
            "fair_share": self.fair_share,
        }

    async def _connection(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        if self._conn is not None and (self._conn.broken or self._conn.closed):
            self.owned = frozenset()  # a new session holds no lock
            await self._drop()
        if self._conn is None:
            self._conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S
            )
            self.reconnects += 1
        return self._conn

    async def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):  # already gone: nothing to give back
                await conn.close()

    async def _heartbeat(self, conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        await conn.execute(
            "INSERT INTO collectors AS c (id, pid, backend_start, started_at, heartbeat_at, shards_owned)"  # noqa: S608
            f" SELECT %s, pg_backend_pid(), a.backend_start, {_NOW}, {_NOW}, %s"
            " FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()"
            " ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, backend_start = excluded.backend_start,"
            " heartbeat_at = excluded.heartbeat_at, shards_owned = excluded.shards_owned",
            (self.collector_id, len(self.owned)),
        )

    async def _refresh(self, conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        stale_after = 3 * self.interval_s
        await self._heartbeat(conn)
        # Dead: no heartbeat for three intervals, or its session is gone (killed, dropped).
        await conn.execute(
            f"DELETE FROM collectors c WHERE c.heartbeat_at < {_NOW} - %s OR NOT EXISTS ("  # noqa: S608 (a constant)
            " SELECT 1 FROM pg_stat_activity a WHERE a.pid = c.pid"
            # another role's start time is hidden (NULL) without pg_read_all_stats
            " AND (a.backend_start IS NULL OR a.backend_start = c.backend_start))",
            (stale_after,),
        )
        cur = await conn.execute("SELECT COUNT(*) FROM collectors")
        row = await cur.fetchone()
        self.live = max(1, int(row[0]) if row else 1)
        self.fair_share = math.ceil(self.shards / self.live)
        owned = set(self.owned)
        for shard in sorted(owned, reverse=True)[: max(0, len(owned) - self.fair_share)]:
            await conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LEASE_NAMESPACE, shard))
            owned.discard(shard)
        if len(owned) < self.fair_share:
            owned |= await self._take(conn, self.fair_share - len(owned), owned)
        self.owned = frozenset(owned)

    async def _take(
        self, conn: psycopg.AsyncConnection[tuple[Any, ...]], wanted: int, mine: set[int]
    ) -> set[int]:
        """Lock up to ``wanted`` shards nobody holds; another collector may win a race for one."""
        cur = await conn.execute(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
            " AND classid = %s"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LEASE_NAMESPACE,),
        )
        held = {int(r[0]) for r in await cur.fetchall()} | mine
        # Start from a place of our own, so newcomers racing for free shards rarely collide.
        start = shard_of(self.collector_id, self.shards)
        taken: set[int] = set()
        for step in range(self.shards):
            if len(taken) >= wanted:
                break
            shard = (start + step) % self.shards
            if shard in held:
                continue
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LEASE_NAMESPACE, shard))
            got = await cur.fetchone()
            if got is not None and got[0]:
                taken.add(shard)
        return taken


class KeptWhileAway:
    """:class:`PgShardLeases` for the collector: while PostgreSQL is away, the shards last held.

    A lease lost with the database does not stop the collector: it keeps polling the clients
    of the shards it held at its last successful refresh, into its bounded buffer, so an
    outage loses no reading. Readings are stored idempotently, so a collector that took those
    shards meanwhile (only this one lost the database) costs nothing but a second poll.
    Implements :class:`iotedge.edge.shards.ShardOwnership`.
    """

    def __init__(self, leases: PgShardLeases) -> None:
        self.leases = leases
        self.kept: frozenset[int] = frozenset()

    async def start(self) -> None:
        """Take the first share."""
        await self.refresh()

    async def refresh(self) -> None:
        """Refresh the leases; remember what they hold while PostgreSQL answers."""
        await self.leases.refresh()
        if self.leases.connected:
            self.kept = self.leases.owned

    def owns(self, client: str) -> bool:
        """The leases' answer, or while PostgreSQL is away, whether ``client`` was ours last."""
        if self.leases.connected:
            return self.leases.owns(client)
        return shard_of(client, self.leases.shards) in self.kept

    async def close(self) -> None:
        """Give every shard back."""
        await self.leases.close()
        self.kept = frozenset()

    def status(self) -> dict[str, Any]:
        """The leases' status, and whether the shards shown are only kept (database away)."""
        away = not self.leases.connected
        return {**self.leases.status(), "database_away": away, "kept": sorted(self.kept) if away else []}


def register_shard_metrics(leases: PgShardLeases, registry: CollectorRegistry) -> None:
    """Gauges ``iotedge_collector_shards_owned`` and ``iotedge_collector_live`` on ``registry``."""
    owned = Gauge(
        "iotedge_collector_shards_owned", "Shards this collector holds a lease on.", registry=registry
    )
    owned.set_function(lambda: float(len(leases.owned)))
    live = Gauge(
        "iotedge_collector_live",
        "Live collectors this collector counted at its last refresh.",
        registry=registry,
    )
    live.set_function(lambda: float(leases.live))
