"""The statistics answers of the SQLite store, cached until they could change (issue 16).

``object_answer`` and ``client_answer`` are the store side of ``/processed_data`` and
``/client_statistics``. An answer for the window [since, until) changes only when

* this process writes: readings, catalogue, anomaly events or a prune (every write of the
  edge goes through its one store object, so :class:`CachedSqliteStore` drops what a write
  may touch, before and after the write);
* the window moves past a reading: a sliding window (``window=1h``) loses its oldest
  reading once ``since`` passes it, and gains one stamped at or after ``until`` once
  ``until`` passes it;
* the window is cut into other pieces (:func:`~iotedge.edge.store.rollups.split`, whose
  cuts also follow the rollups' watermark, which a batch closing minutes moves): the sums
  then pool the same readings in another order, which may differ in the last bit.

So each cached answer keeps the bounds it holds for: ``since`` may move up to the first
reading at or after the ``since`` it was computed for, ``until`` up to the first reading
at or after its ``until`` (both read together with the answer, any owner counted, so the
bounds err on the short side), and the pieces must be the same. Within them a later
request gets the very answer the store would compute; the time-dependent fields of the
body (window, age, stale) are rendered per request by the callers, as before.

The edge caches only where it makes every write itself: SQLite in the ``all`` role
(``iotedge.edge.app``). Where other processes write (PostgreSQL, the ``api`` role) every
answer is read from the store.
"""

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.store.aio import AsyncSqliteStore
from iotedge.edge.store.records import AnomalyEvent, ClientAnswer, EventEnd, ObjectAnswer, Scope
from iotedge.edge.store.rollups import MINUTE, floor_to
from iotedge.edge.store.sqlite import SqliteStore
from iotedge.errors import StoreError

__all__ = ["AnswerCache", "CachedSqliteStore", "Shape", "shape_of"]

Shape = tuple[int, bool, int, bool]
"""Where a window's ends fall on the minute grid: equal shapes are cut into the same pieces."""

_ENTRIES_PER_KEY = 8  # answers kept per object or client (windows and scopes asked side by side)


def shape_of(since: float, until: float) -> Shape | None:
    """The minute each end of [since, until) falls in and whether it is on that minute's edge.

    :func:`~iotedge.edge.store.rollups.split` cuts a window at its ends, the whole minutes
    next to them and the hours next to those, so two windows of equal shapes are cut into
    the same pieces but their two raw ends (``tests/unit/test_answer_cache.py`` checks this
    against ``split``).
    None for a window that is not finite (not cached).
    """
    if not (math.isfinite(since) and math.isfinite(until)):
        return None
    low, high = floor_to(since, MINUTE), floor_to(until, MINUTE)
    return low, low == since, high, high == until


@dataclass(frozen=True, slots=True)
class _Entry:
    """One cached answer and the windows it holds for."""

    scope: Scope
    since: float
    until: float
    since_max: float  # the first reading at or after ``since``: it leaves once since passes it
    until_max: float  # the first reading at or after ``until``: it enters once until passes it
    shape: Shape
    answer: Any
    weight: int  # what it counts against the cache's budget: 1, or a client's objects

    def holds(self, scope: Scope, since: float, until: float, shape: Shape) -> bool:
        return (
            self.scope == scope
            and self.since <= since <= self.since_max
            and self.until <= until <= self.until_max
            and shape == self.shape
        )


class AnswerCache:
    """Answers by key and scope, each valid for a range of windows, least recently used dropped first.

    Args:
        max_answers: how many answers are kept at most (over every key), a client's answer
            counted once per object it lists (its size grows with them); an answer heavier
            than that is not kept.
    """

    def __init__(self, max_answers: int) -> None:
        self.max_answers = max_answers
        self._entries: OrderedDict[Hashable, list[_Entry]] = OrderedDict()
        self._count = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        """How many answers are kept, by weight."""
        return self._count

    def get(self, key: Hashable, scope: Scope, since: float, until: float, shape: Shape) -> tuple[bool, Any]:
        """(found, answer) of ``key`` in ``scope`` for the window [since, until) of ``shape``."""
        entries = self._entries.get(key)
        if entries is not None:
            for entry in entries:
                if entry.holds(scope, since, until, shape):
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return True, entry.answer
        self.misses += 1
        return False, None

    def put(self, key: Hashable, entry: _Entry) -> None:
        """Keep ``entry`` for ``key`` (the newest first)."""
        if entry.weight > self.max_answers:
            return
        entries = [entry, *self._entries.pop(key, [])]
        self._count += entry.weight
        while len(entries) > _ENTRIES_PER_KEY or sum(e.weight for e in entries) > self.max_answers:
            self._count -= entries.pop().weight
        self._entries[key] = entries
        while self._count > self.max_answers:
            _, oldest = self._entries.popitem(last=False)
            self._count -= sum(e.weight for e in oldest)

    def drop(self, keys: Iterable[Hashable]) -> None:
        """Forget ``keys``."""
        for key in keys:
            self._count -= sum(e.weight for e in self._entries.pop(key, ()))

    def drop_where(self, doomed: Callable[[Hashable], bool]) -> None:
        """Forget every key for which ``doomed`` is true."""
        self.drop([k for k in self._entries if doomed(k)])

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._count = 0


# The first reading at or after each bound, over an object's (or a client's objects') metrics
# of any owner: one index seek per metric and bound.
_FIRST_AT_OR_AFTER = (
    "SELECT MIN((SELECT MIN(r.ts) FROM readings r WHERE r.object_id=l.object_id AND r.metric=l.metric "
    "AND r.ts>=?)), MIN((SELECT MIN(r.ts) FROM readings r WHERE r.object_id=l.object_id "
    "AND r.metric=l.metric AND r.ts>=?)) FROM latest l WHERE "
)
_OF_OBJECT = _FIRST_AT_OR_AFTER + "l.object_id=?"
_OF_CLIENT = _FIRST_AT_OR_AFTER + "l.object_id IN (SELECT id FROM objects WHERE client=?)"  # noqa: S608
_NONE = float("inf")


class CachedSqliteStore(AsyncSqliteStore):
    """:class:`AsyncSqliteStore` with ``object_answer`` and ``client_answer`` cached.

    Args:
        store: the SQLite store; write to it only through this object while it serves.
        max_answers: answers kept at most, a client's counted once per object, those of the
            least recently asked object or client dropped first (an answer is about 3 KB for
            an object, 17 KB for a client of 10 objects: at most about 12 MB in all).
    """

    def __init__(self, store: SqliteStore, *, max_answers: int = 4096) -> None:
        super().__init__(store)
        self.cache = AnswerCache(max_answers)
        self._writes = 0  # bumped by every write: an answer read across one is not kept
        self._owner: dict[str, str] = {}  # object -> the client whose cached answer lists it

    async def object_answer(
        self, object_id: str, scope: Scope, since: float, until: float
    ) -> ObjectAnswer | None:
        """``object``, ``summary`` of each metric, ``latest_of`` and ``anomaly_counts`` together."""
        key = ("o", object_id)
        shape = shape_of(since, until)
        if shape is None:
            return self.sync.object_answer(object_id, scope, since, until)
        found, answer = self.cache.get(key, scope, since, until, shape)
        if found:
            return answer  # type: ignore[no-any-return]
        writes = self._writes
        answer = self.sync.object_answer(object_id, scope, since, until)
        self._keep(key, writes, (scope, since, until, shape), answer, _OF_OBJECT, object_id)
        return answer

    async def client_answer(self, client: str, since: float, until: float) -> ClientAnswer:
        """``client_summaries`` and ``objects`` of one client together."""
        key = ("c", client)
        shape = shape_of(since, until)
        if shape is None:
            return self.sync.client_answer(client, since, until)
        found, answer = self.cache.get(key, None, since, until, shape)
        if found:
            return answer  # type: ignore[no-any-return]
        writes = self._writes
        answer = self.sync.client_answer(client, since, until)
        if self._keep(key, writes, (None, since, until, shape), answer, _OF_CLIENT, client):
            self._owner.update((obj.id, client) for obj in answer.objects)
        return answer

    def _keep(
        self,
        key: Hashable,
        writes: int,
        window: tuple[Scope, float, float, Shape],
        answer: Any,
        sql: str,
        param: str,
    ) -> bool:
        """Cache ``answer`` with its bounds, unless a write came in between; whether it was.

        The answer is served either way: bounds that cannot be read now only mean no caching.
        """
        scope, since, until, shape = window
        try:
            ((since_max, until_max),) = self.sync.database.query(sql, (since, until, param))
        except StoreError:
            return False
        if writes != self._writes:
            return False
        bounds = (_NONE if since_max is None else since_max, _NONE if until_max is None else until_max)
        weight = len(answer.objects) if isinstance(answer, ClientAnswer) else 1
        self.cache.put(key, _Entry(scope, since, until, *bounds, shape, answer, max(1, weight)))
        return True

    def _wrote(self) -> None:
        self._writes += 1

    def _forget_all(self) -> None:
        self._wrote()
        self.cache.clear()
        self._owner.clear()

    async def upsert_objects(self, entries: Iterable[CatalogueEntry], now: float) -> None:
        """Record the catalogue (an owner or type may change: every answer is dropped)."""
        self._forget_all()
        try:
            await super().upsert_objects(entries, now)
        finally:
            self._forget_all()

    async def insert_readings(self, readings: list[Reading]) -> int:
        """Store a batch; drops the answers of its objects, their clients and their owners
        (every answer when the batch closes minutes of the rollups: see ``watermark_moves``)."""
        self._forget(readings)
        moves = self.sync.watermark_moves
        try:
            return await super().insert_readings(readings)
        finally:
            self._forget(readings)
            if self.sync.watermark_moves != moves:
                self._forget_all()

    def _forget(self, readings: Sequence[Reading]) -> None:
        self._wrote()
        objects = {r.object_id for r in readings}
        clients = {r.client for r in readings} | {self._owner[o] for o in objects if o in self._owner}
        self.cache.drop([*(("c", c) for c in clients), *(("o", o) for o in objects)])

    async def prune(self, before: float, *, rollups_before: float | None = None) -> int:
        """Delete old readings (every answer is dropped)."""
        self._forget_all()
        try:
            return await super().prune(before, rollups_before=rollups_before)
        finally:
            self._forget_all()

    async def record_transitions(
        self, opened: Sequence[AnomalyEvent], closed: Sequence[EventEnd], *, edge_id: str, now: float
    ) -> list[int]:
        """Write events; drops the object answers (their anomaly counts) they may change."""
        self._drop_counts(opened, closed)
        try:
            return await super().record_transitions(opened, closed, edge_id=edge_id, now=now)
        finally:
            self._drop_counts(opened, closed)

    def _drop_counts(self, opened: Sequence[AnomalyEvent], closed: Sequence[EventEnd]) -> None:
        self._wrote()
        if closed:  # a closed event names only its id: any object's counts may change
            self.cache.drop_where(lambda key: isinstance(key, tuple) and key[0] == "o")
        else:
            self.cache.drop(("o", e.object_id) for e in opened)
