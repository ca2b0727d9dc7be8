"""Down-sampled series of objects and of client aggregates: planned first, then read."""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from iotedge.edge.reads.view import View
from iotedge.edge.reads.window import Window
from iotedge.edge.store import Bucket, ObjectRow
from iotedge.edge.timefmt import epoch_ms
from iotedge.specs import DEVICE_TYPES, METRIC_ORDER

__all__ = ["SeriesData", "SeriesName", "SeriesPlan", "client_plans", "dotted_name", "fetch", "object_plans"]

SeriesName = Callable[[str, str], str]
"""The display name of a series, from its subject (object or client) and metric."""


def dotted_name(subject: str, metric: str) -> str:
    """``subject.metric``."""
    return f"{subject}.{metric}"


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


def object_plans(
    view: View,
    objs: Sequence[ObjectRow],
    metrics: Sequence[str] | None,
    *,
    agg: str,
    name: SeriesName = dotted_name,
) -> list[SeriesPlan]:
    """One series per object and metric, not read yet."""
    return [
        SeriesPlan(name(obj.id, metric), metric, obj.client, obj.id, agg, (obj.id,))
        for obj in objs
        for metric in view.metrics_of(obj, metrics)
    ]


def client_plans(
    view: View,
    client: str,
    members: Sequence[ObjectRow],
    metrics: Sequence[str] | None,
    *,
    agg: str,
    name: SeriesName = dotted_name,
) -> list[SeriesPlan]:
    """One series per metric, over every member object that measures it; not read yet."""
    found = []
    for metric in METRIC_ORDER:
        if (metrics is not None and metric not in metrics) or not view.keep(metric=metric):
            continue
        ids = tuple(obj.id for obj in members if metric in DEVICE_TYPES[obj.type].metrics)
        if ids:
            found.append(SeriesPlan(name(client, metric), metric, client, None, agg, ids))
    return found


async def fetch(view: View, plan: SeriesPlan, window: Window) -> SeriesData:
    """Read one planned series from the store."""
    buckets = await view.store.bucketed(
        plan.ids, plan.metric, window.since, window.until, window.step, origin=window.origin
    )
    return SeriesData(plan.name, plan.metric, plan.client, plan.object_id, plan.agg, buckets)
