"""The MQTT bridge's Prometheus metrics, on the app's own registry."""

from prometheus_client import CollectorRegistry, Counter, Gauge

from iotedge.edge.mqtt.decode import MQTT_REJECTION_REASONS

__all__ = ["PUBLISH_KINDS", "PUBLISH_OUTCOMES", "MqttMetrics"]

PUBLISH_KINDS = ("anomaly", "statistics")
PUBLISH_OUTCOMES = ("ok", "failed")


class MqttMetrics:
    """Messages received, rejected by reason, published by outcome, and the connection state."""

    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "iotedge_mqtt_messages_received",
            "Telemetry messages received from the broker.",
            registry=registry,
        )
        self.rejected = Counter(
            "iotedge_mqtt_messages_rejected",
            "Telemetry messages (or values inside them) refused, by reason.",
            ("reason",),
            registry=registry,
        )
        self.published = Counter(
            "iotedge_mqtt_messages_published",
            "Messages the edge published, by kind and outcome (ok: the broker acknowledged).",
            ("kind", "outcome"),
            registry=registry,
        )
        self.connected = Gauge(
            "iotedge_mqtt_connected", "1 while connected to the MQTT broker, else 0.", registry=registry
        )
        self.connects = Counter(
            "iotedge_mqtt_connects",
            "Successful connections to the broker (reconnects included).",
            registry=registry,
        )
        for reason in MQTT_REJECTION_REASONS:
            self.rejected.labels(reason=reason)
        for kind in PUBLISH_KINDS:
            for outcome in PUBLISH_OUTCOMES:
                self.published.labels(kind=kind, outcome=outcome)

    def reject(self, reason: str, count: int = 1) -> None:
        """Count a rejection (unknown reasons are folded into one bounded label)."""
        label = reason if reason in MQTT_REJECTION_REASONS else "other"
        self.rejected.labels(reason=label).inc(count)

    def publish(self, kind: str, ok: bool) -> None:
        """Count one publish attempt."""
        self.published.labels(kind=kind, outcome="ok" if ok else "failed").inc()
