"""The edge's long-lived resources, built by the lifespan and shared with every request."""

from collections.abc import Callable, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from iotedge.config import EdgeSettings
from iotedge.edge.auth import KeySource
from iotedge.edge.collector import Collector
from iotedge.edge.mqtt import MqttBridge
from iotedge.edge.notify import Drainer, NotificationRow, notification_rows, pending_count
from iotedge.edge.ratelimit import RateLimits
from iotedge.edge.rules import RuleEngine
from iotedge.edge.store import SqliteDatabase
from iotedge.edge.store.aio import AsyncEdgeStore
from iotedge.edge.upstream import DeviceApiClient

if TYPE_CHECKING:
    from iotedge.edge.store.postgres.store import PostgresStore

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
    notifications_db: SqliteDatabase | None
    drainer: Drainer | None
    mqtt: MqttBridge | None = None
    limits: RateLimits = field(default_factory=RateLimits)

    async def notification_rows(self, clients: Set[str] | None, limit: int) -> list[NotificationRow]:
        """Deliveries of ``clients`` (None: all), newest first: the SQLite file's, or PostgreSQL's.

        Raises:
            StoreError: the PostgreSQL store does not answer.
        """
        if self.notifications_db is not None:
            return notification_rows(self.notifications_db, clients, limit)
        return await _postgres(self.store).notification_rows(clients, limit)

    async def notifications_pending(self) -> int:
        """Messages not delivered yet, whichever process delivers them.

        Raises:
            StoreError: the PostgreSQL store does not answer.
        """
        if self.notifications_db is not None:
            return pending_count(self.notifications_db)
        return await _postgres(self.store).notifications_pending()

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


def _postgres(store: AsyncEdgeStore) -> "PostgresStore":
    """``store`` as the PostgreSQL store, which alone keeps notifications besides a SQLite file."""
    from iotedge.edge.store.postgres.store import PostgresStore

    if not isinstance(store, PostgresStore):
        raise TypeError(f"no notification state on {type(store).__name__}")
    return store
