"""One notification and how it reads: the versioned webhook body, the email subject and text."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "SCHEMA_VERSION",
    "Kind",
    "Notification",
    "email_subject",
    "email_text",
    "iso",
    "webhook_body",
]

SCHEMA_VERSION = 1
_SUBJECT_MAX = 160

Kind = Literal["opened", "resolved", "flapping", "stable", "test"]


def iso(epoch: float | None) -> str | None:
    """ISO 8601 UTC with offset for epoch seconds (``None`` stays ``None``)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


@dataclass(frozen=True, kw_only=True)
class Notification:
    """A message about one anomaly event, ready for any channel.

    Attributes:
        kind: ``opened`` / ``resolved`` (a transition), ``flapping`` (the series changes
            too often and goes quiet), ``stable`` (it stopped flapping; ``state`` says how
            it ended) or ``test``.
        idempotency_key: the same on every retry; receivers drop duplicates by it.
        event: the outbox payload (object, client, metric, rule, value, times, message).
        recorded_at: when the transition was recorded (epoch seconds).
        grouped: transitions suppressed for this series since its previous message.
        transitions: for ``flapping``: transitions seen within ``window_s``.
        state: for ``stable``: ``opened`` or ``resolved``, the state the series settled in.
    """

    kind: Kind
    idempotency_key: str
    event: dict[str, Any]
    recorded_at: float
    edge_id: str = "edge"
    grouped: int = 0
    transitions: int = 0
    window_s: float = 0.0
    state: str | None = None


def webhook_body(note: Notification) -> bytes:
    """The JSON body of a webhook POST (schema version 1), stable across retries."""
    body: dict[str, Any] = {
        "version": SCHEMA_VERSION,
        "type": f"anomaly.{note.kind}" if note.kind != "test" else "test",
        "idempotency_key": note.idempotency_key,
        "edge_id": note.edge_id,
        "recorded_at": iso(note.recorded_at),
        "grouped": note.grouped,
        "flapping": None,
        "event": note.event,
    }
    if note.kind in ("flapping", "stable"):
        body["flapping"] = {
            "transitions": note.transitions,
            "window_s": note.window_s,
            "state": note.state,
        }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _summary(event: dict[str, Any]) -> str:
    object_id = str(event.get("object_id") or "?")
    message = " ".join(str(event.get("message") or "").split())
    if message.startswith(object_id + " "):
        message = message[len(object_id) + 1 :]
    if not message:
        parts = [event.get("metric"), event.get("rule"), event.get("threshold")]
        message = " ".join(str(p) for p in parts if p not in (None, ""))
    return f"{object_id} {message}".strip()


def email_subject(note: Notification) -> str:
    """A one-line subject, e.g. ``[iotedge] RESOLVED warning: device_1 temperature above 30.0``."""
    event = note.event
    if note.kind == "test":
        subject = f"[iotedge] TEST: notifications from edge {note.edge_id} work"
    else:
        subject = f"[iotedge] {note.kind.upper()} {event.get('severity', '?')}: {_summary(event)}"
        if note.kind == "flapping":
            subject += f" ({note.transitions} changes in {_duration(note.window_s)})"
        elif note.kind == "stable":
            subject += " - still open" if note.state == "opened" else " - resolved"
    # Header values must stay on one line; collapse anything a payload smuggled in.
    subject = " ".join(subject.split())
    return subject if len(subject) <= _SUBJECT_MAX else subject[: _SUBJECT_MAX - 3] + "..."


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def email_text(note: Notification) -> str:
    """The plain-text body of an email."""
    event = note.event
    if note.kind == "test":
        return (
            f"This is a test notification from iotedge edge {note.edge_id}.\n"
            "If you can read it, email notifications are delivered.\n\n"
            f"Idempotency key: {note.idempotency_key}\n"
        )
    headline = {
        "opened": "An anomaly was detected.",
        "resolved": "The anomaly has ended.",
        "flapping": (
            f"This anomaly changed state {note.transitions} times within "
            f"{_duration(note.window_s)}. Further changes are not sent until it is stable "
            f"for {_duration(note.window_s)}."
        ),
        "stable": (
            "The flapping anomaly is stable again; it is "
            + ("still OPEN." if note.state == "opened" else "RESOLVED.")
        ),
    }[note.kind]
    lines = [headline, ""]
    rows = [
        ("Object", f"{event.get('object_id')} ({event.get('type')}, client {event.get('client')})"),
        ("Metric", event.get("metric")),
        ("Rule", f"{event.get('rule')} ({event.get('severity')})"),
        ("Value", f"{event.get('value')} (threshold {event.get('threshold')})"),
        ("Started", event.get("started_at")),
        ("Ended", event.get("ended_at") or "-"),
        ("Message", event.get("message") or "-"),
        ("Event id", event.get("event_id")),
    ]
    if note.grouped:
        rows.append(("Grouped", f"{note.grouped} more changes since the previous message"))
    lines += [f"{name + ':':<10} {value}" for name, value in rows]
    lines += ["", f"Edge: {note.edge_id}", f"Idempotency key: {note.idempotency_key}", ""]
    return "\n".join(lines)
