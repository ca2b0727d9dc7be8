"""MQTT on the edge: telemetry ingest, anomaly and statistics publishing, over one connection."""

from iotedge.edge.mqtt.bridge import IngestSink, MqttBridge, MqttHealth, MqttUnavailable, StatisticsSource
from iotedge.edge.mqtt.decode import MQTT_REJECTION_REASONS, Decoded, FloodGuard, TelemetryDecoder
from iotedge.edge.mqtt.metrics import MqttMetrics
from iotedge.edge.mqtt.setup import build_bridge

__all__ = [
    "MQTT_REJECTION_REASONS",
    "Decoded",
    "FloodGuard",
    "IngestSink",
    "MqttBridge",
    "MqttHealth",
    "MqttMetrics",
    "MqttUnavailable",
    "StatisticsSource",
    "TelemetryDecoder",
    "build_bridge",
]
