"""The edge's MQTT connection: telemetry in (QoS 1, persistent session), anomalies and statistics out.

At least once in: the session survives restarts (clean start off, session expiry set, a
stable client id), and each message is acknowledged only after its batch is committed
to the store, so a crash before the commit makes the broker deliver it again. Readings
are idempotent in the store (same object, metric and time), so a redelivery is harmless.

The connection loop reconnects with capped, jittered backoff and logs once when the
broker is lost and once when it is back; polling and the API never wait on it.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

from iotedge.edge.mqtt.decode import TelemetryDecoder
from iotedge.edge.mqtt.metrics import MqttMetrics
from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.errors import IotedgeError, StoreError
from iotedge.mqtt import BrokerAddress, TopicLayout, client_kwargs, properties as mqtt_properties
from iotedge.mqtt.topics import TELEMETRY

__all__ = ["IngestSink", "MqttBridge", "MqttHealth", "MqttUnavailable", "StatisticsSource"]

_log = logging.getLogger(__name__)

# Messages taken into one store transaction at most.
_MAX_BATCH = 2000
# How long a non-empty batch waits for one more message before it is committed.
_LINGER_S = 0.002
_PUBLISH_TIMEOUT_S = 10.0

IngestSink = Callable[[list[Reading], Sequence[CatalogueEntry], float], Awaitable[object]]
"""Stores and evaluates a batch: (readings, objects seen for the first time, now)."""

StatisticsSource = Callable[[], Awaitable[list[tuple[str, str, bytes]]]]
"""(client, object_id, JSON payload) of each object's statistics."""


class MqttUnavailable(IotedgeError):
    """Not connected to the broker, or it did not acknowledge a publish in time."""


@dataclass
class MqttHealth:
    """What the bridge knows about itself, for /readyz and logs."""

    connected: bool = False
    broker: str = ""
    since: float | None = None
    last_error: str | None = None
    connects: int = 0
    received: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    published: int = 0
    publish_failures: int = 0

    def as_json(self, now: float) -> dict[str, Any]:
        """The ``mqtt`` check of /readyz (informative: it never makes the edge unready)."""
        return {
            "ok": self.connected,
            "broker": self.broker,
            "connected_for_seconds" if self.connected else "disconnected_for_seconds": None
            if self.since is None
            else round(now - self.since, 3),
            "last_error": self.last_error,
            "received": self.received,
            "rejected": sum(self.rejected.values()),
            "published": self.published,
            "publish_failures": self.publish_failures,
        }


class MqttBridge:
    """Subscribes to telemetry, hands batches to the ingest sink, publishes for the outbox.

    Args:
        broker: where the broker is.
        layout: the topic layout (and prefix).
        client_id: the stable client id that names the persistent session.
        decoder: turns a telemetry message into readings.
        sink: stores and evaluates a batch (the collector's ``ingest``).
        metrics: where counts go.
        clients: subscribe to these clients' topics only (empty: all).
        session_expiry_s: how long the broker keeps the session while we are away.
        statistics: source of the retained per-object statistics (None: not published).
        statistics_interval_s: seconds between statistics rounds.
        on_connected: called after each (re)connection (the outbox retries its backlog).
        clock: wall clock, for the ingest time.
        backoff_base_s: first reconnect delay ceiling; doubles up to ``backoff_cap_s``.
    """

    def __init__(
        self,
        *,
        broker: BrokerAddress,
        layout: TopicLayout,
        client_id: str,
        decoder: TelemetryDecoder,
        sink: IngestSink,
        metrics: MqttMetrics,
        clients: tuple[str, ...] = (),
        session_expiry_s: float = 86400.0,
        statistics: StatisticsSource | None = None,
        statistics_interval_s: float = 0.0,
        on_connected: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
    ) -> None:
        self.broker = broker
        self.layout = layout
        self.client_id = client_id
        self.health = MqttHealth(broker=broker.url)
        self._decoder = decoder
        self._sink = sink
        self._metrics = metrics
        self._clients = clients
        self._session_expiry = int(session_expiry_s)
        self._statistics = statistics
        self._statistics_interval = statistics_interval_s
        self._on_connected = on_connected
        self._clock = clock
        self._backoff = (backoff_base_s, backoff_cap_s)
        self._client: aiomqtt.Client | None = None
        self._rng = random.Random()

    # -- connection -------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until cancelled: serve, and on loss reconnect with backoff."""
        failures = 0
        while True:
            try:
                await self._serve()
                error = "connection closed"
            except aiomqtt.MqttError as exc:
                error = str(exc) or type(exc).__name__
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
            failures = 0 if self.health.connected else failures + 1
            self._lost(error)
            base, cap = self._backoff
            # Full jitter: many edges restarting together do not hit the broker in step.
            await asyncio.sleep(self._rng.uniform(base / 2, min(cap, base * 2.0 ** min(failures, 16))))

    def _client_for(self) -> aiomqtt.Client:
        properties = mqtt_properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self._session_expiry
        client = aiomqtt.Client(
            **client_kwargs(self.broker),
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=properties,
            logger=logging.getLogger("iotedge.edge.mqtt.client"),
            timeout=_PUBLISH_TIMEOUT_S,
        )
        # aiomqtt does not expose paho's manual acknowledgement; we need it so that a
        # message is acknowledged only once its reading is committed.
        client._client.manual_ack_set(True)
        return client

    async def _serve(self) -> None:
        client = self._client_for()
        async with client:
            self._client = client
            try:
                self._up()
                options = SubscribeOptions(qos=1, noLocal=True)
                await client.subscribe(
                    [(topic, options) for topic in self.layout.subscriptions(self._clients)]
                )
                stats = None
                if self._statistics is not None and self._statistics_interval > 0:
                    stats = asyncio.create_task(self._publish_statistics(), name="iotedge.edge.mqtt.stats")
                try:
                    await self._consume(client)
                finally:
                    if stats is not None:
                        stats.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await stats
            finally:
                self._client = None

    def _up(self) -> None:
        health = self.health
        health.connects += 1
        self._metrics.connects.inc()
        self._metrics.connected.set(1)
        if health.connects == 1:
            _log.info("MQTT: connected to %s as %s", self.broker.url, self.client_id)
        else:
            _log.info(
                "MQTT: broker %s is back after %.1f s (%s)",
                self.broker.url,
                self._clock() - (health.since or self._clock()),
                health.last_error,
            )
        health.connected = True
        health.since = self._clock()
        health.last_error = None
        if self._on_connected is not None:
            self._on_connected()

    def _lost(self, error: str) -> None:
        health = self.health
        if health.connected or (health.connects == 0 and health.last_error is None):
            _log.warning(
                "MQTT: broker %s unreachable, retrying in the background: %s", self.broker.url, error
            )
            health.since = self._clock()
        health.connected = False
        health.last_error = error
        self._metrics.connected.set(0)

    # -- telemetry in ---------------------------------------------------------------------

    async def _consume(self, client: aiomqtt.Client) -> None:
        messages = client.messages
        queue = client._queue  # see _client_for: aiomqtt's iterator costs a task per message
        batch = _Batch()
        while True:
            if not batch.size:
                self._take(await anext(messages), batch)  # wait, without a timeout, for the next one
            # Take what is already queued without a round through the event loop each.
            while len(messages) and batch.size < _MAX_BATCH:
                self._take(queue.get_nowait(), batch)
            if batch.size < _MAX_BATCH:
                # Linger a moment for more: one store transaction per message would cap the
                # rate at the disk's commit rate. (A timeout around the iterator could drop a
                # message it had already taken off the queue.)
                await asyncio.sleep(_LINGER_S)
                if len(messages):
                    continue
            await self._flush(client, batch)
            batch = _Batch()

    def _take(self, message: aiomqtt.Message, batch: "_Batch") -> None:
        batch.size += 1
        if message.qos > 0:
            batch.mids.append(message.mid)
        match = self.layout.parse(message.topic.value)
        if match.kind != TELEMETRY:
            if match.kind is None:  # statistics and anomalies of other edges are not ours to count
                self._count_reject("bad_topic")
            return
        self.health.received += 1
        self._metrics.received.inc()
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        try:
            decoded = self._decoder.decode(match.client, match.object_id, payload)
        except Exception:  # noqa: BLE001 - a bug must not make one message a poison pill
            _log.exception("MQTT: could not decode a message on %s", message.topic.value)
            self._count_reject("other")
            return
        for reason, count in decoded.rejected.items():
            self._count_reject(reason, count)
        if decoded.entry is not None and decoded.readings:
            batch.readings.extend(decoded.readings)
            if decoded.entry.id not in self._decoder.known:
                batch.new[decoded.entry.id] = decoded.entry

    async def _flush(self, client: aiomqtt.Client, batch: "_Batch") -> None:
        if batch.readings:
            try:
                await self._sink(batch.readings, list(batch.new.values()), self._clock())
            except StoreError as exc:
                # Not acknowledged: the broker delivers these again after a reconnect.
                _log.error(
                    "MQTT: store write failed, %d messages left unacknowledged: %s", len(batch.mids), exc
                )
                raise aiomqtt.MqttError(f"store write failed: {exc}") from exc
            except Exception:  # noqa: BLE001 - redelivering the batch would hit the same bug forever
                _log.exception("MQTT: ingest of %d readings failed; acknowledged anyway", len(batch.readings))
            self._decoder.known.update(batch.new)
        for mid in batch.mids:
            client._client.ack(mid, 1)  # see _client_for

    def _count_reject(self, reason: str, count: int = 1) -> None:
        self.health.rejected[reason] = self.health.rejected.get(reason, 0) + count
        self._metrics.reject(reason, count)

    # -- publish out ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a connection is up now."""
        return self._client is not None and self.health.connected

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        kind: str,
        retain: bool = False,
        user_properties: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Publish at QoS 1 and return once the broker acknowledged; raises MqttUnavailable."""
        client = self._client
        if client is None:
            self._metrics.publish(kind, ok=False)
            self.health.publish_failures += 1
            raise MqttUnavailable(f"not connected to {self.broker.url}")
        properties = mqtt_properties(PacketTypes.PUBLISH)
        properties.ContentType = "application/json"
        if user_properties:
            properties.UserProperty = list(user_properties)
        try:
            await client.publish(
                topic, payload, qos=1, retain=retain, properties=properties, timeout=_PUBLISH_TIMEOUT_S
            )
        except aiomqtt.MqttError as exc:
            self._metrics.publish(kind, ok=False)
            self.health.publish_failures += 1
            raise MqttUnavailable(f"publish to {self.broker.url} failed: {exc}") from exc
        self._metrics.publish(kind, ok=True)
        self.health.published += 1

    async def _publish_statistics(self) -> None:
        assert self._statistics is not None  # noqa: S101 - checked by the caller
        while True:
            try:
                for client, object_id, payload in await self._statistics():
                    await self.publish(
                        self.layout.statistics(client, object_id), payload, kind="statistics", retain=True
                    )
            except (MqttUnavailable, StoreError) as exc:
                _log.debug("MQTT statistics round skipped: %s", exc)
            except Exception:  # noqa: BLE001 - statistics must not take the telemetry down
                _log.exception("MQTT statistics round failed")
            await asyncio.sleep(self._statistics_interval)


class _Batch:
    __slots__ = ("mids", "new", "readings", "size")

    def __init__(self) -> None:
        self.size = 0
        self.mids: list[int] = []
        self.readings: list[Reading] = []
        self.new: dict[str, CatalogueEntry] = {}
