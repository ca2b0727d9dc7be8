"""Anomalies detected by a real edge reach a real webhook receiver and a real SMTP server."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.notifyutil import WebhookReceiver, smtp_sink, webhook_receiver
from tests.procs import Proc, free_port, start_iotedge

pytestmark = pytest.mark.integration

SECRET = "webhook-secret-for-the-tests"


@pytest.fixture(scope="module")
def anomalous_sim(logs_dir: Path) -> Iterator[Proc]:
    """A simulator injecting anomalies often, with one-second buckets."""
    args = ["sim", "--seed", "5", "--interval", "1", "--anomaly-rate", "0.8", "--anomaly-slot", "20"]
    with start_iotedge(args, log_dir=logs_dir) as proc:
        yield proc


def _notify_env(hook_url: str, smtp_port: int) -> dict[str, str]:
    return {
        **edge_env(),
        "IOTEDGE_WEBHOOK_URL": hook_url,
        "IOTEDGE_WEBHOOK_SECRET": SECRET,
        "IOTEDGE_SMTP_HOST": "127.0.0.1",
        "IOTEDGE_SMTP_PORT": str(smtp_port),
        "IOTEDGE_SMTP_SECURITY": "plain",
        "IOTEDGE_MAIL_TO": "ops@example.com,oncall@example.com",
        "IOTEDGE_NOTIFY_COOLDOWN": "0s",
    }


def _notifications(edge: Proc, client: str = "*") -> dict[str, object]:
    response = httpx.get(
        edge.url + "/notifications", params={"limit": 1000}, headers={"x-api-key": KEYS[client]}
    )
    response.raise_for_status()
    body: dict[str, object] = response.json()
    return body


def test_anomalies_are_delivered_by_webhook_and_email(
    anomalous_sim: Proc, logs_dir: Path, tmp_path: Path
) -> None:
    """Events reach both channels, signed and once each; /notifications is scoped by key."""
    with smtp_sink() as sink, webhook_receiver(SECRET, fail_first=2) as hook:
        env = _notify_env(hook.url, sink.port)
        with start_iotedge(edge_args(anomalous_sim.url, tmp_path), log_dir=logs_dir, env=env) as edge:
            wait_for(lambda: len(hook.accepted) >= 3 and len(sink.subjects()) >= 3, 40, "notifications")
            events = httpx.get(
                edge.url + "/anomalies", params={"limit": 1000}, headers={"x-api-key": KEYS["*"]}
            ).json()["anomalies"]
            known = {e["event_id"] for e in events}
            assert {body["event"]["event_id"] for body in hook.accepted.values()} <= known
            assert hook.problems == []
            assert sink.mails[0].rcpt_tos == ["ops@example.com", "oncall@example.com"]
            assert sink.subjects()[0].startswith("[iotedge]")
            everything = _notifications(edge)
            assert everything["channels"] == ["webhook", "email"]
            rows = everything["notifications"]
            assert isinstance(rows, list)
            assert any(row["status"] == "sent" for row in rows)
            mine = _notifications(edge, "client_1")["notifications"]
            assert isinstance(mine, list)
            assert {row["client"] for row in mine} <= {"client_1"}
            assert _notifications(edge, "client_1")["pending"] is None


def test_kill_9_with_undelivered_notifications_delivers_them_after_restart(
    anomalous_sim: Proc, logs_dir: Path, tmp_path: Path
) -> None:
    """With the receiver down the outbox fills; after kill -9 and restart every message arrives."""
    port = free_port()
    env = _notify_env(f"http://127.0.0.1:{port}/hook", free_port())
    env["IOTEDGE_SMTP_HOST"] = ""  # webhook only
    args = edge_args(anomalous_sim.url, tmp_path)
    with start_iotedge(args, log_dir=logs_dir, env=env) as edge:
        wait_for(lambda: int(str(_notifications(edge)["pending"])) >= 3, 40, "undelivered notifications")
        edge.kill()
    db = tmp_path / "iotedge.sqlite3"
    pending_keys = _pending_keys(db)
    assert len(pending_keys) >= 3
    receiver: WebhookReceiver
    with webhook_receiver(SECRET, port=port) as receiver:
        with start_iotedge(args, log_dir=logs_dir, env=env):
            # Each message is delivered, or deliberately held back by noise control (a sensor
            # flapping in this fast simulator gets one "flapping" message instead): never lost.
            def settled() -> bool:
                suppressed = _suppressed_keys(db)
                return all(key in receiver.accepted or key in suppressed for key in pending_keys)

            wait_for(settled, 60, "every pending message delivered or suppressed")
        assert pending_keys & set(receiver.accepted), (pending_keys, _suppressed_keys(db))
        assert receiver.problems == []


def _suppressed_keys(db: Path) -> dict[str, str]:
    """Idempotency key -> reason of messages noise control decided not to send."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT o.idempotency_key, d.reason FROM outbox o JOIN outbox_delivery d "
            "ON d.outbox_id = o.id WHERE d.kind = 'event' AND d.status = 'suppressed' AND d.reason != ''"
        ).fetchall()
    return dict(rows)


def _pending_keys(db: Path) -> set[str]:
    """Idempotency keys of messages not yet delivered (pending, or not even triaged yet)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT DISTINCT o.idempotency_key FROM outbox o LEFT JOIN outbox_delivery d "
            "ON d.outbox_id = o.id WHERE d.outbox_id IS NULL OR d.status = 'pending'"
        ).fetchall()
    return {row[0] for row in rows}


def test_notify_test_command(tmp_path: Path) -> None:
    """`iotedge notify test` reaches a live webhook and reports a dead SMTP server as failed."""
    import subprocess
    import sys

    with webhook_receiver(SECRET) as hook:
        env = {**_notify_env(hook.url, free_port()), "PATH": "/usr/bin:/bin"}
        result = subprocess.run(
            [sys.executable, "-m", "iotedge", "notify", "test", "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert "webhook  ok" in result.stdout
    assert "email    FAILED" in result.stdout
    assert len(hook.accepted) == 1
