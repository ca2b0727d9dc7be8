"""The simulated fleet: which objects exist and what each one reads at any time.

Every value is a pure function of (seed, object, time bucket): the same question always
gets the same answer, so ``/iot_data`` and ``/history`` agree and tests can predict values.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass

from iotedge.specs import DEVICE_TYPES, METRIC_ORDER, METRICS

__all__ = [
    "ANOMALY_KINDS",
    "AnomalyEvent",
    "DeviceObject",
    "Fleet",
    "Reading",
]

_MASK64 = (1 << 64) - 1
_TYPE_CYCLE = ("temperature_sensor", "humidity_sensor", "activity_tracker")
_DAY_S = 86_400.0

# Stream tags keep the pseudo-random draws of different purposes independent.
_TAG_NOISE, _TAG_DRIFT, _TAG_PHASE, _TAG_ANOMALY, _TAG_KIND, _TAG_SHAPE = range(1, 7)

ANOMALY_KINDS: tuple[str, ...] = ("spike", "stuck", "missing", "battery_low")


def _mix(*parts: int) -> int:
    """Hash integers to 64 well-mixed bits (splitmix64 finaliser over a running state)."""
    state = 0x9E3779B97F4A7C15
    for part in parts:
        state = (state ^ (part & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        state ^= state >> 31
        state = (state * 0x94D049BB133111EB) & _MASK64
        state ^= state >> 29
    return state


def _unit(*parts: int) -> float:
    """A deterministic float in [0, 1) for the given integers."""
    return (_mix(*parts) >> 11) / float(1 << 53)


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceObject:
    """One simulated IoT object."""

    id: str
    client: str
    type: str
    index: int

    @property
    def primary(self) -> str:
        """The object's primary metric."""
        return DEVICE_TYPES[self.type].primary

    def as_json(self) -> dict[str, str]:
        """The course's catalogue entry for this object."""
        return {"id": self.id, "client": self.client, "type": self.type}


@dataclass(frozen=True, kw_only=True, slots=True)
class AnomalyEvent:
    """One injected anomaly: the ground truth the edge's detection is scored against."""

    object_id: str
    client: str
    kind: str
    metric: str
    start: float
    end: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Reading:
    """What an object reports at one time bucket (None for metrics it lacks)."""

    obj: DeviceObject
    timestamp: float
    metrics: dict[str, float | int | None]


class Fleet:
    """A deterministic fleet of objects and their signals.

    Args:
        seed: changes every value and the anomaly schedule.
        clients: number of clients, named client_1..client_N.
        objects_per_client: objects per client; types rotate so a client's objects differ.
        interval_s: length of a time bucket; a reading is constant within one.
        anomaly_rate: probability that an object has an anomaly in a given slot.
        anomaly_slot_s: length of the slots the anomaly schedule is drawn in.
    """

    def __init__(
        self,
        *,
        seed: int = 42,
        clients: int = 3,
        objects_per_client: int = 2,
        interval_s: int = 5,
        anomaly_rate: float = 0.05,
        anomaly_slot_s: int = 900,
    ) -> None:
        self.seed = seed
        self.interval_s = interval_s
        self.anomaly_rate = anomaly_rate
        self.anomaly_slot_s = anomaly_slot_s
        self.objects: list[DeviceObject] = []
        self.injected: list[AnomalyEvent] = []
        """Anomalies injected on demand (``inject``), on top of the seeded schedule."""
        self.by_id: dict[str, DeviceObject] = {}
        self.by_client: dict[str, list[DeviceObject]] = {}
        for index in range(clients * objects_per_client):
            client = f"client_{index // objects_per_client + 1}"
            obj = DeviceObject(
                id=f"device_{index + 1}",
                client=client,
                type=_TYPE_CYCLE[index % len(_TYPE_CYCLE)],
                index=index,
            )
            self.objects.append(obj)
            self.by_id[obj.id] = obj
            self.by_client.setdefault(client, []).append(obj)

    # -- time -------------------------------------------------------------------------

    def bucket_start(self, t: float) -> int:
        """The start (epoch seconds) of the bucket that contains ``t``."""
        return int(t // self.interval_s) * self.interval_s

    # -- readings ---------------------------------------------------------------------

    def reading(self, obj: DeviceObject, t: float) -> Reading:
        """What ``obj`` reports at time ``t``: every course metric, None where not applicable."""
        ts = self.bucket_start(t)
        applicable = DEVICE_TYPES[obj.type].metrics
        metrics: dict[str, float | int | None] = {
            key: self.value(obj, key, ts) if key in applicable else None for key in METRIC_ORDER
        }
        return Reading(obj=obj, timestamp=ts, metrics=metrics)

    def history(self, obj: DeviceObject, t: float, limit: int = 10) -> list[tuple[int, float | int | None]]:
        """The primary metric at one-minute steps, newest first, as the course serves it."""
        newest = int(t // 60) * 60
        return [(ts, self.value(obj, obj.primary, ts)) for ts in range(newest, newest - 60 * limit, -60)]

    def value(self, obj: DeviceObject, metric: str, ts: float) -> float | int | None:
        """The value of ``metric`` for ``obj`` at bucket start ``ts``, anomalies included."""
        event = self.anomaly_at(obj, ts)
        if event is not None and event.metric == metric:
            if event.kind == "missing":
                return None
            if event.kind == "stuck":
                return self.normal_value(obj, metric, self.bucket_start(event.start))
            return self._anomalous_value(obj, event, metric)
        return self.normal_value(obj, metric, ts)

    def normal_value(self, obj: DeviceObject, metric: str, ts: float) -> float | int:
        """The value of ``metric`` without any injected anomaly."""
        bucket = int(ts // self.interval_s)
        noise = _unit(self.seed, obj.index, bucket, _TAG_NOISE, len(metric)) - 0.5
        phase = _unit(self.seed, obj.index, _TAG_PHASE, len(metric))
        day = math.sin(2 * math.pi * (ts / _DAY_S + phase))
        drift = self._drift(obj, metric, ts)
        raw: float
        if metric == "temperature":
            raw = 25.0 + 1.2 * (phase - 0.5) + 2.8 * day + 0.8 * drift + 0.3 * noise
            return round(min(29.5, max(20.5, raw)), 2)
        if metric == "humidity":
            raw = 60.0 + 4.0 * (phase - 0.5) + 12.0 * day + 3.0 * drift + 2.0 * noise
            return round(min(78.0, max(42.0, raw)))
        if metric == "activity_level":
            raw = 45.0 + 35.0 * day + 8.0 * drift + 6.0 * noise
            return round(min(90.0, max(2.0, raw)))
        if metric == "battery_level":
            return self._battery(obj, ts)
        raise KeyError(metric)

    def _drift(self, obj: DeviceObject, metric: str, ts: float) -> float:
        """Slow smooth noise in [-1, 1]: cosine-interpolated knots ten minutes apart."""
        knot, frac = divmod(ts / 600.0, 1.0)
        left = _unit(self.seed, obj.index, int(knot), _TAG_DRIFT, len(metric)) * 2 - 1
        right = _unit(self.seed, obj.index, int(knot) + 1, _TAG_DRIFT, len(metric)) * 2 - 1
        weight = (1 - math.cos(math.pi * frac)) / 2
        return left + (right - left) * weight

    def _battery(self, obj: DeviceObject, ts: float) -> int:
        """A sawtooth: drains from 100 % to 25 % over 1.5-2.5 days, then recharges in an hour."""
        period = _DAY_S * (1.5 + _unit(self.seed, obj.index, _TAG_PHASE, 99))
        position = (ts / period + _unit(self.seed, obj.index, _TAG_PHASE, 98)) % 1.0
        recharge = 3600.0 / period
        if position < 1.0 - recharge:
            level = 100.0 - 75.0 * position / (1.0 - recharge)
        else:
            level = 25.0 + 75.0 * (position - (1.0 - recharge)) / recharge
        return round(level)

    def _anomalous_value(self, obj: DeviceObject, event: AnomalyEvent, metric: str) -> float | int:
        shape = _unit(self.seed, obj.index, int(event.start), _TAG_SHAPE)
        if event.kind == "battery_low":
            return round(5 + 9 * shape)
        spec = METRICS[metric]
        if metric == "temperature":
            return round(34.0 + 8.0 * shape, 2) if shape < 0.7 else round(8.0 + 8.0 * shape, 2)
        if metric == "activity_level":
            return round(97 + 3 * shape)
        return round(min(spec.physical_high, spec.normal_high + 8 + 12 * shape))

    # -- anomalies --------------------------------------------------------------------

    def _event_in_slot(self, obj: DeviceObject, slot: int) -> AnomalyEvent | None:
        if _unit(self.seed, obj.index, slot, _TAG_ANOMALY) >= self.anomaly_rate:
            return None
        kind = ANOMALY_KINDS[_mix(self.seed, obj.index, slot, _TAG_KIND) % len(ANOMALY_KINDS)]
        shape = _unit(self.seed, obj.index, slot, _TAG_SHAPE)
        slot_start = slot * self.anomaly_slot_s
        start = self.bucket_start(slot_start + self.anomaly_slot_s * 0.4 * shape)
        duration = self.anomaly_slot_s * (0.2 + 0.3 * _unit(self.seed, obj.index, slot, _TAG_SHAPE, 1))
        end = max(start + self.interval_s, self.bucket_start(start + duration))
        metric = "battery_level" if kind == "battery_low" else obj.primary
        return AnomalyEvent(
            object_id=obj.id, client=obj.client, kind=kind, metric=metric, start=start, end=end
        )

    def inject(
        self, obj: DeviceObject, *, kind: str, metric: str, start: float, duration_s: float
    ) -> AnomalyEvent:
        """Add an anomaly on demand from ``start`` for ``duration_s``; it wins over the schedule."""
        begin = self.bucket_start(start)
        event = AnomalyEvent(
            object_id=obj.id,
            client=obj.client,
            kind=kind,
            metric=metric,
            start=begin,
            end=max(begin + self.interval_s, self.bucket_start(start + duration_s)),
        )
        # Forget the ones long over, so a demo that injects all day keeps a short list.
        self.injected = [old for old in self.injected if old.end > start - _DAY_S]
        self.injected.append(event)
        return event

    def anomaly_at(self, obj: DeviceObject, ts: float) -> AnomalyEvent | None:
        """The injected anomaly active on ``obj`` at ``ts`` (end exclusive), if any."""
        for demanded in reversed(self.injected):
            if demanded.object_id == obj.id and demanded.start <= ts < demanded.end:
                return demanded
        if self.anomaly_rate <= 0:
            return None
        event = self._event_in_slot(obj, int(ts // self.anomaly_slot_s))
        if event is not None and event.start <= ts < event.end:
            return event
        return None

    def anomalies(
        self, since: float, until: float, objects: list[DeviceObject] | None = None
    ) -> Iterator[AnomalyEvent]:
        """Every injected anomaly overlapping [since, until): scheduled ones by slot, then those on demand."""
        wanted = {obj.id for obj in objects} if objects is not None else None
        on_demand = [
            event
            for event in self.injected
            if event.start < until and event.end > since and (wanted is None or event.object_id in wanted)
        ]
        if self.anomaly_rate <= 0:
            yield from on_demand
            return
        first, last = int(since // self.anomaly_slot_s), int(until // self.anomaly_slot_s)
        for slot in range(first, last + 1):
            for obj in objects if objects is not None else self.objects:
                event = self._event_in_slot(obj, slot)
                if event is not None and event.start < until and event.end > since:
                    yield event
        yield from on_demand
