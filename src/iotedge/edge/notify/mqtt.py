"""The MQTT channel: the webhook's JSON, published at QoS 1 to the client's anomalies topic."""

from collections.abc import Sequence
from typing import Protocol

from iotedge.edge.notify.base import DeliveryError
from iotedge.edge.notify.message import Notification, webhook_body
from iotedge.errors import IotedgeError

__all__ = ["EDGE_TOPIC_CLIENT", "IDEMPOTENCY_PROPERTY", "MqttChannel", "Publisher"]

IDEMPOTENCY_PROPERTY = "idempotency_key"
EDGE_TOPIC_CLIENT = "_edge"  # the topic client of messages about no client (test messages)


class Publisher(Protocol):
    """What the channel needs from the MQTT connection."""

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        kind: str,
        retain: bool = False,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Publish at QoS 1; return once the broker acknowledged, else raise IotedgeError."""
        ...


class MqttChannel:
    """Publishes each notification to ``topic_for(client)``; a broker ack means accepted.

    Args:
        publisher: the edge's MQTT connection.
        topic_for: the anomalies topic of a client.
    """

    name = "mqtt"

    def __init__(self, *, publisher: Publisher, topic_for: "TopicFor") -> None:
        self._publisher = publisher
        self._topic_for = topic_for

    async def send(self, note: Notification) -> None:
        """Publish ``note``; raises a temporary DeliveryError while the broker is away."""
        client = note.event.get("client")
        topic = self._topic_for(client if isinstance(client, str) and client else EDGE_TOPIC_CLIENT)
        kind = f"anomaly.{note.kind}" if note.kind != "test" else "test"
        try:
            await self._publisher.publish(
                topic,
                webhook_body(note),
                kind="anomaly",
                user_properties=((IDEMPOTENCY_PROPERTY, note.idempotency_key), ("type", kind)),
            )
        except IotedgeError as exc:
            raise DeliveryError(self.name, str(exc)) from exc


class TopicFor(Protocol):
    """Returns the anomalies topic of a client."""

    def __call__(self, client: str, /) -> str:
        """The topic."""
        ...
