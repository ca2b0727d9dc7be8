"""Evaluate series targets against the store, within the caller's scope and ad-hoc filters."""

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from iotedge.edge.context import EdgeContext
from iotedge.edge.grafana.models import AdhocFilterIn, TimeRangeIn
from iotedge.edge.grafana.patterns import UserPattern, compile_pattern
from iotedge.edge.grafana.targets import SeriesTarget
from iotedge.edge.store import Bucket, ObjectRow, Scope
from iotedge.edge.timefmt import epoch_ms, parse_instant
from iotedge.errors import BadRequest
from iotedge.specs import DEVICE_TYPES, METRIC_ORDER

__all__ = [
    "MAX_BUCKETS",
    "MAX_SERIES",
    "TAG_KEYS",
    "Evaluator",
    "Filter",
    "SeriesData",
    "SeriesPlan",
    "Window",
    "compile_filters",
    "window_of",
]

_log = logging.getLogger(__name__)

MAX_BUCKETS = 10_000
"""Most points one series may have, whatever Grafana asks for."""

MAX_SERIES = 500
"""Most series one request returns; more cannot be read on a chart anyway."""

DEFAULT_SPAN_S = 3600.0

TAG_KEYS: tuple[str, ...] = ("client", "object", "metric", "type")
"""Ad-hoc filter keys."""

_TAG_ALIASES = {"client_id": "client", "object_id": "object", "device": "object", "id": "object"}
_OPERATORS = ("=", "!=", "=~", "!~", "=|", "!=|")


@dataclass(frozen=True, slots=True)
class Filter:
    """One compiled ad-hoc filter."""

    key: str
    operator: str
    values: tuple[str, ...]
    pattern: UserPattern | None = None

    def matches(self, value: str) -> bool:
        """Whether a tag value passes this filter."""
        if self.operator == "=":
            return value == self.values[0]
        if self.operator == "!=":
            return value != self.values[0]
        if self.operator == "=|":
            return value in self.values
        if self.operator == "!=|":
            return value not in self.values
        assert self.pattern is not None  # noqa: S101 - compiled for the regex operators
        found = self.pattern.fullmatch(value)
        return found if self.operator == "=~" else not found


def compile_filters(raw: Iterable[AdhocFilterIn], field: str = "adhocFilters") -> list[Filter]:
    """Ad-hoc filters ready to match; keys other than :data:`TAG_KEYS` are ignored.

    Args:
        raw: the filters as sent.
        field: the request field they came from (``adhocFilters`` or ``filters``), named in errors.

    Raises:
        BadRequest: for an unknown operator or a regular expression RE2 refuses.
    """
    compiled = []
    for index, item in enumerate(raw):
        key = _TAG_ALIASES.get(item.key.strip().lower(), item.key.strip().lower())
        if key not in TAG_KEYS:
            _log.debug("ignoring ad-hoc filter on unknown key %r", item.key)
            continue
        if item.operator not in _OPERATORS:
            raise BadRequest(
                f"{field}[{index}].operator", f"must be one of {', '.join(_OPERATORS)}", location="body"
            )
        values = tuple(item.values) if item.operator in ("=|", "!=|") and item.values else (item.value,)
        pattern = None
        if item.operator in ("=~", "!~"):
            pattern = compile_pattern(item.value, f"{field}[{index}].value")
        compiled.append(Filter(key, item.operator, values, pattern))
    return compiled


@dataclass(frozen=True, slots=True)
class Window:
    """A query window [since, until) in epoch seconds and its bucket size."""

    since: float
    until: float
    step: float

    @property
    def origin(self) -> float:
        """Start of the bucket grid: a multiple of the step, so refreshes keep the grid."""
        return math.floor(self.since / self.step) * self.step


def window_of(
    time_range: TimeRangeIn | None,
    clock: Callable[[], float],
    *,
    interval_ms: float | None = None,
    max_points: int | None = None,
) -> Window:
    """The window of a Grafana request; the last hour when it names none.

    Raises:
        BadRequest: when a bound is unreadable or ``from`` is not before ``to``.
    """
    if time_range is None:
        until = clock()
        since = until - DEFAULT_SPAN_S
    else:
        since = parse_instant("range.from", str(time_range.from_), location="body")
        until = parse_instant("range.to", str(time_range.to), location="body")
        if since >= until:
            raise BadRequest("range", "'from' must be before 'to'", location="body")
    return window_between(since, until, interval_ms=interval_ms, max_points=max_points)


def window_between(
    since: float, until: float, *, interval_ms: float | None = None, max_points: int | None = None
) -> Window:
    """A window whose step honours ``interval_ms`` and ``max_points`` (and MAX_BUCKETS)."""
    span = until - since
    step = max(
        (interval_ms or 0) / 1000,
        span / max_points if max_points else 0.0,
        span / MAX_BUCKETS,
        0.001,
    )
    step = math.ceil(step * 1000) / 1000
    # The upper bound is inclusive of "now": readings stamped this very millisecond count.
    return Window(since, until + 1e-6, step)


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    """A series to read: its name and what it is of, over ``ids`` (one object, or a client's)."""

    name: str
    metric: str
    client: str
    object_id: str | None
    agg: str
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SeriesData:
    """A down-sampled series and what it is of."""

    name: str
    metric: str
    client: str
    object_id: str | None
    agg: str
    buckets: list[Bucket] = field(default_factory=list)

    def value(self, bucket: Bucket) -> float | int | None:
        """The bucket's value for this series' statistic."""
        if self.agg == "count":
            return bucket.count
        value = {"avg": bucket.average, "min": bucket.min, "max": bucket.max}[self.agg]
        return value if math.isfinite(value) else None

    def datapoints(self, window: Window) -> list[tuple[float | int | None, int]]:
        """``[value, epoch ms]`` pairs, ascending; a partial first bucket is stamped at ``since``."""
        return [(self.value(b), epoch_ms(max(b.ts, window.since))) for b in self.buckets]


class Evaluator:
    """Answers targets for one request: one scope, one set of ad-hoc filters.

    Args:
        ctx: the edge context.
        scope: the clients the caller may see (None = all).
        filters: the request's ad-hoc filters.
    """

    def __init__(self, ctx: EdgeContext, scope: Scope, filters: Sequence[Filter] = ()) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.scope = scope
        self.filters = list(filters)

    def keep(self, **tags: str) -> bool:
        """Whether tags pass every ad-hoc filter on those keys (other filters do not apply)."""
        return all(f.matches(tags[f.key]) for f in self.filters if f.key in tags)

    @cached_property
    def objects(self) -> list[ObjectRow]:
        """Every object the caller may see, by id."""
        return self.store.objects(self.scope)

    @cached_property
    def by_id(self) -> dict[str, ObjectRow]:
        """Visible objects by id."""
        return {obj.id: obj for obj in self.objects}

    @cached_property
    def clients(self) -> list[str]:
        """Visible clients that have objects."""
        return sorted({obj.client for obj in self.objects})

    def select_objects(
        self, object_ids: Sequence[str] | None = None, client_ids: Sequence[str] | None = None
    ) -> list[ObjectRow]:
        """Visible objects among ``object_ids`` and of ``client_ids`` (None = any) passing the filters."""
        wanted_ids = None if object_ids is None else set(object_ids)
        wanted_clients = None if client_ids is None else set(client_ids)
        return [
            obj
            for obj in self.objects
            if (wanted_ids is None or obj.id in wanted_ids)
            and (wanted_clients is None or obj.client in wanted_clients)
            and self.keep(client=obj.client, object=obj.id, type=obj.type)
        ]

    def metrics_of(self, obj: ObjectRow, metrics: Sequence[str] | None) -> list[str]:
        """The object's metrics among ``metrics`` (None = all) that pass the filters."""
        return [
            m
            for m in DEVICE_TYPES[obj.type].metrics
            if (metrics is None or m in metrics) and self.keep(metric=m)
        ]

    def object_plans(
        self, objs: Sequence[ObjectRow], metrics: Sequence[str] | None, target: SeriesTarget
    ) -> list[SeriesPlan]:
        """One series per object and metric, not read yet."""
        return [
            SeriesPlan(target.name(obj.id, metric), metric, obj.client, obj.id, target.agg, (obj.id,))
            for obj in objs
            for metric in self.metrics_of(obj, metrics)
        ]

    def client_plans(
        self, client: str, members: Sequence[ObjectRow], metrics: Sequence[str] | None, target: SeriesTarget
    ) -> list[SeriesPlan]:
        """One series per metric, over every member object that measures it; not read yet."""
        found = []
        for metric in METRIC_ORDER:
            if (metrics is not None and metric not in metrics) or not self.keep(metric=metric):
                continue
            ids = tuple(obj.id for obj in members if metric in DEVICE_TYPES[obj.type].metrics)
            if ids:
                found.append(SeriesPlan(target.name(client, metric), metric, client, None, target.agg, ids))
        return found

    def fetch(self, plan: SeriesPlan, window: Window) -> SeriesData:
        """Read one planned series from the store."""
        buckets = self.store.bucketed(
            plan.ids, plan.metric, window.since, window.until, window.step, origin=window.origin
        )
        return SeriesData(plan.name, plan.metric, plan.client, plan.object_id, plan.agg, buckets)

    def object_series(
        self, objs: Sequence[ObjectRow], metrics: Sequence[str] | None, window: Window, target: SeriesTarget
    ) -> list[SeriesData]:
        """One series per object and metric."""
        return [self.fetch(plan, window) for plan in self.object_plans(objs, metrics, target)]

    def client_series(
        self, client: str, members: Sequence[ObjectRow], metrics: Sequence[str] | None, window: Window,
        target: SeriesTarget,
    ) -> list[SeriesData]:  # fmt: skip
        """One series per metric, over every member object that measures it."""
        return [self.fetch(plan, window) for plan in self.client_plans(client, members, metrics, target)]

    def plan(self, target: SeriesTarget) -> list[SeriesPlan]:
        """Every series a target names, in the order it names them, not read yet; unknown names give none."""
        clients: list[str]
        if target.subjects is None:
            objs, clients = self.select_objects(), []
        else:
            objs, clients = [], []
            for subject in target.subjects:
                if subject in self.by_id:
                    obj = self.by_id[subject]
                    if self.keep(client=obj.client, object=obj.id, type=obj.type):
                        objs.append(obj)
                elif subject in self.clients and self.keep(client=subject):
                    clients.append(subject)
        found = self.object_plans(objs, target.metrics, target)
        for client in clients:
            found += self.client_plans(
                client, self.select_objects(client_ids=[client]), target.metrics, target
            )
        return found

    def series(self, target: SeriesTarget, window: Window) -> list[SeriesData]:
        """Every series a target names (the first :data:`MAX_SERIES`), read from the store."""
        plans = self.plan(target)
        if len(plans) > MAX_SERIES:
            _log.warning("a query named %d series; answering the first %d", len(plans), MAX_SERIES)
        return [self.fetch(plan, window) for plan in plans[:MAX_SERIES]]


def series_table(
    series: Sequence[SeriesData], window: Window
) -> tuple[list[tuple[str, str]], list[list[Any]]]:
    """Series as one table: Time, series, value, min, max, count."""
    columns = [("Time", "time"), ("series", "string"), ("value", "number")]
    columns += [("min", "number"), ("max", "number"), ("count", "number")]
    rows: list[list[Any]] = []
    for data in series:
        for bucket in data.buckets:
            stamp = epoch_ms(max(bucket.ts, window.since))
            rows.append([stamp, data.name, data.value(bucket), bucket.min, bucket.max, bucket.count])
    rows.sort(key=lambda row: (row[0], row[1]))
    return columns, rows
