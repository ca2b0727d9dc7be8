"""The anomaly rules as data: the rules file's shape, its defaults and its loader."""

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from iotedge.errors import ConfigError
from iotedge.specs import METRICS

__all__ = [
    "DEFAULT_RULES",
    "OfflineRule",
    "RuleSet",
    "Severity",
    "StuckRule",
    "ThresholdRule",
    "ZScoreRule",
    "load_rules",
]

Severity = Literal["info", "warning", "critical"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ThresholdRule(_Model):
    """Fires while ``metric`` is above ``above`` or below ``below``."""

    metric: str
    above: float | None = None
    below: float | None = None
    severity: Severity = "warning"

    @property
    def name(self) -> str:
        """A stable rule name, e.g. ``temperature_high``."""
        return f"{self.metric}_{'high' if self.above is not None else 'low'}"


class ZScoreRule(_Model):
    """Fires when a primary metric strays ``z`` standard deviations from its recent window."""

    enabled: bool = True
    window: int = Field(60, ge=5, le=10_000)
    z: float = Field(4.0, gt=0)
    clear_z: float = Field(2.0, gt=0)
    min_count: int = Field(20, ge=3)
    severity: Severity = "warning"


class StuckRule(_Model):
    """Fires when a primary metric repeats the same value ``readings`` times in a row."""

    enabled: bool = True
    readings: int = Field(20, ge=3, le=10_000)
    severity: Severity = "warning"


class OfflineRule(_Model):
    """Fires when an object's newest primary reading is ``intervals`` reporting periods old.

    The period is the device's observed cadence (never less than the poll interval), plus
    one poll interval of slack.
    """

    enabled: bool = True
    intervals: float = Field(3.0, gt=0)
    severity: Severity = "warning"


class RuleSet(_Model):
    """Every rule the edge applies; the rules file has this shape (JSON)."""

    thresholds: tuple[ThresholdRule, ...]
    hysteresis: float = Field(
        0.02,
        ge=0,
        le=0.5,
        description="Share of the metric's normal range a value must recover by.",
    )
    zscore: ZScoreRule = ZScoreRule()
    stuck: StuckRule = StuckRule()
    offline: OfflineRule = OfflineRule()


DEFAULT_RULES = RuleSet(
    thresholds=(
        ThresholdRule(metric="temperature", above=30.0),
        ThresholdRule(metric="temperature", below=20.0),
        ThresholdRule(metric="humidity", above=80),
        ThresholdRule(metric="humidity", below=40),
        ThresholdRule(metric="activity_level", above=95),
        ThresholdRule(metric="battery_level", below=20, severity="critical"),
    )
)


def load_rules(path: Path | None) -> RuleSet:
    """The rules in ``path`` (JSON), or the defaults when None."""
    if path is None:
        return DEFAULT_RULES
    try:
        data = json.loads(path.read_text())
        rules = RuleSet.model_validate(data)
    except (OSError, ValueError, ValidationError) as exc:
        raise ConfigError(f"rules file {path}: {exc}") from exc
    for rule in rules.thresholds:
        if rule.metric not in METRICS or (rule.above is None) == (rule.below is None):
            raise ConfigError(f"rules file {path}: {rule!r} needs a known metric and one of above/below")
    return rules
