"""Request and response models of the Grafana JSON data source protocol.

Grafana forwards its whole query request, so every model ignores fields it does not
name (``panelId``, ``scopedVars``, ``requestId``, ``datasource``, ...).
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from iotedge.edge.reads.budget import MAX_TARGETS

__all__ = [
    "AdhocFilterIn",
    "AnnotationIn",
    "AnnotationOut",
    "AnnotationsIn",
    "ColumnOut",
    "MetricOut",
    "MetricsIn",
    "PayloadOptionOut",
    "PayloadOptionsIn",
    "PayloadOut",
    "QueryIn",
    "QueryTargetIn",
    "SearchIn",
    "SeriesOut",
    "TableOut",
    "TagKeyOut",
    "TagValueOut",
    "TagValuesIn",
    "TimeRangeIn",
    "VariableIn",
    "VariableOptionOut",
]

_TEXT = 2000  # longest target, query or filter value we accept
_MAX_INTERVAL_MS = 366 * 86400 * 1000.0  # a bucket of a year: coarser means nothing on a chart
_MAX_POINTS_ASKED = 1_000_000  # what Grafana may ask; the answer is capped far lower anyway


class _In(BaseModel):
    """A request body part: unknown fields are ignored, never an error."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TimeRangeIn(_In):
    """Grafana's absolute time range; ``raw`` (e.g. ``now-6h``) is informative only."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)  # true is no time

    from_: str | float = Field(alias="from", description="ISO 8601 (with Z), epoch s or epoch ms.")
    to: str | float = Field(description="ISO 8601 (with Z), epoch s or epoch ms.")
    raw: Any = None


class AdhocFilterIn(_In):
    """One ad-hoc filter: key ``client``, ``object``, ``metric`` or ``type``."""

    key: str = Field(max_length=100)
    operator: str = Field("=", max_length=4, description="=, !=, =~, !~, =| or !=|")
    value: str = Field("", max_length=_TEXT)
    values: list[str] | None = Field(None, max_length=1000, description="For =| and !=|.")


class QueryTargetIn(_In):
    """One query row. Simple JSON sends ``type``; simPod sends ``payload`` instead."""

    refId: str = Field("A", max_length=100)
    target: str | None = Field(
        None, max_length=_TEXT, description="See the target grammar in docs/grafana.md."
    )
    type: str | None = Field(None, max_length=20, description="timeserie (default) or table.")
    hide: bool = False
    payload: dict[str, Any] | str | None = Field(None, description="simPod: extra parameters.")
    data: dict[str, Any] | str | None = Field(None, description="simPod before 0.3: the payload.")


class QueryIn(_In):
    """``POST /query``: the panel's time range, resolution and query rows."""

    range: TimeRangeIn | None = None
    interval: str | None = Field(None, max_length=20)
    intervalMs: float | None = Field(None, ge=0, le=_MAX_INTERVAL_MS, allow_inf_nan=False)
    maxDataPoints: int | None = Field(None, ge=1, le=_MAX_POINTS_ASKED)
    targets: list[QueryTargetIn] = Field(default_factory=list, max_length=MAX_TARGETS)
    adhocFilters: list[AdhocFilterIn] = Field(default_factory=list, max_length=50)
    filters: list[AdhocFilterIn] = Field(default_factory=list, max_length=50, description="simPod's name.")


class SearchIn(_In):
    """``POST /search``: the text typed in the metric box or a variable's query."""

    target: str | None = Field("", max_length=_TEXT)


class AnnotationIn(_In):
    """The annotation definition Grafana echoes in ``POST /annotations``."""

    name: str = Field("", max_length=200)
    query: str = Field("", max_length=_TEXT)
    enable: bool = True
    iconColor: str | None = Field(None, max_length=100)
    datasource: Any = None


class AnnotationsIn(_In):
    """``POST /annotations``: anomaly events overlapping ``range``."""

    range: TimeRangeIn | None = None
    annotation: AnnotationIn = Field(default_factory=AnnotationIn)


class TagValuesIn(_In):
    """``POST /tag-values``: the ad-hoc filter key whose values are wanted."""

    key: str = Field("", max_length=100)


class MetricsIn(_In):
    """simPod ``POST /metrics``: the metric currently chosen and its payload."""

    metric: str | None = Field(None, max_length=_TEXT)
    payload: dict[str, Any] | str | None = None


class PayloadOptionsIn(_In):
    """simPod ``POST /metric-payload-options``: options of payload field ``name``."""

    metric: str = Field("", max_length=_TEXT)
    payload: dict[str, Any] | str | None = None
    name: str = Field("", max_length=100)


class VariableIn(_In):
    """simPod ``POST /variable``: ``payload.target`` is a finder query such as ``objects``."""

    payload: dict[str, Any] | str | None = None
    range: TimeRangeIn | None = None


class SeriesOut(BaseModel):
    """A time series: ``datapoints`` are ``[value, epoch ms]``, ascending; null is a gap."""

    target: str
    refId: str | None = None
    datapoints: list[tuple[float | None, int]]


class ColumnOut(BaseModel):
    """A table column: ``type`` is time, number, string or boolean."""

    text: str
    type: Literal["time", "number", "string", "boolean"]


class TableOut(BaseModel):
    """A table: ``rows`` are positional, one cell per column."""

    type: Literal["table"] = "table"
    refId: str | None = None
    columns: list[ColumnOut]
    rows: list[list[Any]]


class AnnotationOut(BaseModel):
    """An anomaly event as an annotation; a region when it has ended."""

    annotation: dict[str, Any]
    time: int
    timeEnd: int | None = None
    isRegion: bool = False
    title: str
    text: str
    tags: list[str]


class TagKeyOut(BaseModel):
    """An ad-hoc filter key."""

    type: str
    text: str


class TagValueOut(BaseModel):
    """An ad-hoc filter value."""

    text: str


class PayloadOptionOut(BaseModel):
    """An option of a simPod payload select."""

    label: str
    value: str


class PayloadOut(BaseModel):
    """A payload field of a simPod metric."""

    name: str
    label: str
    type: Literal["select", "multi-select", "input", "textarea"] = "select"
    placeholder: str | None = None
    reloadMetric: bool = False
    width: int | None = None
    options: list[PayloadOptionOut] | None = None


class MetricOut(BaseModel):
    """A metric of simPod's query builder."""

    label: str
    value: str
    payloads: list[PayloadOut]


class VariableOptionOut(BaseModel):
    """A template variable option (simPod)."""

    text: str = Field(serialization_alias="__text")
    value: str = Field(serialization_alias="__value")
