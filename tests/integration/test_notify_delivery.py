"""Notifications end to end on loopback: a real SMTP server, a real HTTP receiver, a crash.

Each test writes outbox rows into a real SQLite file the way the store does, then drives
``Drainer.drain_once()`` with a steered clock (or runs the real loop in a child process).
"""

import asyncio
import random
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from prometheus_client import CollectorRegistry

from iotedge.edge.metrics import EdgeMetrics
from iotedge.edge.notify import Drainer, NotifySettings, notification_rows, send_test
from tests.notifyutil import T0, FakeClock, OutboxWriter, smtp_sink, webhook_receiver
from tests.procs import free_port

pytestmark = pytest.mark.integration

HOOK_KEY = "loopback-shared-key"
MAIL_USER, MAIL_PASS = "edge", "mail-pass-for-tests"


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == MAIL_USER.encode()
        and auth_data.password == MAIL_PASS.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A server TLS context for 127.0.0.1 from a throwaway CA, and the CA file to trust."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_ctx, str(ca_file)


def _mail_settings(port: int, **kwargs: Any) -> NotifySettings:
    base: dict[str, Any] = {
        "edge_id": "edge-test",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "plain",
        "mail_from": "iotedge@edge.example.org",
        "mail_to": ("ops@example.org", "oncall@example.org"),
        "smtp_timeout_s": 10,
    }
    return NotifySettings(**{**base, **kwargs})


async def _drain(drainer: Drainer, clock: FakeClock, passes: int, step: float = 400.0) -> None:
    for _ in range(passes):
        report = await drainer.drain_once()
        assert report.error is None
        clock.advance(step)


def _run_mail(tmp_path: Path, settings: NotifySettings) -> list[tuple[int, str, str, str, str]]:
    out = OutboxWriter(tmp_path / "edge.db")
    out.add(7, "opened", at=T0)
    out.add(7, "resolved", at=T0 + 90)
    clock = FakeClock(T0 + 100)

    async def main() -> None:
        drainer = Drainer(out.path, settings, clock=clock, rng=random.Random(1))
        await _drain(drainer, clock, passes=1)
        await drainer.aclose()

    asyncio.run(main())
    return out.statuses()


def test_email_plain_delivers_subject_body_and_recipients(tmp_path: Path) -> None:
    """One opened and one resolved mail reach every recipient with readable subject and body."""
    with smtp_sink() as sink:
        statuses = _run_mail(tmp_path, _mail_settings(sink.port))
    assert [s[3] for s in statuses] == ["sent", "sent"]
    assert sink.subjects() == [
        "[iotedge] OPENED warning: device_1 temperature above 30.0",
        "[iotedge] RESOLVED warning: device_1 temperature above 30.0",
    ]
    first, second = sink.mails
    assert first.mail_from == "iotedge@edge.example.org"
    assert first.rcpt_tos == ["ops@example.org", "oncall@example.org"]
    assert first.msg["To"] == "ops@example.org, oncall@example.org"
    body = second.msg.get_content()
    assert "The anomaly has ended." in body
    assert "device_1 (temperature_sensor, client client_1)" in body
    assert "Ended:     2027-01-15T08:01:30+00:00" in body
    assert second.msg["X-Iotedge-Idempotency-Key"] == "edge-test:7:resolved"
    assert first.msg["Message-ID"] != second.msg["Message-ID"]


def test_email_starttls_with_auth(tmp_path: Path, tls: tuple[ssl.SSLContext, str]) -> None:
    """STARTTLS, certificate checked against our CA, then AUTH; the server saw both."""
    server_ctx, ca_file = tls
    with smtp_sink(tls_context=server_ctx, require_starttls=True, authenticator=_authenticator) as sink:
        settings = _mail_settings(
            sink.port,
            smtp_security="starttls",
            smtp_ca_file=ca_file,
            smtp_user=MAIL_USER,
            smtp_password=MAIL_PASS,
        )
        statuses = _run_mail(tmp_path, settings)
    assert [s[3] for s in statuses] == ["sent", "sent"]
    assert all(m.tls and m.authenticated for m in sink.mails)


def test_email_wrong_password_is_retried_not_lost(tmp_path: Path, tls: tuple[ssl.SSLContext, str]) -> None:
    """A refused login leaves the message pending with the reason, for a later retry."""
    server_ctx, ca_file = tls
    with smtp_sink(tls_context=server_ctx, require_starttls=True, authenticator=_authenticator) as sink:
        settings = _mail_settings(
            sink.port,
            smtp_security="starttls",
            smtp_ca_file=ca_file,
            smtp_user=MAIL_USER,
            smtp_password=MAIL_PASS + "-wrong",
        )
        _run_mail(tmp_path, settings)
    assert sink.mails == []
    out = OutboxWriter(tmp_path / "edge.db")
    rows = notification_rows(out.conn, None)
    assert {r.status for r in rows} == {"pending"}
    assert any(r.last_error and "AUTH failed (535)" in r.last_error for r in rows)


def test_email_implicit_tls(tmp_path: Path, tls: tuple[ssl.SSLContext, str]) -> None:
    """Implicit TLS (port-465 style) delivers too."""
    server_ctx, ca_file = tls
    with smtp_sink(ssl_context=server_ctx) as sink:
        settings = _mail_settings(sink.port, smtp_security="tls", smtp_ca_file=ca_file)
        statuses = _run_mail(tmp_path, settings)
    assert [s[3] for s in statuses] == ["sent", "sent"]
    assert all(m.tls for m in sink.mails)


def _hook_settings(url: str, **kwargs: Any) -> NotifySettings:
    base: dict[str, Any] = {
        "edge_id": "edge-test",
        "webhook_url": url,
        "webhook_secret": HOOK_KEY,
        "webhook_timeout_s": 10,
        "backoff_base_s": 5,
        "backoff_max_s": 60,
    }
    return NotifySettings(**{**base, **kwargs})


def test_webhook_retries_500_then_each_event_once(tmp_path: Path) -> None:
    """After three 500s the receiver gets every event once, signed and in the v1 schema."""
    out = OutboxWriter(tmp_path / "edge.db")
    for n in range(1, 4):
        out.add(n, "opened", at=T0, object_id=f"device_{n}")
    clock = FakeClock(T0)
    registry = CollectorRegistry()
    metrics = EdgeMetrics(registry=registry, edge_id="edge-test")

    def counted(outcome: str) -> float | None:
        return registry.get_sample_value(
            "iotedge_notifications_total", {"channel": "webhook", "outcome": outcome}
        )

    with webhook_receiver(HOOK_KEY, fail_first=3) as hook:

        async def main() -> None:
            drainer = Drainer(
                out.path, _hook_settings(hook.url), clock=clock, on_outcome=metrics.record_notification
            )
            await _drain(drainer, clock, passes=6, step=61)
            assert counted("failed") == 3  # each retried attempt
            assert counted("sent") == 3
            await drainer.aclose()

        asyncio.run(main())
    assert hook.problems == []
    assert sorted(hook.accepted) == [f"edge-test:{n}:opened" for n in (1, 2, 3)]
    assert hook.duplicates == 0
    assert hook.requests == 3 + 3  # one failing attempt per pass while down, then one each
    assert {s[3] for s in out.statuses()} == {"sent"}


def test_webhook_receiver_down_then_up(tmp_path: Path) -> None:
    """Connection refused keeps messages pending; once the receiver listens they arrive."""
    out = OutboxWriter(tmp_path / "edge.db")
    out.add(1, "opened", at=T0)
    out.add(1, "resolved", at=T0 + 5)
    port = free_port()
    clock = FakeClock(T0 + 10)
    settings = _hook_settings(f"http://127.0.0.1:{port}/hook")

    async def main() -> None:
        drainer = Drainer(out.path, settings, clock=clock)
        await _drain(drainer, clock, passes=3, step=61)
        rows = notification_rows(out.conn, None)
        assert {r.status for r in rows} == {"pending"}
        assert any(r.last_error and "ConnectError" in r.last_error for r in rows)
        with webhook_receiver(HOOK_KEY, port=port) as hook:
            await _drain(drainer, clock, passes=2, step=61)
        await drainer.aclose()
        assert hook.problems == []
        assert hook.types() == ["anomaly.opened", "anomaly.resolved"]
        assert hook.duplicates == 0

    asyncio.run(main())
    assert {s[3] for s in out.statuses()} == {"sent"}


_CHILD = """
import asyncio, sys
from iotedge.edge.notify import Drainer, NotifySettings

async def main() -> None:
    settings = NotifySettings(
        webhook_url=sys.argv[2], webhook_secret=sys.argv[3], poll_interval_s=0.05,
        webhook_timeout_s=120,
    )
    await Drainer(sys.argv[1], settings).run()

asyncio.run(main())
"""


def test_kill_9_mid_delivery_then_restart_delivers_all(tmp_path: Path) -> None:
    """A drainer killed with a request in flight marks nothing sent; a new one sends all."""
    out = OutboxWriter(tmp_path / "edge.db")
    now = time.time()
    keys = []
    for n in range(1, 4):
        out.add(n, "opened", at=now, object_id=f"device_{n}")
        keys.append(f"edge-test:{n}:opened")
    with webhook_receiver(HOOK_KEY) as hook:
        hook.hang = True
        with (tmp_path / "child.log").open("wb") as log:
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(out.path), hook.url, HOOK_KEY],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            assert hook.got_request.wait(30), (tmp_path / "child.log").read_text()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        assert child.returncode == -signal.SIGKILL
        assert {s[3] for s in out.statuses()} == {"pending"}
        hook.hang = False
        hook.release()

        async def main() -> None:
            drainer = Drainer(out.path, _hook_settings(hook.url), clock=FakeClock(now + 1))
            report = await drainer.drain_once()
            assert report.error is None and report.sent == 3
            await drainer.aclose()

        asyncio.run(main())
        assert hook.wait_idle(10)
    assert sorted(hook.accepted) == keys
    assert hook.duplicates <= 1  # the request in flight at the kill may arrive twice
    assert hook.problems == []
    assert {s[3] for s in out.statuses()} == {"sent"}


@pytest.mark.parametrize("mode", ["live", "backlog"])
def test_flapping_sensor_gives_a_bounded_number_of_messages(tmp_path: Path, mode: str) -> None:
    """100 opened/resolved changes within a minute give at most 4 messages per channel."""
    out = OutboxWriter(tmp_path / "edge.db")
    clock = FakeClock(T0)
    with smtp_sink() as sink, webhook_receiver(HOOK_KEY) as hook:
        settings = NotifySettings(
            edge_id="edge-test",
            webhook_url=hook.url,
            webhook_secret=HOOK_KEY,
            smtp_host="127.0.0.1",
            smtp_port=sink.port,
            smtp_security="plain",
            mail_to=("ops@example.org",),
        )

        async def main() -> None:
            drainer = Drainer(out.path, settings, clock=clock)
            for i in range(100):
                clock.now = T0 + i * 0.6
                out.add(i // 2 + 1, "opened" if i % 2 == 0 else "resolved", at=clock.now)
                if mode == "live":
                    assert (await drainer.drain_once()).error is None
            await drainer.drain_once()
            clock.now = T0 + 99 * 0.6 + settings.flap_window_s
            await drainer.drain_once()
            await drainer.aclose()

        asyncio.run(main())
    expected = ["anomaly.opened", "anomaly.resolved", "anomaly.flapping", "anomaly.stable"]
    assert hook.types() == expected
    assert hook.problems == [] and hook.duplicates == 0
    assert [s.split(" ")[1] for s in sink.subjects()] == [
        "OPENED",
        "RESOLVED",
        "FLAPPING",
        "STABLE",
    ]
    assert sink.subjects()[3].endswith("- resolved")
    stable = list(hook.accepted.values())[3]
    assert stable["flapping"]["state"] == "resolved" and stable["grouped"] == 93


def test_send_test_reaches_every_channel(tmp_path: Path) -> None:
    """``send_test`` reports success per channel and both receivers get a test message."""
    with smtp_sink() as sink, webhook_receiver(HOOK_KEY) as hook:
        settings = NotifySettings(
            edge_id="edge-test",
            webhook_url=hook.url,
            webhook_secret=HOOK_KEY,
            smtp_host="127.0.0.1",
            smtp_port=sink.port,
            smtp_security="plain",
            mail_to=("ops@example.org",),
        )
        results = asyncio.run(send_test(settings))
    assert {name: r.ok for name, r in results.items()} == {"webhook": True, "email": True}
    assert hook.types() == ["test"] and hook.problems == []
    assert sink.subjects() == ["[iotedge] TEST: notifications from edge edge-test work"]


def test_send_test_reports_a_dead_receiver(tmp_path: Path) -> None:
    """A closed port is reported as a failure for that channel, not raised."""
    settings = _hook_settings(f"http://127.0.0.1:{free_port()}/hook")
    results = asyncio.run(send_test(settings))
    assert results["webhook"].ok is False
    assert "ConnectError" in results["webhook"].detail
