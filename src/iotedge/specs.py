"""The metric and device-type table shared by the simulator and the edge.

Adding a sensor type adds a row here, not a branch elsewhere.
"""

from dataclasses import dataclass

__all__ = [
    "DEVICE_TYPES",
    "METRICS",
    "METRIC_ORDER",
    "DeviceType",
    "MetricSpec",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class MetricSpec:
    """One measured quantity.

    ``normal_low``/``normal_high`` is the course's normal range; ``physical_low``/
    ``physical_high`` bounds what a sensor can report at all (the edge rejects values
    outside it); ``decimals`` is 0 for integer metrics.
    """

    key: str
    unit: str
    normal_low: float
    normal_high: float
    physical_low: float
    physical_high: float
    decimals: int

    @property
    def is_integer(self) -> bool:
        """Whether readings of this metric are whole numbers."""
        return self.decimals == 0


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceType:
    """A kind of IoT object: its primary metric first, then the others it reports."""

    name: str
    metrics: tuple[str, ...]

    @property
    def primary(self) -> str:
        """The metric the course's statistics and history are about."""
        return self.metrics[0]


METRICS: dict[str, MetricSpec] = {
    spec.key: spec
    for spec in (
        MetricSpec(
            key="temperature",
            unit="celsius",
            normal_low=20.0,
            normal_high=30.0,
            physical_low=-50.0,
            physical_high=120.0,
            decimals=2,
        ),
        MetricSpec(
            key="humidity",
            unit="percent",
            normal_low=40,
            normal_high=80,
            physical_low=0,
            physical_high=100,
            decimals=0,
        ),
        MetricSpec(
            key="battery_level",
            unit="percent",
            normal_low=10,
            normal_high=100,
            physical_low=0,
            physical_high=100,
            decimals=0,
        ),
        MetricSpec(
            key="activity_level",
            unit="percent",
            normal_low=0,
            normal_high=100,
            physical_low=0,
            physical_high=100,
            decimals=0,
        ),
    )
}

# The order in which the course's payloads list metrics.
METRIC_ORDER: tuple[str, ...] = ("temperature", "humidity", "battery_level", "activity_level")

DEVICE_TYPES: dict[str, DeviceType] = {
    kind.name: kind
    for kind in (
        DeviceType(name="temperature_sensor", metrics=("temperature", "battery_level")),
        DeviceType(name="humidity_sensor", metrics=("humidity", "battery_level")),
        DeviceType(name="activity_tracker", metrics=("activity_level", "battery_level")),
    )
}
