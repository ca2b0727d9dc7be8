"""Builds the MQTT bridge from the edge settings, and the statistics it publishes."""

import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry

from iotedge.config import EdgeSettings
from iotedge.edge.mqtt.bridge import IngestSink, MqttBridge, StatisticsSource
from iotedge.edge.mqtt.decode import FloodGuard, TelemetryDecoder
from iotedge.edge.mqtt.metrics import MqttMetrics
from iotedge.edge.normalise import CatalogueEntry
from iotedge.edge.notify.message import iso
from iotedge.edge.store import Summary
from iotedge.errors import ConfigError
from iotedge.mqtt import TopicLayout, parse_broker

__all__ = ["STATISTICS_WINDOW_S", "ClientSummaries", "build_bridge", "statistics_source"]

STATISTICS_WINDOW_S = 3600.0  # the retained statistics cover the last hour

ClientSummaries = Callable[
    [str, float, float], Awaitable[tuple[dict[str, Summary], dict[str, dict[str, Summary]]]]
]
"""The store's ``client_summaries``: per-metric and per-object statistics of a client's window."""


class KnownObject(Protocol):
    """An object the store knows (a catalogue entry or a store row)."""

    @property
    def id(self) -> str: ...
    @property
    def client(self) -> str: ...
    @property
    def type(self) -> str: ...


def statistics_source(
    summaries: ClientSummaries,
    clients: Callable[[], Iterable[str]],
    *,
    clock: Callable[[], float] = time.time,
) -> StatisticsSource:
    """Per-object statistics over the last hour, as (client, object_id, JSON) for each object."""

    async def source() -> list[tuple[str, str, bytes]]:
        now = clock()
        out = []
        for client in sorted(set(clients())):
            _, per_object = await summaries(client, now - STATISTICS_WINDOW_S, now + 1)
            for object_id, metrics in sorted(per_object.items()):
                body = {
                    "object_id": object_id,
                    "client": client,
                    "window_seconds": STATISTICS_WINDOW_S,
                    "at": iso(now),
                    "metrics": {metric: summary.as_json() for metric, summary in metrics.items()},
                }
                out.append((client, object_id, json.dumps(body, sort_keys=True).encode()))
        return out

    return source


def build_bridge(
    settings: EdgeSettings,
    *,
    registry: CollectorRegistry,
    known: Iterable[KnownObject],
    sink: IngestSink,
    summaries: ClientSummaries,
    clients: Callable[[], Iterable[str]],
    on_connected: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> MqttBridge:
    """The bridge for ``settings.mqtt_broker`` (which must be set); raises ConfigError."""
    broker = parse_broker(
        settings.mqtt_broker,
        ca=settings.mqtt_ca,
        certfile=settings.mqtt_certfile,
        keyfile=settings.mqtt_keyfile,
        username=settings.mqtt_username,
        password=settings.mqtt_password,
    )
    try:
        layout = TopicLayout(settings.mqtt_topic_prefix)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    decoder = TelemetryDecoder(
        known={row.id: CatalogueEntry(row.id, row.client, row.type) for row in known},
        max_payload=settings.mqtt_max_payload,
        flood=FloodGuard(rate=settings.mqtt_object_rate, burst=settings.mqtt_object_burst),
    )
    return MqttBridge(
        broker=broker,
        layout=layout,
        client_id=settings.mqtt_client_id or f"iotedge-{settings.resolved_edge_id}",
        decoder=decoder,
        sink=sink,
        metrics=MqttMetrics(registry=registry),
        clients=settings.clients,
        session_expiry_s=settings.mqtt_session_expiry,
        statistics=statistics_source(summaries, clients, clock=clock),
        statistics_interval_s=settings.mqtt_statistics_interval,
        on_connected=on_connected,
        clock=clock,
    )
