"""Rendering and signing of notifications: subjects, bodies, the webhook schema, HMAC."""

import json

import pytest

from iotedge.edge.notify import (
    Notification,
    build_email,
    email_subject,
    email_text,
    sign,
    verify_signature,
    webhook_body,
)

EVENT = {
    "event_id": 42,
    "object_id": "device_1",
    "client": "client_1",
    "type": "temperature_sensor",
    "metric": "temperature",
    "rule": "temperature_high",
    "severity": "warning",
    "value": 31.5,
    "threshold": 30.0,
    "started_at": "2027-01-15T08:00:00+00:00",
    "ended_at": None,
    "message": "temperature above 30.0",
}


def _note(kind: str = "opened", **kw: object) -> Notification:
    return Notification(
        kind=kind,  # type: ignore[arg-type]
        idempotency_key=f"edge-a:42:{kind}",
        event=dict(EVENT),
        recorded_at=1_800_000_000.0,
        edge_id="edge-a",
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("note", "subject"),
    [
        pytest.param(
            _note("opened"),
            "[iotedge] OPENED warning: device_1 temperature above 30.0",
            id="opened",
        ),
        pytest.param(
            _note("resolved"),
            "[iotedge] RESOLVED warning: device_1 temperature above 30.0",
            id="resolved",
        ),
        pytest.param(
            _note("flapping", transitions=7, window_s=600.0),
            "[iotedge] FLAPPING warning: device_1 temperature above 30.0 (7 changes in 10 min)",
            id="flapping",
        ),
        pytest.param(
            _note("stable", state="opened"),
            "[iotedge] STABLE warning: device_1 temperature above 30.0 - still open",
            id="stable-open",
        ),
        pytest.param(_note("test"), "[iotedge] TEST: notifications from edge edge-a work", id="test"),
    ],
)
def test_subject_is_readable(note: Notification, subject: str) -> None:
    """Each kind of message gets the one-line subject the docs show."""
    assert email_subject(note) == subject


def test_subject_falls_back_and_stays_one_line() -> None:
    """Without a message the subject uses metric, rule and threshold; newlines collapse."""
    event = dict(EVENT, message="", rule="temp\r\nBcc: victim@example.org")
    note = Notification(kind="opened", idempotency_key="k", event=event, recorded_at=0.0)
    subject = email_subject(note)
    assert "\n" not in subject and "\r" not in subject
    assert subject.startswith("[iotedge] OPENED warning: device_1 temperature temp Bcc:")


def test_subject_strips_a_leading_object_id_from_the_message() -> None:
    """A rules message that starts with the object id does not repeat it."""
    event = dict(EVENT, message="device_1 temperature above 30.0")
    note = Notification(kind="resolved", idempotency_key="k", event=event, recorded_at=0.0)
    assert email_subject(note) == "[iotedge] RESOLVED warning: device_1 temperature above 30.0"


def test_email_text_carries_the_event() -> None:
    """The plain-text body names object, client, rule, value, threshold, times and the key."""
    text = email_text(_note("opened", grouped=3))
    for expected in (
        "An anomaly was detected.",
        "device_1 (temperature_sensor, client client_1)",
        "temperature_high (warning)",
        "31.5 (threshold 30.0)",
        "2027-01-15T08:00:00+00:00",
        "3 more changes since the previous message",
        "Idempotency key: edge-a:42:opened",
    ):
        assert expected in text


def test_build_email_headers_follow_the_key() -> None:
    """Message-ID is derived from the idempotency key, so retries carry the same one."""
    first = build_email(_note(), mail_from="edge@example.org", mail_to=("a@x.org",), now=0.0)
    again = build_email(_note(), mail_from="edge@example.org", mail_to=("a@x.org",), now=99.0)
    other = build_email(_note("resolved"), mail_from="edge@example.org", mail_to=("a@x",), now=0)
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]
    assert first["Message-ID"].endswith("@example.org>")
    assert first["X-Iotedge-Idempotency-Key"] == "edge-a:42:opened"


def test_webhook_body_is_versioned_and_stable() -> None:
    """The body has the v1 fields and is byte-identical on every retry."""
    raw = webhook_body(_note("flapping", transitions=9, window_s=600.0))
    assert raw == webhook_body(_note("flapping", transitions=9, window_s=600.0))
    body = json.loads(raw)
    assert body["version"] == 1
    assert body["type"] == "anomaly.flapping"
    assert body["idempotency_key"] == "edge-a:42:flapping"
    assert body["recorded_at"] == "2027-01-15T08:00:00+00:00"
    assert body["flapping"] == {"transitions": 9, "window_s": 600.0, "state": None}
    assert body["event"] == EVENT


def test_signature_matches_an_independent_hmac() -> None:
    """``sign`` gives the value ``openssl dgst -sha256 -hmac s3cret`` prints for the body."""
    expected = "5910e62016ef5034272c926c27071992a465c2335cecf41851bda071577f4f6d"
    assert sign(b'{"a":1}', "s3cret") == f"sha256={expected}"


@pytest.mark.parametrize(
    ("body", "header", "secret", "ok"),
    [
        pytest.param(b"{}", sign(b"{}", "k"), "k", True, id="good"),
        pytest.param(b"{} ", sign(b"{}", "k"), "k", False, id="tampered-body"),
        pytest.param(b"{}", sign(b"{}", "k"), "other", False, id="wrong-secret"),
        pytest.param(b"{}", None, "k", False, id="missing"),
        pytest.param(b"{}", "sha256=00", "k", False, id="garbage"),
    ],
)
def test_verify_signature(body: bytes, header: str | None, secret: str, ok: bool) -> None:
    """Only the right secret over the exact body verifies."""
    assert verify_signature(body, header, secret) is ok
