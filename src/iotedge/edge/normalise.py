"""Turn every accepted device API payload shape into validated readings.

Accepted: the course's current-reading shape (a ``metrics`` dict), the course example's
``measurements`` list of ``{"value", "timestamp"}`` entries, and the ``history`` shape.
Timestamps may carry an offset or not (naive means UTC), with or without fractions.
Anything else is rejected with a reason; nothing here raises.
"""

import functools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from iotedge.specs import DEVICE_TYPES, METRICS

__all__ = [
    "REJECTION_REASONS",
    "CatalogueEntry",
    "Normalised",
    "Reading",
    "normalise_catalogue",
    "normalise_data",
    "normalise_history",
    "parse_timestamp",
]

REJECTION_REASONS: tuple[str, ...] = (
    "not_an_object",
    "missing_field",
    "wrong_type",
    "unknown_type",
    "bad_timestamp",
    "non_finite",
    "out_of_range",
    "id_mismatch",
)


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one metric of one object at one time (epoch seconds)."""

    object_id: str
    client: str
    metric: str
    ts: float
    value: float


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """An object as the device API lists it."""

    id: str
    client: str
    type: str


@dataclass
class Normalised:
    """What a payload yielded: readings, and rejection counts by reason."""

    readings: list[Reading] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str, count: int = 1) -> None:
        """Count ``count`` rejected values for ``reason``."""
        self.rejected[reason] = self.rejected.get(reason, 0) + count

    def extend(self, other: "Normalised") -> None:
        """Add another result to this one."""
        self.readings.extend(other.readings)
        for reason, count in other.rejected.items():
            self.reject(reason, count)


def parse_timestamp(value: Any) -> float | None:
    """Epoch seconds from an ISO 8601 string (naive = UTC) or None when unusable."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    return _parse_iso(value)


# Device APIs stamp readings on shared boundaries (every object of a fleet at the same
# bucket start, histories on the same minutes): most strings of a cycle repeat.
@functools.lru_cache(maxsize=4096)
def _parse_iso(value: str) -> float | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _value(metric: str, raw: Any, result: Normalised) -> float | None:
    """A validated number for ``metric``, or None (after counting why) when unusable."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        result.reject("wrong_type")
        return None
    number = float(raw)
    if not math.isfinite(number):
        result.reject("non_finite")
        return None
    spec = METRICS[metric]
    if not spec.physical_low <= number <= spec.physical_high:
        result.reject("out_of_range")
        return None
    return number


def _header(payload: Any, result: Normalised, expected: CatalogueEntry | None) -> CatalogueEntry | None:
    if not isinstance(payload, dict):
        result.reject("not_an_object")
        return None
    object_id, client, kind = payload.get("id"), payload.get("client"), payload.get("type")
    if expected is not None:
        # Some device APIs omit the header fields on readings; the catalogue knows them.
        object_id = expected.id if object_id is None else object_id
        client = expected.client if client is None else client
        kind = expected.type if kind is None else kind
    if object_id is None or client is None or kind is None:
        result.reject("missing_field")
        return None
    if not all(isinstance(part, str) for part in (object_id, client, kind)):
        result.reject("wrong_type")
        return None
    if kind not in DEVICE_TYPES:
        result.reject("unknown_type")
        return None
    if expected is not None and (object_id != expected.id or client != expected.client):
        result.reject("id_mismatch")
        return None
    return CatalogueEntry(id=object_id, client=client, type=kind)


def normalise_data(payload: Any, expected: CatalogueEntry | None = None) -> Normalised:
    """Readings from a current-reading payload (``metrics`` dict or ``measurements`` list).

    ``expected`` is the catalogue entry the payload was requested for: it fills omitted
    header fields and a payload about another object is rejected as ``id_mismatch``.
    Metrics that are null, or that the object's type does not measure, are skipped silently.
    """
    result = Normalised()
    header = _header(payload, result, expected)
    if header is None:
        return result
    applicable = DEVICE_TYPES[header.type].metrics
    metrics, measurements = payload.get("metrics"), payload.get("measurements")
    if isinstance(metrics, dict):
        ts = parse_timestamp(payload.get("timestamp"))
        if ts is None:
            result.reject("bad_timestamp" if "timestamp" in payload else "missing_field")
            return result
        for metric in applicable:
            raw = metrics.get(metric)
            if raw is None:
                continue
            value = _value(metric, raw, result)
            if value is not None:
                result.readings.append(Reading(header.id, header.client, metric, ts, value))
        return result
    if isinstance(measurements, list):
        return _points(header, measurements, result)
    result.reject("missing_field" if metrics is None and measurements is None else "wrong_type")
    return result


def normalise_history(payload: Any, expected: CatalogueEntry | None = None) -> Normalised:
    """Readings of the primary metric from a ``history`` payload."""
    result = Normalised()
    header = _header(payload, result, expected)
    if header is None:
        return result
    points = payload.get("history")
    if not isinstance(points, list):
        result.reject("missing_field" if points is None else "wrong_type")
        return result
    return _points(header, points, result)


def _points(header: CatalogueEntry, points: list[Any], result: Normalised) -> Normalised:
    metric = DEVICE_TYPES[header.type].primary
    for point in points:
        if not isinstance(point, dict):
            result.reject("not_an_object")
            continue
        ts = parse_timestamp(point.get("timestamp"))
        if ts is None:
            result.reject("bad_timestamp")
            continue
        raw = point.get("value")
        if raw is None:
            continue
        value = _value(metric, raw, result)
        if value is not None:
            result.readings.append(Reading(header.id, header.client, metric, ts, value))
    return result


def normalise_catalogue(payload: Any) -> tuple[list[CatalogueEntry], dict[str, int]]:
    """Valid catalogue entries from ``/iot_objects``, and rejection counts."""
    result = Normalised()
    if not isinstance(payload, list):
        result.reject("not_an_object")
        return [], result.rejected
    entries = []
    seen: set[str] = set()
    for item in payload:
        entry = _header(item, result, None)
        if entry is not None and entry.id not in seen:
            seen.add(entry.id)
            entries.append(entry)
    return entries, result.rejected
