"""Telemetry messages to readings: size and flood limits, JSON, client from the topic, normaliser.

Nothing here raises on bad input: every problem comes back as a rejection reason.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iotedge.edge.normalise import REJECTION_REASONS, CatalogueEntry, Reading, normalise_data
from iotedge.specs import DEVICE_TYPES

__all__ = ["MQTT_REJECTION_REASONS", "Decoded", "FloodGuard", "TelemetryDecoder"]

# Reasons of the message as a whole, then the normaliser's reasons for values inside it.
MQTT_REJECTION_REASONS: tuple[str, ...] = (
    "bad_topic",
    "too_large",
    "rate_limited",
    "not_json",
    "client_mismatch",
    "type_mismatch",
    *REJECTION_REASONS,
)

_MAX_BUCKETS = 100_000  # per-object flood buckets kept; beyond, the stalest half is dropped


@dataclass
class Decoded:
    """What one message yielded: the object, its readings and rejection counts by reason."""

    entry: CatalogueEntry | None = None
    readings: list[Reading] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str, count: int = 1) -> "Decoded":
        """Count a rejection and return self (for one-line early returns)."""
        self.rejected[reason] = self.rejected.get(reason, 0) + count
        return self


class FloodGuard:
    """A token bucket per object: ``rate`` messages per second, ``burst`` at once (rate 0: off)."""

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated at)

    def allow(self, key: str) -> bool:
        """Take a token for ``key``; False when its bucket is empty."""
        if self._rate <= 0:
            return True
        now = self._clock()
        tokens, updated = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - updated) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) >= _MAX_BUCKETS and key not in self._buckets:
            # Random object ids must not grow memory without bound.
            for stale in sorted(self._buckets, key=lambda k: self._buckets[k][1])[: _MAX_BUCKETS // 2]:
                del self._buckets[stale]
        self._buckets[key] = (tokens - 1.0, now)
        return True


class TelemetryDecoder:
    """Turns one telemetry message into readings of the object its topic names.

    Args:
        known: the objects the edge knows, by id (the bridge adds those it registers).
        max_payload: largest payload in bytes.
        flood: the per-object rate limit.
    """

    def __init__(
        self,
        *,
        known: dict[str, CatalogueEntry],
        max_payload: int,
        flood: FloodGuard,
    ) -> None:
        self.known = known
        self._max_payload = max_payload
        self._flood = flood

    def decode(self, client: str, object_id: str, payload: bytes) -> Decoded:
        """Readings of ``object_id`` of ``client`` (both from the topic) in ``payload``."""
        out = Decoded()
        if len(payload) > self._max_payload:
            return out.reject("too_large")
        if not self._flood.allow(f"{client}/{object_id}"):
            return out.reject("rate_limited")
        try:
            data: Any = json.loads(payload)
        except (ValueError, RecursionError):  # bad UTF-8 or JSON, or absurd nesting
            return out.reject("not_json")
        if not isinstance(data, dict):
            return out.reject("not_an_object")
        # The topic says who is talking (the broker's ACL checked it); the payload only claims.
        claimed = data.get("client")
        known = self.known.get(object_id)
        if (claimed is not None and claimed != client) or (known is not None and known.client != client):
            return out.reject("client_mismatch")
        if data.get("id", object_id) != object_id:
            return out.reject("id_mismatch")
        kind = data.get("type")
        if known is not None and kind is not None and kind != known.type:
            return out.reject("type_mismatch")
        kind = known.type if known is not None else kind
        if kind is None:
            return out.reject("missing_field")
        if not isinstance(kind, str):
            return out.reject("wrong_type")
        if kind not in DEVICE_TYPES:
            return out.reject("unknown_type")
        entry = known or CatalogueEntry(id=object_id, client=client, type=kind)
        normalised = normalise_data(data, entry)
        out.entry = entry
        out.readings = normalised.readings
        for reason, count in normalised.rejected.items():
            out.reject(reason, count)
        return out
