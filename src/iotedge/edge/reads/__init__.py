"""Scoped reads: what one caller may see, as series and flat rows.

The REST API and the Grafana endpoints both read through a :class:`View`; the Grafana
target grammar (:mod:`iotedge.edge.grafana`) only decides what to ask it.
"""

from iotedge.edge.reads.budget import QueryBudget
from iotedge.edge.reads.rows import (
    ANOMALY_LIMIT,
    ANOMALY_ROW_FIELDS,
    STAT_BY,
    anomaly_rows,
    client_rows,
    combine,
    object_rows,
    statistics_rows,
)
from iotedge.edge.reads.series import (
    SeriesData,
    SeriesName,
    SeriesPlan,
    client_plans,
    dotted_name,
    fetch,
    object_plans,
)
from iotedge.edge.reads.values import split_values
from iotedge.edge.reads.view import TagFilter, View, view_of
from iotedge.edge.reads.window import MAX_BUCKETS, Window, window_between

__all__ = [
    "ANOMALY_LIMIT",
    "ANOMALY_ROW_FIELDS",
    "MAX_BUCKETS",
    "STAT_BY",
    "QueryBudget",
    "SeriesData",
    "SeriesName",
    "SeriesPlan",
    "TagFilter",
    "View",
    "Window",
    "anomaly_rows",
    "client_plans",
    "client_rows",
    "combine",
    "dotted_name",
    "fetch",
    "object_plans",
    "object_rows",
    "split_values",
    "statistics_rows",
    "view_of",
    "window_between",
]
