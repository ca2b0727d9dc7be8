"""The MQTT flags of ``iotedge edge`` and ``iotedge sim`` (each has an IOTEDGE_* twin)."""

from collections.abc import Callable
from typing import Any

import click

__all__ = ["edge_mqtt_options", "sim_mqtt_options"]

_Option = Callable[[Any], Any]


def _common() -> list[_Option]:
    return [
        click.option(
            "--mqtt-broker", help="MQTT broker, mqtt://host:1883 or mqtts://host:8883. [default: off]"
        ),
        click.option("--mqtt-topic-prefix", help="First level of every MQTT topic. [default: iotedge]"),
        click.option("--mqtt-ca", type=click.Path(), help="CA bundle of an mqtts:// broker."),
        click.option("--mqtt-username", help="MQTT user name."),
        click.option("--mqtt-password", help="MQTT password (prefer the environment variable)."),
    ]


def edge_mqtt_options() -> list[_Option]:
    """Flags of the edge's MQTT ingest and publishing."""
    return [
        *_common(),
        click.option(
            "--mqtt-client-id", help="Client id of the persistent session. [default: iotedge-EDGE_ID]"
        ),
        click.option("--mqtt-certfile", type=click.Path(), help="Client certificate for the broker (PEM)."),
        click.option("--mqtt-keyfile", type=click.Path(), help="Key of --mqtt-certfile (PEM)."),
        click.option("--mqtt-session-expiry", help="How long the broker keeps our session. [default: 1d]"),
        click.option(
            "--mqtt-max-payload", type=int, help="Largest telemetry payload, bytes. [default: 65536]"
        ),
        click.option(
            "--mqtt-object-rate", type=float, help="Messages/s per object, 0 = no limit. [default: 20]"
        ),
        click.option(
            "--mqtt-object-burst", type=int, help="Messages an object may send at once. [default: 100]"
        ),
        click.option(
            "--mqtt-statistics-interval", help="Publish retained statistics every N, e.g. 30s. [default: off]"
        ),
    ]


def sim_mqtt_options() -> list[_Option]:
    """Flags of the simulator's MQTT publishing."""
    return [
        *_common(),
        click.option("--mqtt-objects", help="Objects pushed over MQTT: comma-separated globs. [default: *]"),
    ]
