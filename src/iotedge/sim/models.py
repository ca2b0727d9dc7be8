"""Request and response models of the device API simulator (its OpenAPI schema)."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from iotedge.config import GarbageKind

__all__ = [
    "DataOut",
    "ErrorOut",
    "FaultsIn",
    "HistoryOut",
    "HistoryPoint",
    "InjectIn",
    "MetricsOut",
    "ObjectOut",
]


class ObjectOut(BaseModel):
    """A catalogue entry."""

    id: str
    client: str
    type: str


class MetricsOut(BaseModel):
    """Every course metric; null where the type does not measure it."""

    temperature: float | None
    humidity: int | None
    battery_level: int | None
    activity_level: int | None


class DataOut(ObjectOut):
    """The current reading of an object."""

    metrics: MetricsOut
    timestamp: str = Field(examples=["2026-11-29T12:00:05"])


class HistoryPoint(BaseModel):
    """One point of the primary metric."""

    timestamp: str
    value: float | None


class HistoryOut(ObjectOut):
    """The primary metric at one-minute steps, newest first."""

    history: list[HistoryPoint]


class ErrorOut(BaseModel):
    """An error body."""

    error: str
    detail: Any = None


class InjectIn(BaseModel):
    """An anomaly to start now on one object."""

    object_id: str = Field(examples=["device_1"])
    kind: Literal["spike", "stuck", "missing", "battery_low"] = "spike"
    metric: str | None = Field(
        None, description="One of the object's metrics; default its primary one (battery_low: battery_level)."
    )
    duration_s: float = Field(120.0, gt=0, le=86_400, description="How long it lasts, in seconds.")


class FaultsIn(BaseModel):
    """A change to the injected faults; omitted fields keep their value."""

    # strict: JSON true is not the number 1 (schemathesis sends it as a schema violation)
    latency_ms: float | None = Field(None, ge=0, strict=True)
    jitter_ms: float | None = Field(None, ge=0, strict=True)
    error_rate: float | None = Field(None, ge=0, le=1, strict=True)
    garbage_rate: float | None = Field(None, ge=0, le=1, strict=True)
    garbage_kinds: list[GarbageKind] | None = None
    hang_rate: float | None = Field(None, ge=0, le=1, strict=True)
    hang_seconds: float | None = Field(None, ge=0, le=3600, strict=True)
