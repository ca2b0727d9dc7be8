"""Grafana's side of a query: ad-hoc filters, the request's window, and the series a target names.

The reads themselves (scope, series, rows) are :mod:`iotedge.edge.reads`, shared with the REST API.
"""

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from iotedge.edge.grafana.models import AdhocFilterIn, TimeRangeIn
from iotedge.edge.grafana.patterns import UserPattern, compile_pattern
from iotedge.edge.grafana.targets import SeriesTarget
from iotedge.edge.reads import (
    SeriesData,
    SeriesPlan,
    View,
    Window,
    client_plans,
    object_plans,
    window_between,
)
from iotedge.edge.store import ObjectRow
from iotedge.edge.timefmt import epoch_ms, parse_instant
from iotedge.errors import BadRequest

__all__ = ["TAG_KEYS", "Filter", "compile_filters", "plan", "series_table", "window_of"]

_log = logging.getLogger(__name__)

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


def plan(view: View, target: SeriesTarget) -> list[SeriesPlan]:
    """Every series a target names, in the order it names them, not read yet; unknown names give none."""
    objs: list[ObjectRow] = []
    clients: list[str] = []
    if target.subjects is None:
        objs = view.select_objects()
    else:
        for subject in target.subjects:
            if subject in view.by_id:
                obj = view.by_id[subject]
                if view.keep(client=obj.client, object=obj.id, type=obj.type):
                    objs.append(obj)
            elif subject in view.clients and view.keep(client=subject):
                clients.append(subject)
    found = object_plans(view, objs, target.metrics, agg=target.agg, name=target.name)
    for client in clients:
        members = view.select_objects(client_ids=[client])
        found += client_plans(view, client, members, target.metrics, agg=target.agg, name=target.name)
    return found


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
