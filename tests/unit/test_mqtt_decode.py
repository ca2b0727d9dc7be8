"""The pure parts of MQTT: topic layout, broker URLs, the telemetry decoder and the flood guard."""

import json
from pathlib import Path

import pytest

from iotedge.edge.mqtt import FloodGuard, TelemetryDecoder
from iotedge.edge.normalise import CatalogueEntry
from iotedge.errors import ConfigError
from iotedge.mqtt import TopicLayout, parse_broker

LAYOUT = TopicLayout("site/iotedge")


@pytest.mark.parametrize(
    ("topic", "kind", "client", "object_id"),
    [
        pytest.param(
            "site/iotedge/client_1/dev_1/telemetry", "telemetry", "client_1", "dev_1", id="telemetry"
        ),
        pytest.param(
            "site/iotedge/client_1/dev_1/statistics", "statistics", "client_1", "dev_1", id="statistics"
        ),
        pytest.param("site/iotedge/client_1/anomalies", "anomalies", "client_1", "", id="anomalies"),
        pytest.param("site/iotedge/client_1/telemetry", None, "", "", id="missing-object"),
        pytest.param("site/iotedge/client_1/dev_1/x/telemetry", None, "", "", id="too-deep"),
        pytest.param("site/other/client_1/dev_1/telemetry", None, "", "", id="other-prefix"),
        pytest.param("site/iotedge/client 1/dev_1/telemetry", None, "", "", id="space-in-client"),
    ],
)
def test_topic_layout(topic: str, kind: str | None, client: str, object_id: str) -> None:
    """Topics are parsed by the documented layout; anything else is outside it."""
    match = LAYOUT.parse(topic)
    assert (match.kind, match.client, match.object_id) == (kind, client, object_id)


def test_topics_round_trip() -> None:
    """Built topics parse back to what built them."""
    assert LAYOUT.parse(LAYOUT.telemetry("c", "o")).kind == "telemetry"
    assert LAYOUT.anomalies("c") == "site/iotedge/c/anomalies"
    assert LAYOUT.subscriptions(("a", "b")) == ["site/iotedge/a/#", "site/iotedge/b/#"]
    with pytest.raises(ValueError, match="prefix"):
        TopicLayout("bad/+/prefix")


def test_broker_urls(tmp_path: Path) -> None:
    """mqtt:// and mqtts:// parse with default ports; TLS files must exist; no password in the URL."""
    plain = parse_broker("mqtt://user:pw@broker.local")
    assert (plain.host, plain.port, plain.tls, plain.username, plain.password) == (
        "broker.local",
        1883,
        False,
        "user",
        "pw",
    )
    assert "pw" not in plain.url and "pw" not in repr(plain)
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert parse_broker("mqtts://b:9999", ca=ca).port == 9999
    for bad in ("http://b", "mqtt://", "mqtt://b/path"):
        with pytest.raises(ConfigError):
            parse_broker(bad)
    with pytest.raises(ConfigError, match="mqtts"):
        parse_broker("mqtt://b", ca=ca)
    with pytest.raises(ConfigError, match="not found"):
        parse_broker("mqtts://b", ca=tmp_path / "missing.pem")


def _decoder(max_payload: int = 4096) -> TelemetryDecoder:
    known = {"dev_9": CatalogueEntry("dev_9", "client_2", "humidity_sensor")}
    return TelemetryDecoder(known=known, max_payload=max_payload, flood=FloodGuard(rate=0, burst=1))


def _body(**fields: object) -> bytes:
    base: dict[str, object] = {
        "type": "temperature_sensor",
        "metrics": {"temperature": 21.5},
        "timestamp": "2026-01-01T00:00:00",
    }
    return json.dumps({**base, **fields}).encode()


@pytest.mark.parametrize(
    ("client", "object_id", "payload", "reason"),
    [
        pytest.param(
            "client_1", "dev_1", _body(client="client_2"), "client_mismatch", id="claims-other-client"
        ),
        pytest.param(
            "client_1", "dev_9", _body(type="humidity_sensor"), "client_mismatch", id="known-elsewhere"
        ),
        pytest.param("client_2", "dev_9", _body(), "type_mismatch", id="type-changed"),
        pytest.param("client_1", "dev_1", _body(id="dev_2"), "id_mismatch", id="other-object"),
        pytest.param("client_1", "dev_1", b"{not json", "not_json", id="not-json"),
        pytest.param("client_1", "dev_1", b"\xff\xfe", "not_json", id="not-utf8"),
        pytest.param("client_1", "dev_1", b"[" * 50_000 + b"]" * 50_000, "too_large", id="too-large"),
        pytest.param("client_1", "dev_1", b"[1]", "not_an_object", id="list"),
        pytest.param("client_1", "dev_1", _body(type=None), "missing_field", id="no-type"),
        pytest.param("client_1", "dev_1", _body(type="toaster"), "unknown_type", id="unknown-type"),
        pytest.param("client_1", "dev_1", _body(type=3), "wrong_type", id="type-not-string"),
        pytest.param(
            "client_1", "dev_1", _body(metrics={"temperature": "hot"}), "wrong_type", id="value-type"
        ),
        pytest.param("client_1", "dev_1", _body().replace(b"21.5", b"NaN"), "non_finite", id="nan"),
        pytest.param("client_1", "dev_1", _body(timestamp="yesterday"), "bad_timestamp", id="timestamp"),
    ],
)
def test_decoder_rejections(client: str, object_id: str, payload: bytes, reason: str) -> None:
    """Each kind of bad message yields no reading and its reason; nothing raises."""
    decoded = _decoder(max_payload=65536).decode(client, object_id, payload)
    assert decoded.readings == []
    assert reason in decoded.rejected


def test_decoder_takes_the_client_from_the_topic() -> None:
    """A payload without client or id is read as the topic's object; the course's list shape works too."""
    decoded = _decoder().decode("client_1", "dev_1", _body())
    assert decoded.entry == CatalogueEntry("dev_1", "client_1", "temperature_sensor")
    assert [(r.client, r.object_id, r.metric, r.value) for r in decoded.readings] == [
        ("client_1", "dev_1", "temperature", 21.5)
    ]
    listed = _body(
        metrics=None,
        measurements=[
            {"value": 20.0, "timestamp": "2026-01-01T00:00:00"},
            {"value": 21.0, "timestamp": "2026-01-01T00:01:00"},
        ],
    )
    assert [r.value for r in _decoder().decode("client_1", "dev_1", listed).readings] == [20.0, 21.0]


def test_flood_guard_refills_at_its_rate() -> None:
    """A burst passes, the next message is refused, and a token comes back after 1/rate seconds."""
    now = [0.0]
    guard = FloodGuard(rate=2.0, burst=3, clock=lambda: now[0])
    assert [guard.allow("a") for _ in range(4)] == [True, True, True, False]
    assert guard.allow("b")  # per object
    now[0] += 0.5
    assert guard.allow("a") and not guard.allow("a")
