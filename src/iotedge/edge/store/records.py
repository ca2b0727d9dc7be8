"""The store's domain types: objects, anomaly events, statistics answers and the client scope of a read."""

import secrets
from dataclasses import dataclass, field
from typing import Any

from iotedge.edge.store.summaries import Summary

__all__ = ["AnomalyEvent", "ClientAnswer", "EventEnd", "ObjectAnswer", "ObjectRow", "Scope", "new_event_id"]

Scope = frozenset[str] | None
"""Clients a caller may see; None means every client."""

# Event ids are random (issue 13, finding 7): a counter shared by every client would tell
# one client how busy the others are. 52 random bits above 2**52 stay exact in JavaScript
# (Grafana) and never meet the small sequential ids of stores from earlier releases.
_ID_BITS = 52


def new_event_id() -> int:
    """A fresh random anomaly event id in [2**52, 2**53)."""
    return (1 << _ID_BITS) | secrets.randbits(_ID_BITS)


@dataclass(frozen=True, slots=True)
class ObjectRow:
    """An object the edge knows."""

    id: str
    client: str
    type: str
    first_seen: float
    last_listed: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AnomalyEvent:
    """An anomaly event: open while ``ended_at`` is None.

    ``client`` is the device's owner when the event opened. ``last_value`` is the newest
    value seen while it lasted (None: the opening ``value``).
    """

    id: int
    object_id: str
    client: str
    type: str
    metric: str
    rule: str
    severity: str
    value: float | None
    threshold: float | None
    message: str
    started_at: float
    ended_at: float | None = None
    last_value: float | None = None


@dataclass(frozen=True, slots=True)
class EventEnd:
    """An open event that cleared at ``ended_at`` with ``last_value``."""

    event_id: int
    ended_at: float
    last_value: float | None


@dataclass(frozen=True, slots=True)
class ObjectAnswer:
    """What one object's ``/processed_data`` needs, read together.

    ``summaries`` holds the window statistics of each metric the object has readings of
    (a metric absent from it has none: :data:`~iotedge.edge.store.summaries.EMPTY`);
    ``latest`` and the anomaly counts are those of ``latest_of`` and ``anomaly_counts``.
    ``memo`` keeps what the API renders from this answer once (the answer cache serves one
    answer many times).
    """

    object: ObjectRow
    summaries: dict[str, Summary]
    latest: dict[str, tuple[float, float]]
    open_anomalies: int
    total_anomalies: int
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ClientAnswer:
    """What one client's ``/client_statistics`` needs: ``client_summaries`` and ``objects``.

    ``memo`` as in :class:`ObjectAnswer`.
    """

    per_metric: dict[str, Summary]
    per_object: dict[str, dict[str, Summary]]
    objects: list[ObjectRow]
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
