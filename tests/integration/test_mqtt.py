"""MQTT on both sides of a real edge, against a real Mosquitto and real iotedge processes.

Every test has its own topic prefix and session client ids, and deletes its sessions.
"""

import contextlib
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.mqttutil import (
    Received,
    clear_retained,
    forget_session,
    own_broker,
    publish_many,
    require_broker,
    subscriber,
    unique_prefix,
)
from tests.procs import Proc, free_port, start_iotedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class MqttEdge:
    """A running edge with MQTT on: its process, metrics URL, topic prefix and session id."""

    proc: Proc
    metrics_url: str
    prefix: str
    client_id: str

    def get(self, path: str, client: str = "*", **params: str | int) -> httpx.Response:
        """GET on the edge with ``client``'s key."""
        return httpx.get(self.proc.url + path, params=params, headers={"x-api-key": KEYS[client]}, timeout=10)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the edge's Prometheus metrics (0 when absent)."""
        text = httpx.get(self.metrics_url, timeout=5).text
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        series = name + (f"{{{wanted}}}" if wanted else "")
        match = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def rejected(self, reason: str) -> float:
        """Telemetry rejections counted for ``reason``."""
        return self.metric("iotedge_mqtt_messages_rejected_total", reason=reason)

    def mqtt_check(self) -> dict[str, object]:
        """The ``mqtt`` check of /readyz."""
        check: dict[str, object] = self.get("/readyz").json()["checks"]["mqtt"]
        return check

    def count(self, object_id: str, metric: str, client: str = "*") -> int:
        """Readings of one object's metric in the last two hours."""
        response = self.get("/processed_data", client, object_id=object_id, metric=metric, window="2h")
        return int(response.json()["statistics"]["count"]) if response.status_code == 200 else 0


@contextlib.contextmanager
def mqtt_edge(
    logs_dir: Path,
    data_dir: Path,
    upstream: str,
    broker: tuple[str, int],
    *extra: str,
    prefix: str,
    client_id: str,
    env: dict[str, str] | None = None,
    scheme: str = "mqtt",
) -> Iterator[MqttEdge]:
    """An edge polling ``upstream`` and connected to ``broker``, until the block ends."""
    metrics_port = free_port()
    args = edge_args(upstream, data_dir, "--mqtt-broker", f"{scheme}://{broker[0]}:{broker[1]}")
    args[args.index("--metrics-port") + 1] = str(metrics_port)
    args += ["--mqtt-topic-prefix", prefix, "--mqtt-client-id", client_id, *extra]
    with start_iotedge(args, log_dir=logs_dir, env={**edge_env(), **(env or {})}) as proc:
        edge = MqttEdge(proc, f"http://127.0.0.1:{metrics_port}/metrics", prefix, client_id)
        wait_for(lambda: edge.mqtt_check()["ok"] is True, 45, "edge connected to the broker")
        yield edge


@pytest.fixture
def session_ids() -> Iterator[list[str]]:
    """Client ids whose sessions on the machine's broker are deleted after the test."""
    ids: list[str] = []
    yield ids
    for client_id in ids:
        forget_session("127.0.0.1", 1883, client_id)


def _new_id(ids: list[str]) -> str:
    ids.append(f"iotedge-test-{uuid.uuid4().hex[:10]}")
    return ids[-1]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _reading(object_id: str, client: str, ts: float, temperature: float, **extra: object) -> bytes:
    body = {
        "id": object_id,
        "client": client,
        "type": "temperature_sensor",
        "metrics": {"temperature": temperature, "battery_level": 80},
        "timestamp": _iso(ts),
        **extra,
    }
    return json.dumps(body).encode()


def test_simulator_pushes_and_edge_statistics_equal_pushed_values(
    logs_dir: Path, tmp_path: Path, session_ids: list[str]
) -> None:
    """A split fleet: two objects pushed, the rest polled; the edge's numbers equal the pushed ones.

    The edge's retained per-object statistics reach a late subscriber (and are cleared after).
    """
    broker = require_broker()
    prefix = unique_prefix("sim")
    sim_args = ["sim", "--seed", "7", "--interval", "1", "--anomaly-rate", "0"]
    sim_args += ["--mqtt-broker", "mqtt://127.0.0.1:1883", "--mqtt-topic-prefix", prefix]
    sim_args += ["--mqtt-objects", "device_1,device_2"]
    with (
        subscriber(*broker, f"{prefix}/+/+/telemetry") as tap,
        start_iotedge(sim_args, log_dir=logs_dir) as sim,
    ):
        catalogue = httpx.get(sim.url + "/iot_objects").json()
        listed = {o["id"] for o in catalogue}
        listed_objects = [(o["client"], o["id"]) for o in catalogue]
        assert "device_1" not in listed and "device_3" in listed  # pushed objects are not polled
        stats_flags = ("--mqtt-statistics-interval", "1s")
        with mqtt_edge(
            logs_dir, tmp_path, sim.url, broker, *stats_flags, prefix=prefix, client_id=_new_id(session_ids)
        ) as edge:
            wait_for(lambda: edge.count("device_1", "temperature") >= 4, 20, "pushed readings stored")
            pushed = [m.json() for m in tap.received() if m.topic.endswith("/device_1/telemetry")]
            until = max(
                datetime.fromisoformat(p["timestamp"]).replace(tzinfo=UTC).timestamp() for p in pushed
            )
            since = until - 3
            expected = [
                p["metrics"]["temperature"]
                for p in pushed
                if since <= datetime.fromisoformat(p["timestamp"]).replace(tzinfo=UTC).timestamp() <= until
            ]
            stats = edge.get(
                "/processed_data",
                object_id="device_1",
                metric="temperature",
                to=str(until + 0.5),
                **{"from": str(since)},
            ).json()["statistics"]
            assert stats["count"] == len(expected)
            assert stats["min"] == min(expected) and stats["max"] == max(expected)
            assert stats["average"] == pytest.approx(sum(expected) / len(expected), abs=1e-3)
            assert edge.count("device_3", "activity_level") > 0  # the polled part still flows
            assert edge.metric("iotedge_mqtt_messages_received_total") >= len(pushed) / 2
            # The retained statistics reach a subscriber that connects later.
            with subscriber(*broker, f"{prefix}/client_1/device_1/statistics") as cloud:
                wait_for(lambda: bool(cloud.received()), 10, "retained statistics of device_1")
                first = cloud.received()[0]
                assert first.retain and first.json()["metrics"]["temperature"]["count"] > 0
        objects = [*listed_objects, ("client_1", "device_1"), ("client_1", "device_2")]
        clear_retained(
            *broker, [f"{prefix}/{client}/{object_id}/statistics" for client, object_id in objects]
        )


def test_pushed_anomaly_opens_an_event_and_is_published_once(
    logs_dir: Path, tmp_path: Path, sim: Proc, session_ids: list[str]
) -> None:
    """A hot reading pushed by a new device opens an event; anomaly.opened reaches a subscriber once."""
    broker = require_broker()
    prefix = unique_prefix("anomaly")
    with (
        subscriber(*broker, f"{prefix}/client_1/anomalies") as cloud,
        mqtt_edge(
            logs_dir, tmp_path, sim.url, broker, prefix=prefix, client_id=_new_id(session_ids),
            env={"IOTEDGE_NOTIFY_COOLDOWN": "0s"},
        ) as edge,
    ):  # fmt: skip
        now = time.time()
        topic = f"{prefix}/client_1/mq_thermo/telemetry"
        publish_many(*broker, [(topic, _reading("mq_thermo", "client_1", now - 2, 45.0))])

        def about(kind: str) -> list[Received]:
            return [
                m
                for m in cloud.received()
                if m.json()["type"] == kind and m.json()["event"]["object_id"] == "mq_thermo"
            ]

        wait_for(lambda: bool(about("anomaly.opened")), 15, "anomaly.opened")
        events = edge.get("/anomalies", "client_1", object_id="mq_thermo").json()["anomalies"]
        assert [e["rule"] for e in events] and events[0]["object_id"] == "mq_thermo"
        assert edge.get("/objects/mq_thermo", "client_1").status_code == 200  # registered at first message
        # Close it: once anomaly.resolved arrives, a duplicate opened (sent before it) would have too.
        publish_many(*broker, [(topic, _reading("mq_thermo", "client_1", now - 1, 22.0))])
        wait_for(lambda: bool(about("anomaly.resolved")), 15, "anomaly.resolved")
        opened = about("anomaly.opened")
        assert len(opened) == 1
        body = opened[0].json()
        assert body["event"]["object_id"] == "mq_thermo" and body["event"]["client"] == "client_1"
        assert opened[0].user_properties["idempotency_key"] == body["idempotency_key"]


def test_client_mismatch_and_garbage_are_counted_and_the_edge_stays_up(
    logs_dir: Path, tmp_path: Path, sim: Proc, session_ids: list[str]
) -> None:
    """client_2's payload on client_1's topic, and each kind of garbage, are rejected and counted."""
    broker = require_broker()
    prefix = unique_prefix("garbage")
    extra = ("--mqtt-max-payload", "2048", "--mqtt-object-rate", "0.1", "--mqtt-object-burst", "3")
    with mqtt_edge(
        logs_dir, tmp_path, sim.url, broker, *extra, prefix=prefix, client_id=_new_id(session_ids)
    ) as edge:
        now = time.time()
        t = f"{prefix}/client_1/mq_dev/telemetry"

        def other(name: str) -> str:
            return f"{prefix}/client_1/{name}/telemetry"

        def bad(name: str, old: bytes, new: bytes) -> tuple[str, bytes]:
            return other(name), _reading(name, "client_1", now, 21.0).replace(old, new)

        cases = {
            "client_mismatch": [(other("mq_a"), _reading("mq_a", "client_2", now, 21.0))],
            "not_json": [(other("mq_b"), b'{"id": "mq_b", "metrics": '), (other("mq_b2"), b"\xff\xfe")],
            "non_finite": [bad("mq_c", b"21.0", b"NaN")],
            "wrong_type": [bad("mq_d", b"21.0", b'"hot"')],
            "too_large": [(other("mq_e"), _reading("mq_e", "client_1", now, 21.0, pad="x" * 4096))],
            "bad_topic": [
                (f"{prefix}/client_1/telemetry", b"{}"),
                (f"{prefix}/client_1/f/x/telemetry", b"{}"),
            ],
            "not_an_object": [(other("mq_g"), b"[1, 2, 3]")],
            "unknown_type": [bad("mq_h", b"temperature_sensor", b"toaster")],
            "rate_limited": [(t, _reading("mq_dev", "client_1", now - 30 + i, 21.0)) for i in range(10)],
        }
        publish_many(*broker, [message for messages in cases.values() for message in messages])
        for reason, messages in cases.items():
            minimum = 6 if reason == "rate_limited" else len(messages)
            wait_for(lambda r=reason, n=minimum: edge.rejected(r) >= n, 10, f"{reason} counted")  # type: ignore[misc]
        assert edge.count("mq_a", "temperature", "client_2") == 0
        assert edge.get("/objects/mq_a", "client_1").status_code == 404  # never registered
        assert httpx.get(edge.proc.url + "/healthz").status_code == 200
        # The subscriber survived all of it: a good reading still goes in.
        publish_many(*broker, [(other("mq_ok"), _reading("mq_ok", "client_1", now, 21.5))])
        wait_for(
            lambda: edge.count("mq_ok", "temperature", "client_1") == 1, 10, "a valid reading after garbage"
        )


def test_kill_9_loses_no_queued_message(
    logs_dir: Path, tmp_path: Path, sim: Proc, session_ids: list[str]
) -> None:
    """Kill -9 the edge mid-stream; after a restart every QoS-1 message is stored: loss 0."""
    broker = require_broker()
    prefix = unique_prefix("kill9")
    client_id = _new_id(session_ids)
    base = time.time() - 1200
    objects, per_object = 3, 200
    messages = [
        (
            f"{prefix}/client_1/mq_k{o}/telemetry",
            _reading(f"mq_k{o}", "client_1", base + i, 20.0 + (i % 50) / 10),
        )
        for i in range(per_object)
        for o in range(objects)
    ]
    extra = ("--mqtt-object-rate", "0")
    opts = {"prefix": prefix, "client_id": client_id}
    with mqtt_edge(logs_dir, tmp_path, sim.url, broker, *extra, **opts) as edge:  # type: ignore[arg-type]
        publish_many(*broker, messages[: len(messages) // 3])
        edge.proc.kill()  # whatever was in flight is unacknowledged: the broker keeps it
    publish_many(*broker, messages[len(messages) // 3 :])  # queued in the session while the edge is down
    with mqtt_edge(logs_dir, tmp_path, sim.url, broker, *extra, **opts) as edge:  # type: ignore[arg-type]

        def stored() -> int:
            return sum(edge.count(f"mq_k{o}", "temperature", "client_1") for o in range(objects))

        wait_for(lambda: stored() == len(messages), 20, "every queued message stored")
        loss = len(messages) - stored()
        print(f"kill -9 test: published {len(messages)}, stored {stored()}, loss {loss}")  # noqa: T201
        assert loss == 0


def test_broker_restart_edge_reconnects_and_publish_backlog_drains(
    logs_dir: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Stop the test's own broker: polling and /readyz go on, anomalies queue; start it: they drain."""
    sim_args = ["sim", "--seed", "5", "--interval", "1", "--anomaly-rate", "0.8", "--anomaly-slot", "20"]
    with (
        own_broker(tmp_path_factory.mktemp("broker")) as broker,
        start_iotedge(sim_args, log_dir=logs_dir) as sim,
    ):
        address = ("127.0.0.1", broker.port)
        prefix = unique_prefix("restart")
        with (
            subscriber(*address, f"{prefix}/+/anomalies", persistent=True) as cloud,
            mqtt_edge(
                logs_dir, tmp_path, sim.url, address, prefix=prefix, client_id="iotedge-test-restart",
                env={"IOTEDGE_NOTIFY_COOLDOWN": "0s"},
            ) as edge,
        ):  # fmt: skip
            broker.stop()
            wait_for(lambda: edge.mqtt_check()["ok"] is False, 10, "edge noticed the broker is gone")

            def mqtt_rows(status: str) -> dict[str, str]:
                rows = edge.get("/notifications", limit=1000).json()["notifications"]
                return {
                    str(r["idempotency_key"]): str(r["status"])
                    for r in rows
                    if r["channel"] == "mqtt"
                    and r["kind"] == "event"
                    and (status == "*" or r["status"] == status)
                }

            wait_for(
                lambda: len(mqtt_rows("pending")) >= 2, 30, "anomaly messages queued while the broker is down"
            )
            ready = edge.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["upstream"]["ok"]  # polling goes on
            backlog = set(mqtt_rows("pending"))
            broker.start()
            wait_for(lambda: edge.mqtt_check()["ok"] is True, 20, "edge reconnected")

            def settled() -> dict[str, str]:
                every = mqtt_rows("*")
                return {key: every[key] for key in backlog if every.get(key, "pending") != "pending"}

            wait_for(lambda: len(settled()) == len(backlog), 20, "the backlog drained")
            sent = {key for key, status in settled().items() if status == "sent"}
            assert sent, settled()  # noise control may fold some messages, never all of them

            def delivered() -> set[str]:
                return {m.user_properties.get("idempotency_key", "") for m in cloud.received()}

            wait_for(lambda: sent <= delivered(), 10, "the sent backlog received by the subscriber")
            log = edge.proc.log()
            assert log.count("unreachable, retrying in the background") == 1
            assert log.count("is back") == 1


def test_mqtts_with_the_certificates_of_iotedge_certs(
    logs_dir: Path, tmp_path: Path, sim: Proc, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """mqtts:// with the CA and the client certificate of `iotedge certs`, on a broker that requires one."""
    certs = tmp_path / "certs"
    subprocess.run([sys.executable, "-m", "iotedge", "certs", "--out", str(certs)], check=True, timeout=60)
    tls = (
        f"cafile {certs / 'ca.pem'}\ncertfile {certs / 'server.pem'}\nkeyfile {certs / 'server-key.pem'}\n"
        "require_certificate true\n"
    )
    with own_broker(tmp_path_factory.mktemp("tls-broker"), extra=tls) as broker:
        flags = ["--mqtt-ca", str(certs / "ca.pem"), "--mqtt-certfile", str(certs / "client.pem")]
        flags += ["--mqtt-keyfile", str(certs / "client-key.pem")]
        with mqtt_edge(
            logs_dir, tmp_path / "edge", sim.url, ("localhost", broker.port), *flags,
            prefix=unique_prefix("tls"), client_id="iotedge-test-tls", scheme="mqtts",
        ) as edge:  # fmt: skip
            assert edge.mqtt_check()["broker"] == f"mqtts://localhost:{broker.port}"
