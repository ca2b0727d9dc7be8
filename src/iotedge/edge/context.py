"""The edge's long-lived resources, built by the lifespan and shared with every request."""

from collections.abc import Callable
from dataclasses import dataclass, field

from iotedge.config import EdgeSettings
from iotedge.edge.auth import KeySource
from iotedge.edge.collector import Collector
from iotedge.edge.mqtt import MqttBridge
from iotedge.edge.notify import Drainer
from iotedge.edge.ratelimit import RateLimits
from iotedge.edge.rules import RuleEngine
from iotedge.edge.store import SqliteDatabase
from iotedge.edge.store.aio import AsyncEdgeStore
from iotedge.edge.upstream import DeviceApiClient

__all__ = ["EdgeContext"]


@dataclass
class EdgeContext:
    """Everything a request handler may need; one per running app."""

    settings: EdgeSettings
    edge_id: str
    store: AsyncEdgeStore
    keys: KeySource
    upstream: DeviceApiClient
    engine: RuleEngine
    collector: Collector
    clock: Callable[[], float]
    notifications_db: SqliteDatabase
    drainer: Drainer | None
    mqtt: MqttBridge | None = None
    limits: RateLimits = field(default_factory=RateLimits)

    def is_stale(self, last_reading_at: float | None) -> bool:
        """Whether data last seen at ``last_reading_at`` should be flagged stale.

        A process that polls also flags everything stale while its polling fails; the api
        role does not poll, so only the data's age counts there.
        """
        if last_reading_at is None:
            return True
        if self.settings.role != "api" and not self.collector.health.ok:
            return True
        return self.clock() - last_reading_at > self.settings.stale_after
