"""The edge's long-lived resources, built by the lifespan and shared with every request."""

from collections.abc import Callable
from dataclasses import dataclass, field

from iotedge.config import EdgeSettings
from iotedge.edge.auth import KeyRing
from iotedge.edge.collector import Collector
from iotedge.edge.mqtt import MqttBridge
from iotedge.edge.notify import Drainer
from iotedge.edge.ratelimit import RateLimits
from iotedge.edge.rules import RuleEngine
from iotedge.edge.store import EdgeStore, SqliteDatabase
from iotedge.edge.upstream import DeviceApiClient

__all__ = ["EdgeContext"]


@dataclass
class EdgeContext:
    """Everything a request handler may need; one per running app."""

    settings: EdgeSettings
    edge_id: str
    store: EdgeStore
    keys: KeyRing
    upstream: DeviceApiClient
    engine: RuleEngine
    collector: Collector
    clock: Callable[[], float]
    notifications_db: SqliteDatabase
    drainer: Drainer | None
    mqtt: MqttBridge | None = None
    limits: RateLimits = field(default_factory=RateLimits)

    def is_stale(self, last_reading_at: float | None) -> bool:
        """Whether data last seen at ``last_reading_at`` should be flagged stale."""
        if last_reading_at is None or not self.collector.health.ok:
            return True
        return self.clock() - last_reading_at > self.settings.stale_after
