"""The simulator pushes: each selected object publishes its reading to MQTT once per bucket.

The payload is the body of ``GET /iot_data/{id}`` for the same bucket, so pushed and
polled readings share one ground truth. Readings go at QoS 1 to
``<prefix>/<client>/<object_id>/telemetry``.
"""

import asyncio
import contextlib
import fnmatch
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import aiomqtt

from iotedge.config import SimSettings
from iotedge.errors import ConfigError
from iotedge.mqtt import BrokerAddress, TopicLayout, client_kwargs, parse_broker
from iotedge.sim.fleet import DeviceObject, Fleet

__all__ = ["FleetPusher", "build_pusher", "pushing", "reading_payload", "select_objects"]

_log = logging.getLogger(__name__)
_IN_FLIGHT = 64  # publishes awaiting their acknowledgement at once


def _iso(ts: float, with_offset: bool) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.isoformat() if with_offset else moment.replace(tzinfo=None).isoformat()


def reading_payload(fleet: Fleet, obj: DeviceObject, t: float, *, with_offset: bool) -> dict[str, Any]:
    """The course's current-reading body of ``obj`` for the bucket holding ``t``."""
    reading = fleet.reading(obj, t)
    return {
        "id": obj.id,
        "client": obj.client,
        "type": obj.type,
        "metrics": reading.metrics,
        "timestamp": _iso(reading.timestamp, with_offset),
    }


def select_objects(objects: Sequence[DeviceObject], patterns: str) -> list[DeviceObject]:
    """The objects whose id matches one of the comma-separated globs (``*`` = all, empty = none)."""
    globs = [part.strip() for part in patterns.split(",") if part.strip()]
    return [obj for obj in objects if any(fnmatch.fnmatchcase(obj.id, glob) for glob in globs)]


class FleetPusher:
    """Publishes every selected object's reading at each bucket start, reconnecting as needed.

    Args:
        fleet: the simulated fleet.
        objects: the objects that push.
        broker: where to publish.
        layout: the topic layout.
        with_offset: write ``+00:00`` on timestamps, as the HTTP endpoints do.
        clock: wall clock (the fleet's buckets are wall-clock based).
    """

    def __init__(
        self,
        *,
        fleet: Fleet,
        objects: Sequence[DeviceObject],
        broker: BrokerAddress,
        layout: TopicLayout,
        with_offset: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fleet = fleet
        self.objects = list(objects)
        self.broker = broker
        self.layout = layout
        self.published = 0
        self._offset = with_offset
        self._clock = clock
        self._last_bucket = -1

    async def run(self) -> None:
        """Publish until cancelled; a lost broker is retried with capped, jittered backoff."""
        attempt = 0
        while True:
            try:
                async with aiomqtt.Client(
                    **client_kwargs(self.broker), protocol=aiomqtt.ProtocolVersion.V5
                ) as client:
                    if attempt:
                        _log.info("sim MQTT: broker %s is back", self.broker.url)
                    attempt = 0
                    await self._publish_forever(client)
            except aiomqtt.MqttError as exc:
                if attempt == 0:
                    _log.warning("sim MQTT: broker %s unreachable, retrying: %s", self.broker.url, exc)
                attempt += 1
                await asyncio.sleep(random.uniform(0.25, min(10.0, 0.5 * 2.0 ** min(attempt, 8))))

    async def _publish_forever(self, client: aiomqtt.Client) -> None:
        while True:
            bucket = self.fleet.bucket_start(self._clock())
            if bucket != self._last_bucket:
                await self.publish_bucket(client, bucket)
                self._last_bucket = bucket
            next_start = bucket + self.fleet.interval_s
            await asyncio.sleep(max(0.01, next_start - self._clock()))

    async def publish_bucket(self, client: aiomqtt.Client, t: float) -> None:
        """Publish each object's reading for the bucket holding ``t`` (QoS 1, acknowledged)."""
        gate = asyncio.Semaphore(_IN_FLIGHT)

        async def one(obj: DeviceObject) -> None:
            body = reading_payload(self.fleet, obj, t, with_offset=self._offset)
            async with gate:
                await client.publish(
                    self.layout.telemetry(obj.client, obj.id),
                    _dumps(body),
                    qos=1,
                )
            self.published += 1

        await asyncio.gather(*(one(obj) for obj in self.objects))


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def build_pusher(
    settings: SimSettings, fleet: Fleet, *, clock: Callable[[], float] = time.time
) -> FleetPusher | None:
    """The pusher ``settings`` ask for (None without ``mqtt_broker``); raises ConfigError."""
    if not settings.mqtt_broker:
        return None
    broker = parse_broker(
        settings.mqtt_broker,
        ca=settings.mqtt_ca,
        username=settings.mqtt_username,
        password=settings.mqtt_password,
    )
    try:
        layout = TopicLayout(settings.mqtt_topic_prefix)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return FleetPusher(
        fleet=fleet,
        objects=select_objects(fleet.objects, settings.mqtt_objects),
        broker=broker,
        layout=layout,
        with_offset=settings.timestamp_offset,
        clock=clock,
    )


def pushing(pusher: FleetPusher | None) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan that runs ``pusher`` (if any) while the simulator serves."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        if pusher is None:
            yield
            return
        task = asyncio.create_task(pusher.run(), name="iotedge.sim.mqtt")
        _log.info(
            "simulator pushes %d objects to %s under %s/",
            len(pusher.objects),
            pusher.broker.url,
            pusher.layout.prefix,
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan
