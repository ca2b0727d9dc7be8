"""The collector: polls the device API, stores readings, runs the rules, records their transitions.

``refresh()`` runs exactly one cycle and never raises; ``run()`` only loops around it,
booking the next cycle after the current one ends (cycles never overlap) with a little
jitter. Tests call ``refresh()`` directly.

About 400 lines on purpose: one coordinator whose steps (catalogue, poll, backfill, store,
rules, retention) share its health and schedule; split, they would pass that state around.

When the store does not answer (a PostgreSQL server down or unreachable), polling goes on:
the readings it could not write wait in a bounded in-memory buffer (oldest dropped first
when full) and are written, oldest first and in batches, at the next cycles once the store
answers. The rules do not judge buffered readings: their transitions would be recorded
late and out of order, so an outage only delays data, and may miss anomalies within it.
"""

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from iotedge.edge.metrics import EdgeMetrics
from iotedge.edge.normalise import (
    CatalogueEntry,
    Normalised,
    Reading,
    normalise_catalogue,
    normalise_data,
    normalise_history,
)
from iotedge.edge.rules import Baseline, RuleEngine, Transitions
from iotedge.edge.shards import AllShards, ShardOwnership
from iotedge.edge.store import ObjectRow
from iotedge.edge.store.aio import AsyncEdgeStore
from iotedge.edge.upstream import DeviceApiClient
from iotedge.errors import IotedgeError, StoreError, UpstreamError
from iotedge.memory import trim

__all__ = ["Collector", "CollectorHealth", "CycleReport"]

_log = logging.getLogger(__name__)

_CATALOGUE_EVERY = 12  # cycles between catalogue refreshes (1 min at the default 5 s)
_PRUNE_EVERY = 720  # cycles between retention passes (1 h at the default 5 s)
# Buffered readings are written this many per store call once the store answers again.
_FLUSH_BATCH = 5000
# New objects are backfilled, stored and evaluated this many at a time, so a first cycle
# over a large fleet never holds every object's history in memory at once.
_BACKFILL_CHUNK = 250
# A steady cycle's readings are stored and judged this many objects at a time (see _store_polled).
_STORE_SLICE = 1000


@dataclass
class CollectorHealth:
    """What the collector knows about its own state, for /readyz and metrics."""

    ok: bool = False
    cycles: int = 0
    consecutive_failures: int = 0
    last_success_at: float | None = None
    upstream_ok_at: float | None = None
    last_attempt_at: float | None = None
    last_error: str | None = None  # the device API's last trouble
    last_cycle_seconds: float = 0.0
    readings_ingested: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    anomalies_opened: int = 0
    store_error: str | None = None


@dataclass(frozen=True)
class CycleReport:
    """The outcome of one cycle."""

    ok: bool
    polled: int
    failed: int
    stored: int
    rejected: int
    opened: int
    closed: int
    error: str | None = None


class Collector:
    """Polls every object of the device API once per interval.

    Args:
        upstream: the device API client.
        store: where readings and anomaly transitions go.
        engine: the anomaly rules (pure: the collector records what they return).
        edge_id: written into notification idempotency keys.
        interval: seconds between cycle starts.
        concurrency: device requests in flight at once.
        retention: seconds of readings to keep.
        rollup_retention: seconds of per-minute and per-hour rollups to keep (None: the same as
            the readings'); long windows are still answered once the raw rows are gone.
        backfill: history points fetched for an object seen for the first time.
        clock: wall clock (reading times are wall-clock epochs).
        metrics: where cycle outcomes are counted (None: not counted).
        clients: poll only these clients' objects (None: every client), to split a fleet across edges.
        on_anomaly: called after a cycle that opened or closed anomaly events (wakes the outbox).
        shards: which clients this collector polls among several (default: all of them).
        buffer_limit: polled readings kept in memory while the store is down (oldest dropped beyond).
        known: the objects the store already holds (read once at start).
        latest: the store's newest reading per object and metric (read once at start).
    """

    def __init__(
        self,
        *,
        upstream: DeviceApiClient,
        store: AsyncEdgeStore,
        engine: RuleEngine,
        edge_id: str,
        interval: float,
        concurrency: int = 32,
        retention: float = 7 * 86400.0,
        rollup_retention: float | None = None,
        backfill: int = 60,
        clock: Callable[[], float] = time.time,
        metrics: EdgeMetrics | None = None,
        on_anomaly: Callable[[], None] | None = None,
        clients: frozenset[str] | None = None,
        shards: ShardOwnership | None = None,
        buffer_limit: int = 200_000,
        known: Iterable[ObjectRow] = (),
        latest: Iterable[tuple[str, str, str, float, float]] = (),
    ) -> None:
        self.upstream = upstream
        self.store = store
        self.engine = engine
        self.edge_id = edge_id
        self.interval = interval
        self.retention = retention
        self.rollup_retention = rollup_retention
        self.backfill = backfill
        self.health = CollectorHealth()
        self._clock = clock
        self._concurrency = max(1, concurrency)
        self._metrics = metrics
        self._on_anomaly = on_anomaly
        self.clients = clients
        self.shards: ShardOwnership = shards if shards is not None else AllShards()
        self.buffer_limit = max(0, buffer_limit)
        self.buffer: deque[Reading] = deque()
        self.buffer_dropped = 0
        self._unsaved_objects: dict[str, CatalogueEntry] = {}  # listed while the store was down
        self._store_trouble: str | None = None  # the store's error in the current cycle
        self.latest: dict[tuple[str, str], tuple[float, float]] = {
            (object_id, metric): (ts, value) for object_id, _, metric, ts, value in latest
        }
        self._catalogue: dict[str, CatalogueEntry] = {
            row.id: CatalogueEntry(row.id, row.client, row.type) for row in known
        }
        self._backfilled: set[str] = set(self._catalogue)
        self._pushed: dict[str, CatalogueEntry] = {}  # objects that push (MQTT), never polled
        self._taken_over: list[Callable[[str], bool]] = []  # clients taken from another collector

    @property
    def catalogue(self) -> dict[str, CatalogueEntry]:
        """The objects being polled, and those that push their readings."""
        return {**self._pushed, **self._catalogue} if self._pushed else self._catalogue

    def owned_catalogue(self) -> dict[str, CatalogueEntry]:
        """The catalogue's objects this collector polls now (its shards' clients)."""
        catalogue = self.catalogue
        if isinstance(self.shards, AllShards):
            return catalogue
        mine = {
            client for client in {entry.client for entry in catalogue.values()} if self.shards.owns(client)
        }
        return {object_id: entry for object_id, entry in catalogue.items() if entry.client in mine}

    def take_over(self, clients: Callable[[str], bool]) -> None:
        """The clients ``clients`` accepts were polled by another collector until now.

        Before this collector polls them (next cycle), their open anomaly events and last
        reading times are read again from the store, so that a failover continues the open
        events instead of opening duplicates.
        """
        self._taken_over.append(clients)

    async def _resume_taken_over(self, owned: Sequence[CatalogueEntry]) -> None:
        """Resume, from the store, the clients handed over by :meth:`take_over` (StoreError: next cycle)."""
        if not self._taken_over:
            return
        wanted = list(self._taken_over)

        def taken(client: str) -> bool:
            return any(accepts(client) for accepts in wanted)

        events = [event for event in await self.store.open_anomalies() if taken(event.client)]
        objects = {entry.id for entry in owned if taken(entry.client)} | {event.object_id for event in events}
        latest = await self.store.latest()
        self.engine.resume(
            events,
            objects,
            {(object_id, metric): ts for object_id, _, metric, ts, _ in latest if object_id in objects},
        )
        del self._taken_over[: len(wanted)]
        if objects:
            _log.info("took over %d objects with %d open anomaly events", len(objects), len(events))

    async def refresh(self) -> CycleReport:
        """Run one cycle: catalogue (now and then), backfill, poll, store, rules. Never raises."""
        started = time.monotonic()
        now = self._clock()
        self.health.last_attempt_at = now
        result = Normalised()
        transitions = Transitions()
        self._store_trouble = None
        try:
            report = await self._cycle(now, result, transitions)
            if self._store_trouble is None and self.health.store_error is not None:
                _log.info("store answers again; %d readings still buffered", len(self.buffer))
            self.health.store_error = self._store_trouble
        except StoreError as exc:
            if self.health.store_error is None:
                _log.error("store write failed, readings of this cycle not stored: %s", exc)
            self.health.store_error = str(exc)
            report = CycleReport(False, 0, 0, 0, 0, 0, 0, error=f"store: {exc}")
        except (IotedgeError, OSError) as exc:
            report = CycleReport(False, 0, 0, 0, 0, 0, 0, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - the loop must survive any bug in one cycle
            _log.exception("collector cycle failed unexpectedly")
            report = CycleReport(False, 0, 0, 0, 0, 0, 0, error=f"internal error: {exc!r}")
        self.health.last_cycle_seconds = time.monotonic() - started
        self._record(report, now)
        self._count(report, result, transitions, now)
        del result, transitions
        # A cycle's responses and readings are garbage now: hand their free pages back to the
        # system (a few ms) instead of leaving them to the allocator between cycles.
        trim()
        return report

    async def _cycle(self, now: float, result: Normalised, transitions: Transitions) -> CycleReport:
        await self.shards.refresh()
        catalogue_ok = True
        if self.health.cycles % _CATALOGUE_EVERY == 0 or not self._catalogue:
            catalogue_ok = await self._refresh_catalogue(now, result)
        owned = [entry for entry in self._catalogue.values() if self.shards.owns(entry.client)]
        stored = await self._flush_buffer(now)
        await self._resume_taken_over(owned)
        new = [entry for entry in owned if entry.id not in self._backfilled]
        for start in range(0, len(new), _BACKFILL_CHUNK):
            stored += await self._settle_backfill(
                await self._backfill_chunk(new[start : start + _BACKFILL_CHUNK]), now, result, transitions
            )
            trim()  # the chunk's histories are gone: the first cycle's peak stays one chunk high
        outcomes = await self._each(owned, lambda entry: self._poll(entry, result))
        failed = outcomes.count(False)
        # A collector whose shards hold no object right now has nothing to poll: not a failure.
        polled_ok = failed < len(outcomes) if outcomes else bool(self._catalogue)
        if polled_ok:
            self.health.upstream_ok_at = now  # the device API answered, whatever the store does next
        mine = {entry.id: entry for entry in owned} if len(owned) < len(self._catalogue) else self._catalogue
        stored += await self._store_polled(
            result.readings, mine, now, transitions, check_offline=polled_ok and catalogue_ok
        )
        if (transitions.opened or transitions.closed) and self._on_anomaly is not None:
            self._on_anomaly()
        if self.health.cycles % _PRUNE_EVERY == 0 and self._store_trouble is None:
            try:
                rollups_before = None if self.rollup_retention is None else now - self.rollup_retention
                pruned = await self.store.prune(now - self.retention, rollups_before=rollups_before)
            except StoreError as exc:
                self._store_failed(exc)
                pruned = 0
            if pruned:
                _log.info("retention: removed %d readings older than %.0f s", pruned, self.retention)
        return CycleReport(
            ok=polled_ok and catalogue_ok,
            polled=len(outcomes),
            failed=failed,
            stored=stored,
            rejected=sum(result.rejected.values()),
            opened=len(transitions.opened),
            closed=len(transitions.closed),
            error=None if polled_ok and catalogue_ok else f"{failed}/{len(outcomes)} device calls failed",
        )

    async def _refresh_catalogue(self, now: float, result: Normalised) -> bool:
        try:
            payload = await self.upstream.objects()
        except UpstreamError as exc:
            if not self._catalogue:
                raise
            _log.debug("catalogue refresh failed, keeping %d known objects: %s", len(self._catalogue), exc)
            return False
        entries, rejected = normalise_catalogue(payload)
        if self.clients is not None:
            entries = [entry for entry in entries if entry.client in self.clients]
        for reason, count in rejected.items():
            result.reject(reason, count)
        if not entries:
            if not self._catalogue:
                raise UpstreamError(
                    "payload", self.upstream.base_url + "/iot_objects", detail="no valid objects"
                )
            return False
        try:
            await self.store.upsert_objects(entries, now)
        except StoreError as exc:
            # Polling goes on from this list; the objects are recorded once the store answers.
            self._store_failed(exc)
            self._unsaved_objects = {entry.id: entry for entry in entries}
        for entry in entries:
            known = self._catalogue.get(entry.id)
            if known is not None and known.client != entry.client:
                # A new owner starts with none of the old owner's history, in memory too.
                _log.info("%s moved from %s to %s", entry.id, known.client, entry.client)
                self.engine.forget(entry.id)
                for key in [key for key in self.latest if key[0] == entry.id]:
                    del self.latest[key]
        self._catalogue = {entry.id: entry for entry in entries}
        if self._metrics is not None:
            self._metrics.init_anomaly_labels(
                {(e.client, m, r) for e in entries for m, r in self.engine.rule_names(e.type)}
            )
        return True

    async def _each(
        self, entries: Sequence[CatalogueEntry], job: Callable[[CatalogueEntry], Awaitable[bool]]
    ) -> list[bool]:
        """``job`` of every entry, at most ``concurrency`` at a time, in as many worker tasks.

        A few workers pulling from one list cost far less memory and scheduling than one
        task per object on a fleet of thousands.
        """
        outcomes = [False] * len(entries)
        pending = iter(range(len(entries)))

        async def worker() -> None:
            for index in pending:
                outcomes[index] = await job(entries[index])

        await asyncio.gather(*(worker() for _ in range(min(self._concurrency, len(entries)))))
        return outcomes

    async def _backfill_chunk(self, entries: Sequence[CatalogueEntry]) -> Normalised:
        chunk = Normalised()
        await self._each(entries, lambda entry: self._backfill(entry, chunk))
        return chunk

    def _store_failed(self, exc: StoreError) -> None:
        """Note the store's failure in this cycle (logged once per outage)."""
        if self._store_trouble is None and self.health.store_error is None:
            _log.error("store write failed; buffering polled readings in memory: %s", exc)
        self._store_trouble = str(exc)

    def _buffer(self, readings: Sequence[Reading]) -> None:
        """Keep readings the store could not take; beyond the limit the oldest are dropped."""
        buffer = self.buffer
        buffer.extend(readings)
        dropped = len(buffer) - self.buffer_limit
        if dropped > 0:
            for _ in range(dropped):
                buffer.popleft()
            self.buffer_dropped += dropped
            if self._metrics is not None:
                self._metrics.store_buffer_dropped.inc(dropped)
        if self._metrics is not None:
            self._metrics.store_buffer_readings.set(len(buffer))

    async def _flush_buffer(self, now: float) -> int:
        """Write buffered readings (and objects), oldest first, while the store takes them.

        Returns how many were new. Buffered readings are not judged by the rules.
        """
        if self._store_trouble is not None:
            return 0
        stored = 0
        try:
            if self._unsaved_objects:
                await self.store.upsert_objects(list(self._unsaved_objects.values()), now)
                self._unsaved_objects = {}
            while self.buffer:
                batch = [self.buffer[index] for index in range(min(_FLUSH_BATCH, len(self.buffer)))]
                stored += await self.store.insert_readings(batch)
                for _ in batch:
                    self.buffer.popleft()
                await asyncio.sleep(0)  # requests are served between two batches
        except StoreError as exc:
            self._store_failed(exc)
        if self._metrics is not None:
            self._metrics.store_buffer_readings.set(len(self.buffer))
        return stored

    async def _store_or_buffer(
        self,
        readings: list[Reading],
        objects: Mapping[str, CatalogueEntry],
        now: float,
        transitions: Transitions,
        *,
        check_offline: bool = False,
    ) -> int:
        """:meth:`_store_and_evaluate` polled readings of ``objects`` (the offline rule judges only
        those); into the buffer when the store fails."""
        if self._store_trouble is None and not self.buffer:
            try:
                return await self._store_and_evaluate(
                    readings, objects, now, transitions, check_offline=check_offline
                )
            except StoreError as exc:
                self._store_failed(exc)
        self._buffer(readings)
        return 0

    async def _store_polled(
        self,
        readings: list[Reading],
        objects: Mapping[str, CatalogueEntry],
        now: float,
        transitions: Transitions,
        *,
        check_offline: bool,
    ) -> int:
        """:meth:`_store_or_buffer` a cycle's readings, ``_STORE_SLICE`` objects at a time.

        One batch of 20,000 readings held the event loop (store write, rules) for about a
        second, and API requests waited that long; between two slices they are served. Each
        object's readings stay in one slice, so every series is judged as in one batch; the
        offline rule runs once, after the last slice, over every object.
        """
        by_object: dict[str, list[Reading]] = {}
        for reading in readings:
            by_object.setdefault(reading.object_id, []).append(reading)
        ids = list(by_object)
        stored = 0
        for start in range(0, len(ids), _STORE_SLICE):
            part = ids[start : start + _STORE_SLICE]
            stored += await self._store_or_buffer(
                [reading for object_id in part for reading in by_object[object_id]],
                {object_id: objects[object_id] for object_id in part if object_id in objects},
                now,
                transitions,
            )
            await asyncio.sleep(0)  # requests are served between two slices
        return stored + await self._store_or_buffer(
            [], objects, now, transitions, check_offline=check_offline
        )

    async def _store_and_evaluate(
        self,
        readings: list[Reading],
        objects: Mapping[str, CatalogueEntry],
        now: float,
        transitions: Transitions,
        *,
        check_offline: bool = False,
    ) -> int:
        """Store a batch, run the rules over it and record what they changed; returns how many were new.

        Series the rules have not seen yet get their stored history first, read before the
        batch is written so that it never contains the readings being judged.
        """
        needs = self.engine.baseline_needs(readings, objects)
        size = self.engine.baseline_size
        baselines: dict[tuple[str, str], Baseline] = {}
        for (object_id, metric), before in needs.items():
            history = await self.store.raw_series(object_id, metric, float("-inf"), before, size)
            baselines[(object_id, metric)] = Baseline(
                times=[ts for ts, _ in history], values=[value for _, value in history]
            )
        stored = await self.store.insert_readings(readings)
        evaluated = self.engine.evaluate(
            readings, objects, now=now, check_offline=check_offline, baselines=baselines
        )
        if evaluated:
            await self.store.record_transitions(
                evaluated.opened, evaluated.closed, edge_id=self.edge_id, now=now
            )
        transitions.opened.extend(evaluated.opened)
        transitions.closed.extend(evaluated.closed)
        return stored

    async def _settle_backfill(
        self, chunk: Normalised, now: float, result: Normalised, transitions: Transitions
    ) -> int:
        """Store and evaluate one chunk of history; its readings are not kept afterwards."""
        stored = await self._store_or_buffer(chunk.readings, self._catalogue, now, transitions)
        self._remember_latest(chunk.readings)
        for reason, count in chunk.rejected.items():
            result.reject(reason, count)
        return stored

    async def ingest(
        self, readings: list[Reading], new_objects: Sequence[CatalogueEntry], *, now: float
    ) -> tuple[int, Transitions]:
        """Take readings pushed to the edge (MQTT) through the same store and rules as a poll.

        ``new_objects`` are registered first. Raises StoreError when the store cannot write.
        Returns the readings stored and the transitions.
        """
        if new_objects:
            await self.store.upsert_objects(new_objects, now)
            self._pushed.update((entry.id, entry) for entry in new_objects)
        transitions = Transitions()
        stored = await self._store_and_evaluate(readings, self.catalogue, now, transitions)
        self._remember_latest(readings)
        self.health.readings_ingested += stored
        self.health.anomalies_opened += len(transitions.opened)
        if (transitions.opened or transitions.closed) and self._on_anomaly is not None:
            self._on_anomaly()
        if self._metrics is not None:
            self._metrics.record_ingested(stored)
            for event in transitions.opened:
                self._metrics.record_anomaly(event.client, event.metric, event.rule)
        return stored, transitions

    async def _backfill(self, entry: CatalogueEntry, result: Normalised) -> bool:
        try:
            payload = await self.upstream.history(entry.id, self.backfill)
        except UpstreamError as exc:
            _log.debug("history of %s unavailable: %s", entry.id, exc)
            return False
        result.extend(normalise_history(payload, entry))
        self._backfilled.add(entry.id)
        return True

    async def _poll(self, entry: CatalogueEntry, result: Normalised) -> bool:
        try:
            payload = await self.upstream.data(entry.id)
        except UpstreamError as exc:
            if exc.reason == "payload":
                result.reject("not_json")
            return False
        normalised = normalise_data(payload, entry)
        result.extend(normalised)
        return bool(normalised.readings) or not normalised.rejected

    def _record(self, report: CycleReport, now: float) -> None:
        health = self.health
        health.cycles += 1
        health.readings_ingested += report.stored
        health.anomalies_opened += report.opened
        if report.ok:
            if not health.ok and health.cycles > 1:
                _log.info("device API recovered after %d failed cycles", health.consecutive_failures)
            health.ok = True
            health.consecutive_failures = 0
            health.last_success_at = now
            health.last_error = None
            return
        if (health.ok or health.cycles == 1) and health.store_error is None:
            _log.warning("device API trouble: %s", report.error)
        health.ok = False
        health.consecutive_failures += 1
        if (
            health.store_error is None
        ):  # a store failure is the store's (health.store_error), not the device API's
            health.last_error = report.error

    def _count(self, report: CycleReport, result: Normalised, transitions: Transitions, now: float) -> None:
        """Update rejection counts, the latest values and the metrics after a cycle."""
        self._remember_latest(result.readings)
        for reason, count in result.rejected.items():
            self.health.rejected[reason] = self.health.rejected.get(reason, 0) + count
        metrics = self._metrics
        if metrics is None:
            return
        newest = max((r.ts for r in result.readings), default=None)
        metrics.observe_cycle(
            ok=report.ok,
            duration_s=self.health.last_cycle_seconds,
            consecutive_failures=self.health.consecutive_failures,
            lag_s=None if newest is None else max(0.0, now - newest),
        )
        metrics.record_ingested(report.stored)
        for reason, count in result.rejected.items():
            metrics.record_rejected(reason, count)
        for event in transitions.opened:
            metrics.record_anomaly(event.client, event.metric, event.rule)

    def _remember_latest(self, readings: list[Reading]) -> None:
        latest = self.latest
        for reading in readings:
            key = (reading.object_id, reading.metric)
            if reading.ts >= latest.get(key, (float("-inf"), 0.0))[0]:
                latest[key] = (reading.ts, reading.value)

    def latest_values(self) -> list[tuple[str, str, str, float]]:
        """(object_id, client, metric, value) of each object's newest readings, from memory."""
        catalogue = self.catalogue
        return [
            (object_id, catalogue[object_id].client, metric, value)
            for (object_id, metric), (_, value) in self.latest.items()
            if object_id in catalogue
        ]

    async def run(self) -> None:
        """Poll forever, one cycle per interval, until cancelled."""
        while True:
            started = time.monotonic()
            await self.refresh()
            elapsed = time.monotonic() - started
            # A little jitter keeps many edges from polling one device API in lockstep.
            await asyncio.sleep(max(0.0, self.interval - elapsed) + random.uniform(0, self.interval * 0.05))
