"""Response models of the edge API (they document /docs and validate what we send).

The statistics and anomaly models take their shared fields from the domain types
(``Summary``, ``AnomalyEvent``) instead of repeating the list, so the two cannot drift.
"""

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from iotedge.edge.store import STATISTICS, AnomalyEvent, Summary
from iotedge.edge.store.events import ANOMALY_FIELDS

__all__ = [
    "AnomaliesOut",
    "AnomalyOut",
    "ClientRowOut",
    "ClientStatisticsOut",
    "ClientsOut",
    "ClientsStatisticsOut",
    "ObjectOut",
    "ObjectsOut",
    "PointOut",
    "ProcessedDataOut",
    "ReadingRowOut",
    "ReadingsOut",
    "StatisticsOut",
    "StatisticsRowOut",
    "WindowOut",
]


def _fields(source: type, names: Sequence[str]) -> dict[str, Any]:
    """Required pydantic fields named ``names``, typed as the domain dataclass ``source`` types them."""
    types = {field.name: field.type for field in dataclasses.fields(source)}
    return {name: (types[name], ...) for name in names}


if TYPE_CHECKING:  # built at run time from the domain types; mypy sees plain models
    StatisticsOut = BaseModel
    AnomalyOut = BaseModel
    StatisticsRowOut = BaseModel
else:
    StatisticsOut = create_model(
        "StatisticsOut",
        __doc__="Statistics of one metric over the window (population standard deviation).",
        **_fields(Summary, STATISTICS),
    )


class ClientMetricOut(StatisticsOut):
    """Statistics of one metric across a client's objects."""

    objects: int = Field(description="How many of the client's objects report this metric.")


class WindowOut(BaseModel):
    """The time window statistics cover."""

    model_config = {"populate_by_name": True}

    from_: str = Field(alias="from")
    to: str
    seconds: float


class AnomalyCountsOut(BaseModel):
    """Anomaly events of an object."""

    open: int
    total: int


class ProcessedDataOut(BaseModel):
    """Statistics of one object: its primary metric in ``statistics``, every metric in ``metrics``."""

    object_id: str
    client: str
    type: str
    metric: str
    window: WindowOut
    statistics: StatisticsOut
    metrics: dict[str, StatisticsOut]
    anomalies: AnomalyCountsOut
    last_reading_at: str | None
    age_seconds: float | None
    stale: bool
    edge_id: str


class ObjectBreakdownOut(BaseModel):
    """One object's statistics inside a client's."""

    object_id: str
    type: str
    metrics: dict[str, StatisticsOut]


class ClientStatisticsOut(BaseModel):
    """A client's statistics per metric (never mixing metrics), and per object."""

    client_id: str
    window: WindowOut
    metrics: dict[str, ClientMetricOut]
    objects: list[ObjectBreakdownOut]
    last_reading_at: str | None
    stale: bool
    edge_id: str


class ClientsStatisticsOut(BaseModel):
    """Statistics of every client the key may see."""

    clients: list[ClientStatisticsOut]
    edge_id: str


class ObjectOut(BaseModel):
    """An object the edge polls."""

    id: str
    client: str
    type: str
    primary_metric: str
    metrics: list[str]
    latest: dict[str, float]
    last_reading_at: str | None
    stale: bool


class ObjectsOut(BaseModel):
    """The objects visible to the key."""

    objects: list[ObjectOut]
    count: int
    edge_id: str


class PointOut(BaseModel):
    """One point of a series; ``timestamp`` in epoch milliseconds (Grafana's unit)."""

    timestamp: int
    value: float | None
    min: float | None = None
    max: float | None = None
    count: int = 1


class ReadingsOut(BaseModel):
    """A series of one metric of one object, ascending in time."""

    object_id: str
    client: str
    metric: str
    window: WindowOut
    step_seconds: float | None
    points: list[PointOut]


if not TYPE_CHECKING:
    AnomalyOut = create_model(
        "AnomalyOut",
        __doc__="An anomaly event: open while ``ended_at`` is null.",
        event_id=(int, ...),
        **_fields(AnomalyEvent, ANOMALY_FIELDS),
        started_at=(str, ...),
        ended_at=(str | None, ...),
        started_at_ms=(int, ...),
        ended_at_ms=(int | None, ...),
        state=(str, ...),
    )


class AnomaliesOut(BaseModel):
    """Anomaly events visible to the key, newest first."""

    anomalies: list[AnomalyOut]
    count: int
    edge_id: str


class ReadingRowOut(BaseModel):
    """One bucket of one series, flat: what Infinity turns into one line per ``series``."""

    timestamp: int = Field(description="Bucket start, epoch milliseconds (the window start for the first).")
    series: str = Field(description="The object id, or the client id for client aggregates.")
    object_id: str | None
    client_id: str
    metric: str
    value: float | None = Field(description="The bucket's statistic (agg): average by default.")
    min: float | None
    max: float | None
    count: int


if not TYPE_CHECKING:
    StatisticsRowOut = create_model(
        "StatisticsRowOut",
        __doc__="Statistics of one metric for one client, one object, or every selected object.",
        client_id=(str | None, ...),
        object_id=(str | None, ...),
        type=(str | None, ...),
        metric=(str, ...),
        objects=(int, Field(description="Objects with readings of this metric in the window.")),
        **_fields(Summary, STATISTICS),
        last_reading_at_ms=(int | None, ...),
    )


class ClientRowOut(BaseModel):
    """A client: its objects, how many are offline (stale), its newest reading."""

    client_id: str
    objects: int
    offline: int
    last_reading_at_ms: int | None


class ClientsOut(BaseModel):
    """Clients visible to the key."""

    clients: list[ClientRowOut]
    count: int
    edge_id: str
