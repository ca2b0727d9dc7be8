"""Real MQTT for tests: the machine's broker, a broker process of a test's own, a subscriber."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes

from iotedge.mqtt import properties as mqtt_properties
from tests.conftest import require
from tests.procs import free_port

__all__ = [
    "MACHINE_BROKER",
    "Broker",
    "Received",
    "Subscriber",
    "clear_retained",
    "forget_session",
    "own_broker",
    "publish_many",
    "require_broker",
    "subscriber",
    "unique_prefix",
]

MACHINE_BROKER = ("127.0.0.1", 1883)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def require_broker() -> tuple[str, int]:
    """The machine's Mosquitto (skip locally, fail in CI, when it is not running)."""
    require(_listening(*MACHINE_BROKER), "no MQTT broker on 127.0.0.1:1883 (start: mosquitto -d)")
    return MACHINE_BROKER


def unique_prefix(name: str) -> str:
    """A topic prefix no other test run shares."""
    return f"iotedge-test/{name}-{uuid.uuid4().hex[:10]}"


def _client(client_id: str = "") -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


def _connect(client: mqtt.Client, host: str, port: int, *, clean_start: bool, expiry: int) -> None:
    properties = mqtt_properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = expiry
    client.connect(host, port, keepalive=30, clean_start=clean_start, properties=properties)


def forget_session(host: str, port: int, client_id: str) -> None:
    """Delete a persistent session (and whatever it queued) from the broker."""
    client = _client(client_id)
    with contextlib.suppress(OSError):
        _connect(client, host, port, clean_start=True, expiry=0)
        client.loop_start()
        client.disconnect()
        client.loop_stop()


def publish_many(
    host: str,
    port: int,
    messages: list[tuple[str, bytes]],
    *,
    timeout: float = 20.0,
    client_id: str = "",
    username: str = "",
    password: str = "",
    retain: bool = False,
) -> None:
    """Publish at QoS 1 and return once the broker acknowledged every message."""
    client = _client(client_id or f"test-pub-{uuid.uuid4().hex[:8]}")
    if username:
        client.username_pw_set(username, password)
    client.max_inflight_messages_set(100)
    _connect(client, host, port, clean_start=True, expiry=0)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "broker did not acknowledge a publish in time"
    finally:
        client.disconnect()
        client.loop_stop()


def clear_retained(host: str, port: int, topics: list[str]) -> None:
    """Delete the retained messages of ``topics`` (an empty retained message each)."""
    publish_many(host, port, [(topic, b"") for topic in topics], retain=True)


@dataclass
class Received:
    """One message a subscriber got."""

    topic: str
    payload: bytes
    user_properties: dict[str, str]
    retain: bool

    def json(self) -> Any:
        """The payload as JSON."""
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A real MQTT client collecting what arrives on a topic filter (in paho's thread)."""

    client: mqtt.Client
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Received]:
        """A copy of what arrived so far."""
        with self.lock:
            return list(self.messages)


@contextlib.contextmanager
def subscriber(
    host: str,
    port: int,
    topic: str,
    *,
    client_id: str = "",
    persistent: bool = False,
    username: str = "",
    password: str = "",
) -> Iterator[Subscriber]:
    """Subscribe to ``topic`` at QoS 1 until the block ends.

    ``persistent``: keep the session across broker restarts (the broker must persist it).
    """
    client_id = client_id or f"test-sub-{uuid.uuid4().hex[:8]}"
    client = _client(client_id)
    if username:
        client.username_pw_set(username, password)
    sub = Subscriber(client)
    subscribed = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        props = getattr(message.properties, "UserProperty", []) if message.properties else []
        with sub.lock:
            sub.messages.append(
                Received(message.topic, bytes(message.payload), dict(props), bool(message.retain))
            )

    def on_connect(c: mqtt.Client, _u: object, _f: object, _rc: object, _p: object = None) -> None:
        c.subscribe(topic, qos=1)

    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda *_args: subscribed.set()
    client.reconnect_delay_set(1, 1)
    _connect(client, host, port, clean_start=not persistent, expiry=300 if persistent else 0)
    client.loop_start()
    try:
        assert subscribed.wait(10), f"could not subscribe to {topic}"
        yield sub
    finally:
        client.disconnect()
        client.loop_stop()
        if persistent:
            forget_session(host, port, client_id)


@dataclass
class Broker:
    """A Mosquitto process of a test's own (so a test may stop and restart it)."""

    port: int
    config: Path
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it listens."""
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(["mosquitto", "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while not _listening("127.0.0.1", self.port):
            assert self.popen.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "mosquitto did not start listening"
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop it (SIGTERM: it saves its persistent sessions) and wait for the exit."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(10)
        self.popen = None


@contextlib.contextmanager
def own_broker(directory: Path, *, extra: str = "") -> Iterator[Broker]:
    """A Mosquitto on a free loopback port, persisting to ``directory``; stopped afterwards."""
    require(shutil.which("mosquitto") is not None, "mosquitto is not installed (apt-get install mosquitto)")
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {directory}/\n"
        "max_queued_messages 100000\n" + ("user root\n" if os.geteuid() == 0 else "") + extra
        # As root, Mosquitto would switch to its own user, who cannot write a test's directory.
    )
    broker = Broker(port=port, config=config, log=directory / "mosquitto.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
