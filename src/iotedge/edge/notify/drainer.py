"""The outbox drainer: triages new outbox rows, then delivers due messages with retries.

At least once: a message is marked sent only after its channel returned (the receiver
accepted it), so a crash in between sends it again after restart, with the same
idempotency key. All database work runs in a worker thread, in short transactions that
never span network I/O, through an :class:`~iotedge.edge.notify.backend.OutboxBackend`: the
SQLite store's connections, or a PostgreSQL database several drainers share (each due
message is then claimed by one of them with a lease).
"""

import asyncio
import contextlib
import functools
import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg

from iotedge.config_notify import NotifySettings
from iotedge.edge.notify.backend import OutboxBackend, Sql, SqliteOutbox
from iotedge.edge.notify.base import Channel, DeliveryError
from iotedge.edge.notify.channels import build_channels
from iotedge.edge.notify.message import Kind, Notification
from iotedge.edge.notify.noise import (
    HELD,
    TriageResult,
    release_held,
    settle_flapping,
    triage,
)
from iotedge.edge.store import SqliteDatabase
from iotedge.errors import StoreError

__all__ = ["DrainReport", "Drainer", "backoff_delay"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def backoff_delay(attempts: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full-jitter backoff: uniform in ``[0, min(cap, base * 2 ** (attempts - 1))]``."""
    ceiling = min(cap_s, base_s * 2.0 ** min(max(attempts - 1, 0), 60))
    return rng.uniform(0.0, ceiling)


@dataclass
class DrainReport:
    """What one :meth:`Drainer.drain_once` pass did."""

    triaged: int = 0
    settled: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    suppressed: int = 0
    waiting: int = 0
    error: str | None = None


class Drainer:
    """Delivers the outbox on every configured channel, with noise control and retries.

    Args:
        database: the store's connections (the edge shares its store's), the path of a
            store file to open for the drainer alone (tools and tests), or a backend
            (:class:`~iotedge.edge.notify.backend.PgOutbox` for PostgreSQL).
        settings: channels, routes, noise control and retry settings.
        channels: channel objects by name; built from ``settings`` when omitted.
        http_client: used by the webhook channel when ``channels`` is omitted; the
            drainer creates (and closes) its own when this is omitted too.
        clock: epoch seconds; compared with the outbox's ``created_at``.
        rng: the jitter source.
        on_outcome: called with (channel, outcome, count) for each delivery outcome (the metrics).
    """

    def __init__(
        self,
        database: OutboxBackend | SqliteDatabase | str | Path,
        settings: NotifySettings,
        *,
        channels: Mapping[str, Channel] | None = None,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_outcome: Callable[[str, str, int], None] | None = None,
        mqtt_channel: Channel | None = None,
    ) -> None:
        self.settings = settings
        self._on_outcome = on_outcome
        self._clock = clock
        self._rng = rng or random.Random()
        self._owned_client: httpx.AsyncClient | None = None
        if channels is None:
            if http_client is None:
                http_client = self._owned_client = httpx.AsyncClient()
            channels = build_channels(settings, http_client=http_client, clock=clock, mqtt=mqtt_channel)
        self._channels = dict(channels)
        if isinstance(database, SqliteDatabase | str | Path):
            database = SqliteOutbox(database)
        self.backend: OutboxBackend = database
        self._started = False
        # One thread owns every database call, so a cancelled pass can never overlap the
        # next call or aclose() on the connection.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="iotedge-outbox-db")
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._retry_now: set[str] = set()
        self.pending: int | None = None
        """Undelivered messages at the end of the last pass (None before the first)."""

    async def aclose(self) -> None:
        """Close the database connection and the HTTP client the drainer created."""
        async with self._lock:
            if self._owned_client is not None:
                await self._owned_client.aclose()
            await self._db(self.backend.close)
            self._executor.shutdown(wait=False)

    def wake(self) -> None:
        """Start the next pass now instead of after the poll interval."""
        self._wake.set()

    def channel_back(self, channel: str) -> None:
        """``channel`` works again (the MQTT broker is back): make its backlog due now."""
        self._retry_now.add(channel)
        self._wake.set()

    async def run(self) -> None:
        """Drain forever, one pass per poll interval (or sooner after :meth:`wake`)."""
        logger.info("notification drainer started: channels %s", ", ".join(self._channels))
        while True:
            report = await self.drain_once()
            if report.triaged >= self.settings.batch_size:
                continue  # a backlog: keep going without waiting
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_interval_s):
                    await self._wake.wait()
            self._wake.clear()

    async def drain_once(self) -> DrainReport:
        """One pass: triage new rows, settle flapping series, send what is due. Never raises."""
        report = DrainReport()
        async with self._lock:
            try:
                await self._pass(report)
            except Exception as exc:
                # The store may be locked or broken; the next pass tries again.
                report.error = f"{type(exc).__name__}: {exc}"
                logger.warning(
                    "notification pass failed: %s",
                    report.error,
                    exc_info=not isinstance(exc, sqlite3.Error | psycopg.Error | StoreError),
                )
        return report

    async def _pass(self, report: DrainReport) -> None:
        now = self._clock()
        if not self._started:
            # A restart is a good moment to retry: the receiver may have come back while we
            # were down, so messages waiting out a long backoff become due now (once each).
            # Done in the first pass, so a database away at start fails a pass, not the start.
            await self._tx(self._retry_all_now, now)
            self._started = True
        while self._retry_now:
            await self._tx(self._make_due, self._retry_now.pop(), now)
        triaged, settled = await self._tx(self._triage, now, exclusive=True)
        report.triaged, report.settled = triaged.triaged, settled
        for channel, count in triaged.suppressed.items():
            self._tally("suppressed", channel, count)
            report.suppressed += count
        down: set[str] = set()
        claimed, after = 0, None
        while claimed < self.settings.batch_size:
            # A shared backend hands out due rows a chunk at a time; the pass moves forward
            # through them once, so rows it gave back or left waiting are not claimed again.
            due = await self._db(
                functools.partial(
                    self.backend.claim_due,
                    now,
                    self.settings.batch_size - claimed,
                    after=after,
                    skip=set(down),
                )
            )
            claimed += len(due)
            skipped = []
            for row in due:
                if row["channel"] in down:
                    skipped.append((row["outbox_id"], row["channel"], row["kind"]))
                else:
                    await self._deliver(row, down, report)
            if skipped:
                await self._db(self.backend.release, skipped)
            if not self.backend.shared or not due:
                break
            after = (due[-1]["outbox_id"], due[-1]["channel"], due[-1]["kind"])
        self.pending = await self._db(self.backend.pending)

    def _triage(self, conn: Sql, now: float) -> tuple[TriageResult, int]:
        result = triage(conn, self.settings, now, feed=self.backend.feed)
        return result, settle_flapping(conn, self.settings, now)

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Rows of a read-only statement, by column name."""
        return self.backend.query(sql, params)

    @staticmethod
    def _retry_all_now(conn: Sql, now: float) -> None:
        conn.execute(
            "UPDATE outbox_delivery SET next_attempt_at = ? WHERE status = 'pending' AND next_attempt_at > ?",
            (now, now),
        )

    @staticmethod
    def _make_due(conn: Sql, channel: str, now: float) -> None:
        """Messages of ``channel`` waiting out a backoff become due now (the channel came back)."""
        conn.execute(
            "UPDATE outbox_delivery SET next_attempt_at = ? WHERE status = 'pending' AND channel = ?"
            " AND next_attempt_at > ?",
            (now, channel, now),
        )

    async def _deliver(self, row: Any, down: set[str], report: DrainReport) -> None:
        name, now = row["channel"], self._clock()
        ident = (row["outbox_id"], name, row["kind"])
        if row["recorded_at"] is None:
            await self._finish(ident, "failed", now, "outbox row is gone", report)
            return
        # Age counts from queueing, so a backlog found after downtime is still delivered.
        if now - row["created_at"] > self.settings.max_age_s:
            error = f"gave up after max age {self.settings.max_age_s:g}s"
            if row["last_error"]:
                error += f"; last error: {row['last_error']}"
            await self._finish(ident, "failed", now, error, report)
            return
        channel = self._channels.get(name)
        if channel is None:
            await self._finish(ident, "failed", now, f"channel {name} not configured", report)
            return
        if row["kind"] == "event" and row["transition"] == "resolved":
            dep, dep_next = await self._db(self._opened_status, row["event_id"], row["outbox_id"], name)
            if dep == "pending":
                # Wait behind the opened message; wake up when it is next tried.
                await self._tx(self._update, ident, "pending", now, None, next_at=dep_next)
                report.waiting += 1
                return
            if dep != "sent":
                await self._finish(ident, "suppressed", now, None, report, "opened_not_sent")
                return
        grouped = row["n_grouped"]
        if row["reason"] == HELD:
            released = await self._tx(
                release_held, row["outbox_id"], row["series"], name, now, exclusive=True
            )
            if released is None:  # suppressed meanwhile by another drainer's triage
                await self._db(self.backend.release, [ident])
                return
            grouped = released
        note = self._note(row, grouped)
        try:
            await channel.send(note)
        except DeliveryError as exc:
            if exc.permanent:
                await self._finish(ident, "failed", self._clock(), exc.detail, report, tried=True)
            else:
                await self._retry(row, exc.detail, report)
                down.add(name)
            return
        except Exception as exc:
            # A message we cannot even render must not block every message behind it.
            logger.exception("%s could not send outbox %s", name, row["outbox_id"])
            detail = f"internal error: {type(exc).__name__}: {exc}"
            await self._finish(ident, "failed", self._clock(), detail, report, tried=True)
            return
        await self._finish(ident, "sent", self._clock(), None, report, tried=True)

    def _note(self, row: Any, grouped: int) -> Notification:
        kind: Kind = row["transition"] if row["kind"] == "event" else row["kind"]
        key = row["idempotency_key"]
        if row["kind"] != "event":
            key = f"{key}:{row['kind']}"
        try:
            event: dict[str, Any] = json.loads(row["payload"])
        except ValueError:
            event = {"event_id": row["event_id"], "message": "unreadable payload"}
        flapping = row["kind"] == "flapping"
        return Notification(
            kind=kind,
            idempotency_key=key,
            event=event,
            recorded_at=row["recorded_at"],
            edge_id=self.settings.edge_id,
            grouped=0 if flapping else grouped,
            transitions=grouped if flapping else 0,
            window_s=self.settings.flap_window_s,
            state=row["transition"] if row["kind"] == "stable" else None,
        )

    def _opened_status(self, event_id: int, before_id: int, channel: str) -> tuple[str | None, float | None]:
        rows = self._rows(
            "SELECT d.status, d.next_attempt_at FROM outbox_delivery d"
            " JOIN outbox o ON o.id = d.outbox_id"
            " WHERE o.event_id = ? AND o.transition = 'opened' AND o.id < ?"
            " AND d.channel = ? AND d.kind IN ('event', 'stable')"
            " ORDER BY d.status = 'sent' DESC, d.status = 'pending' DESC LIMIT 1",
            (event_id, before_id, channel),
        )
        return (None, None) if not rows else (str(rows[0][0]), float(rows[0][1]))

    async def _retry(self, row: Any, error: str, report: DrainReport) -> None:
        attempts = row["attempts"] + 1
        now = self._clock()
        delay = backoff_delay(
            attempts,
            base_s=self.settings.backoff_base_s,
            cap_s=self.settings.backoff_max_s,
            rng=self._rng,
        )
        await self._tx(
            self._update,
            (row["outbox_id"], row["channel"], row["kind"]),
            "pending",
            now,
            error,
            attempts_delta=1,
            next_at=now + delay,
        )
        self._tally("retried", row["channel"])
        report.retried += 1
        logger.warning(
            "%s delivery of outbox %s failed (attempt %s), retry in %.1fs: %s",
            row["channel"],
            row["outbox_id"],
            attempts,
            delay,
            error,
        )

    def _tally(self, kind: str, channel: str, count: int = 1) -> None:
        """Report an outcome to the metrics hook.

        Metrics name the outcomes from the operator's side: a retried attempt is ``failed``,
        a message given up on is ``dropped``.
        """
        if self._on_outcome is not None:
            outcome = {"retried": "failed", "failed": "dropped"}.get(kind, kind)
            self._on_outcome(channel, outcome, count)

    async def _finish(
        self,
        ident: tuple[int, str, str],
        status: str,
        now: float,
        error: str | None,
        report: DrainReport,
        reason: str | None = None,
        *,
        tried: bool = False,
    ) -> None:
        await self._tx(self._update, ident, status, now, error, reason=reason, attempts_delta=int(tried))
        channel = ident[1]
        if status == "sent":
            self._tally("sent", channel)
            report.sent += 1
        elif status == "failed":
            self._tally("failed", channel)
            report.failed += 1
            logger.error("%s delivery of outbox %s failed: %s", channel, ident[0], error)
        else:
            self._tally("suppressed", channel)
            report.suppressed += 1

    def _update(
        self,
        conn: Sql,
        ident: tuple[int, str, str],
        status: str,
        now: float,
        error: str | None,
        *,
        reason: str | None = None,
        attempts_delta: int = 0,
        next_at: float | None = None,
    ) -> None:
        conn.execute(
            "UPDATE outbox_delivery SET status = ?, updated_at = ?,"  # noqa: S608 (constant fragments)
            " last_error = COALESCE(?, last_error), reason = COALESCE(?, reason),"
            " attempts = attempts + ?, next_attempt_at = COALESCE(?, next_attempt_at)"
            f"{self.backend.release_claim} WHERE outbox_id = ? AND channel = ? AND kind = ?",
            (status, now, error, reason, attempts_delta, next_at, *ident),
        )

    async def _db(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def _tx(self, fn: Callable[..., _T], *args: Any, exclusive: bool = False, **kwargs: Any) -> _T:
        return await self._db(self._in_tx, fn, args, kwargs, exclusive)

    def _in_tx(
        self, fn: Callable[..., _T], args: tuple[Any, ...], kwargs: dict[str, Any], exclusive: bool
    ) -> _T:
        """``fn(conn, *args, **kwargs)`` in one write transaction of the backend."""
        with self.backend.transaction(exclusive=exclusive) as conn:
            return fn(conn, *args, **kwargs)
