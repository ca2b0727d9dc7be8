"""Noise control, routing and retries of the drainer, with a steered clock and fake channels.

The channels here are recorders at the delivery seam; the drainer, its SQL and its rules
are the real ones, on a real SQLite file and (the ``place`` cases) on a real PostgreSQL.
"""

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from iotedge.edge.metrics import EdgeMetrics
from iotedge.edge.notify import (
    Drainer,
    NotifySettings,
    PgOutbox,
    SqliteOutbox,
    WebhookChannel,
    backoff_delay,
    notification_rows,
    parse_routes,
)
from iotedge.edge.notify.noise import release_held
from tests.notifyutil import (
    T0,
    FakeClock,
    OutboxWriter,
    PgOutboxWriter,
    RecordingChannel,
    notification_rows_of,
    pending_count_of,
)
from tests.pgdb import migrated_database
from tests.procs import free_port

BOTH: dict[str, Any] = {
    "webhook_url": "http://127.0.0.1:9/hook",
    "webhook_secret": "s",
    "smtp_host": "127.0.0.1",
    "mail_to": ("ops@example.org",),
}


@dataclass(frozen=True)
class PgPlace:
    """A migrated PostgreSQL database (its tables are emptied by each rig)."""

    url: str


Place = Path | PgPlace


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A migrated database of this module's own."""
    with migrated_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    """Where the rig's store lives: a SQLite file or a PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path
    return PgPlace(request.getfixturevalue("pg_url"))


class Rig:
    """An outbox store, a clock, two recording channels and a drainer over them."""

    def __init__(self, place: Place, **settings: Any) -> None:
        self.clock = FakeClock()
        self.out: OutboxWriter | PgOutboxWriter
        if isinstance(place, PgPlace):
            self.out = PgOutboxWriter(place.url)
            database: Any = PgOutbox(place.url)
        else:
            self.out = OutboxWriter(place / "edge.db")
            database = self.out.path
        self.webhook = RecordingChannel("webhook")
        self.email = RecordingChannel("email")
        self.settings = NotifySettings(**{**BOTH, **settings})
        self.registry = CollectorRegistry()
        metrics = EdgeMetrics(registry=self.registry, edge_id="edge-test")
        self.drainer = Drainer(
            database,
            self.settings,
            channels={"webhook": self.webhook, "email": self.email},
            clock=self.clock,
            rng=random.Random(7),
            on_outcome=metrics.record_notification,
        )

    def counted(self, outcome: str) -> dict[str, int]:
        """``iotedge_notifications_total`` of one outcome, per channel, as exported."""
        return {
            channel: int(
                self.registry.get_sample_value(
                    "iotedge_notifications_total", {"channel": channel, "outcome": outcome}
                )
                or 0
            )
            for channel in ("webhook", "email")
        }

    async def at(self, offset: float, *rows: tuple[int, str]) -> None:
        """At ``T0 + offset``: write the given (event_id, transition) rows, then drain once."""
        self.clock.now = T0 + offset
        for event_id, transition in rows:
            self.out.add(event_id, transition, at=self.clock.now)
        report = await self.drainer.drain_once()
        assert report.error is None


def run(place: Place, scenario: Callable[[Rig], Awaitable[None]], **settings: Any) -> Rig:
    """Run ``scenario`` on a fresh rig inside one event loop."""
    rig: Rig | None = None

    async def main() -> None:
        nonlocal rig
        rig = Rig(place, **settings)
        try:
            await scenario(rig)
        finally:
            await rig.drainer.aclose()

    asyncio.run(main())
    assert rig is not None
    return rig


def test_open_then_resolve_sends_both_on_every_channel(place: Place) -> None:
    """One incident gives exactly an opened and a resolved message per channel, same keys."""

    async def scenario(rig: Rig) -> None:
        await rig.at(0, (1, "opened"))
        await rig.at(60, (1, "resolved"))

    rig = run(place, scenario)
    for channel in (rig.webhook, rig.email):
        assert channel.kinds() == ["opened", "resolved"]
        assert [n.idempotency_key for n in channel.notes] == [
            "edge-test:1:opened",
            "edge-test:1:resolved",
        ]
    assert rig.counted("sent") == {"webhook": 2, "email": 2}


def test_reopen_within_cooldown_is_grouped(place: Place) -> None:
    """A re-open that also ends within the cooldown sends nothing; the next message counts it."""

    async def scenario(rig: Rig) -> None:
        await rig.at(0, (1, "opened"))
        await rig.at(30, (1, "resolved"))
        await rig.at(100, (2, "opened"))
        await rig.at(150, (2, "resolved"))
        await rig.at(400, (3, "opened"))

    rig = run(place, scenario, cooldown_s=300)
    assert rig.webhook.kinds() == ["opened", "resolved", "opened"]
    assert rig.webhook.notes[-1].event["event_id"] == 3
    assert rig.webhook.notes[-1].grouped == 2
    reasons = {(oid, status, reason) for oid, ch, _, status, reason in rig.out.statuses()}
    assert (3, "suppressed", "cooldown") in reasons and (4, "suppressed", "cooldown") in reasons


def test_held_open_is_released_when_the_cooldown_ends(place: Place) -> None:
    """A re-open still open when the cooldown ends is sent then, and its resolve after it."""

    async def scenario(rig: Rig) -> None:
        await rig.at(0, (1, "opened"))
        await rig.at(30, (1, "resolved"))
        await rig.at(100, (2, "opened"))
        await rig.at(120, (2, "resolved"))
        await rig.at(200, (3, "opened"))
        await rig.at(299)
        assert rig.webhook.kinds() == ["opened", "resolved"]
        await rig.at(300)
        await rig.at(500, (3, "resolved"))

    rig = run(place, scenario, cooldown_s=300)
    assert rig.webhook.kinds() == ["opened", "resolved", "opened", "resolved"]
    assert [n.event["event_id"] for n in rig.email.notes] == [1, 1, 3, 3]
    # Both channels tell the same story about the folded incident 2.
    assert rig.webhook.notes[2].grouped == rig.email.notes[2].grouped == 2


def test_a_held_message_suppressed_after_its_claim_is_not_released(place: Place) -> None:
    """A held message another drainer's triage suppressed meanwhile is neither released nor sent."""

    async def scenario(rig: Rig) -> None:
        await rig.at(0, (1, "opened"))
        await rig.at(30, (1, "resolved"))
        await rig.at(100, (2, "opened"))  # held by the cooldown until 300

    run(place, scenario, cooldown_s=300)
    backend = PgOutbox(place.url) if isinstance(place, PgPlace) else SqliteOutbox(place / "edge.db")
    series = "device_1|temperature|temperature_high"
    try:
        with backend.transaction(exclusive=True) as conn:
            held = conn.execute("SELECT DISTINCT reason FROM outbox_delivery WHERE outbox_id = 3").fetchall()
            assert [r[0] for r in held] == ["held"]
            conn.execute(
                "UPDATE outbox_delivery SET status = 'suppressed', reason = 'flapping' WHERE outbox_id = 3"
            )
            assert release_held(conn, 3, series, "webhook", T0 + 300) is None
            after = conn.execute("SELECT DISTINCT reason FROM outbox_delivery WHERE outbox_id = 3").fetchall()
            assert [r[0] for r in after] == ["flapping"]
    finally:
        backend.close()


def test_flapping_series_goes_quiet_then_reports_stable(place: Place) -> None:
    """Past flap_max changes in the window: one flapping message, silence, one stable message."""

    async def scenario(rig: Rig) -> None:
        for i in range(40):  # 20 incidents, a change every 3 s
            await rig.at(3 * i, (i // 2 + 1, "opened" if i % 2 == 0 else "resolved"))
        await rig.at(3 * 40, (21, "opened"))
        assert rig.webhook.kinds() == ["opened", "resolved", "flapping"]
        await rig.at(3 * 40 + 599)
        assert rig.webhook.kinds() == ["opened", "resolved", "flapping"]
        await rig.at(3 * 40 + 600)
        await rig.at(3 * 40 + 700, (21, "resolved"))

    rig = run(place, scenario, flap_max=6, flap_window_s=600, cooldown_s=300)
    assert rig.webhook.kinds() == ["opened", "resolved", "flapping", "stable", "resolved"]
    flapping, stable = rig.webhook.notes[2], rig.webhook.notes[3]
    assert flapping.transitions == 7 and flapping.window_s == 600
    assert stable.state == "opened" and stable.grouped == 41 - 7
    assert stable.idempotency_key == "edge-test:21:opened:stable"
    assert rig.email.kinds() == rig.webhook.kinds()
    suppressed = [s for s in rig.out.statuses() if s[3] == "suppressed"]
    assert len(suppressed) == 2 * 39
    assert rig.counted("suppressed") == {"webhook": 39, "email": 39}


def test_resolved_is_dropped_when_its_opened_failed(place: Place) -> None:
    """A resolve whose opened message failed for good is suppressed, not sent alone."""

    async def scenario(rig: Rig) -> None:
        rig.webhook.fail_first, rig.webhook.permanent = 1, True
        await rig.at(0, (1, "opened"))
        await rig.at(60, (1, "resolved"))

    rig = run(place, scenario)
    assert rig.webhook.kinds() == []
    assert rig.email.kinds() == ["opened", "resolved"]
    assert (1, "webhook", "event", "failed", "") in rig.out.statuses()
    assert (2, "webhook", "event", "suppressed", "opened_not_sent") in rig.out.statuses()


def test_retries_with_backoff_until_accepted(place: Place) -> None:
    """Temporary failures are retried after a backoff; the message arrives once."""

    async def scenario(rig: Rig) -> None:
        rig.webhook.fail_first = 3
        await rig.at(0, (1, "opened"))
        for step in range(1, 10):
            await rig.at(step * 20)
        rows = notification_rows_of(rig.out, None)
        assert {(r.channel, r.status, r.attempts) for r in rows} == {
            ("webhook", "sent", 4),
            ("email", "sent", 1),
        }

    rig = run(place, scenario, backoff_base_s=1, backoff_max_s=10)
    assert rig.webhook.calls == 4 and len(rig.webhook.notes) == 1
    assert rig.counted("failed")["webhook"] == 3  # a retried attempt is a failed one


def test_resolved_waits_for_its_opened(place: Place) -> None:
    """While the opened message is retrying, the resolved one waits and keeps the order."""

    async def scenario(rig: Rig) -> None:
        rig.webhook.fail_first = 2
        await rig.at(0, (1, "opened"))
        await rig.at(1, (1, "resolved"))
        for step in range(2, 12):
            await rig.at(step * 20)

    rig = run(place, scenario, backoff_base_s=1, backoff_max_s=10)
    assert rig.webhook.kinds() == ["opened", "resolved"]


def test_gives_up_after_max_age_and_records_why(place: Place) -> None:
    """A receiver that never accepts: failed after max_age_s, with the last error kept."""

    async def scenario(rig: Rig) -> None:
        rig.webhook.fail_first = 10_000
        await rig.at(0, (1, "opened"))
        for step in range(1, 12):
            await rig.at(step * 60)

    rig = run(place, scenario, max_age_s=600, backoff_base_s=1, backoff_max_s=30)
    [row] = [r for r in notification_rows_of(rig.out, None) if r.channel == "webhook"]
    assert row.status == "failed"
    assert row.last_error is not None
    assert "gave up after max age 600s" in row.last_error
    assert "refused call" in row.last_error
    assert rig.counted("dropped")["webhook"] == 1  # given up on


def test_a_failing_channel_is_tried_once_per_pass(place: Place) -> None:
    """When a channel is down, one attempt per pass, not one per waiting message."""

    async def scenario(rig: Rig) -> None:
        rig.webhook.fail_first = 10_000
        for event_id in range(1, 6):
            rig.out.add(event_id, "opened", at=T0, object_id=f"device_{event_id}")
        await rig.at(0)

    rig = run(place, scenario)
    assert rig.webhook.calls == 1
    assert len(rig.email.notes) == 5


def test_a_down_channel_does_not_hold_back_the_others(place: Place) -> None:
    """Many messages behind a down channel: one attempt on it, every other message in the pass."""

    async def scenario(rig: Rig) -> None:
        rig.webhook.fail_first = 10_000
        for event_id in range(1, 31):
            rig.out.add(event_id, "opened", at=T0, object_id=f"device_{event_id}")
        await rig.at(0)

    rig = run(place, scenario)
    assert rig.webhook.calls == 1
    assert len(rig.email.notes) == 30
    assert len([s for s in rig.out.statuses() if s[1] == "webhook" and s[3] == "pending"]) == 30


def test_routes_pick_channels_per_client_and_severity(place: Place) -> None:
    """Critical client_1 goes to both channels, other warnings only to email, client_3 nowhere."""

    async def scenario(rig: Rig) -> None:
        rig.out.add(1, "opened", at=T0, client="client_1", severity="critical")
        rig.out.add(2, "opened", at=T0, client="client_2", object_id="device_3")
        rig.out.add(3, "opened", at=T0, client="client_3", object_id="device_5")
        await rig.at(0)

    routes = parse_routes("client_1:critical=webhook+email;client_3:*=;*:warning=email")
    rig = run(place, scenario, routes=routes)
    assert [n.event["event_id"] for n in rig.webhook.notes] == [1]
    assert [n.event["event_id"] for n in rig.email.notes] == [1, 2]


def test_rows_are_scoped_and_pending_is_counted(place: Place) -> None:
    """notification_rows filters by client set; pending_count sees untriaged and retrying rows."""

    async def scenario(rig: Rig) -> None:
        rig.out.add(1, "opened", at=T0, client="client_1")
        rig.out.add(2, "opened", at=T0, client="client_2", object_id="device_3")
        assert pending_count_of(rig.out) == 2
        rig.webhook.fail_first = 10_000
        await rig.at(0)
        assert pending_count_of(rig.out) == 2  # both webhook deliveries still due
        assert rig.drainer.pending == 2  # the drainer's own count, for the metrics

    rig = run(place, scenario)
    mine = notification_rows_of(rig.out, {"client_2"})
    assert {r.client for r in mine} == {"client_2"}
    assert {(r.channel, r.status) for r in mine} == {("webhook", "pending"), ("email", "sent")}
    assert mine[0].object_id == "device_3" and mine[0].idempotency_key == "edge-test:2:opened"
    assert notification_rows_of(rig.out, set()) == []
    assert len(notification_rows_of(rig.out, None, limit=3)) == 3


def test_drain_once_never_raises(tmp_path: Path) -> None:
    """A broken store makes a pass report an error instead of raising."""

    async def scenario(rig: Rig) -> None:
        assert isinstance(rig.out, OutboxWriter)
        rig.out.conn.execute("DROP TABLE outbox_delivery")
        report = await rig.drainer.drain_once()
        assert report.error is not None and "outbox_delivery" in report.error

    run(tmp_path, scenario)


@pytest.mark.parametrize("attempts", [1, 2, 5, 30, 200])
def test_backoff_is_full_jitter_under_the_cap(attempts: int) -> None:
    """Delays stay within [0, min(cap, base * 2^(n-1))] and actually vary."""
    rng = random.Random(attempts)
    ceiling = min(60.0, 2.0 * 2 ** (attempts - 1))
    delays = [backoff_delay(attempts, base_s=2.0, cap_s=60.0, rng=rng) for _ in range(200)]
    assert all(0 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 100


def test_outcomes_start_at_zero_for_known_channels(tmp_path: Path) -> None:
    """Delivery counters exist for every channel before anything happens, so rates start at 0."""
    rig = Rig(tmp_path)
    for outcome in ("sent", "failed", "dropped", "suppressed"):
        assert (
            rig.registry.get_sample_value(
                "iotedge_notifications_total", {"channel": "webhook", "outcome": outcome}
            )
            == 0
        )
        assert rig.counted(outcome) == {"webhook": 0, "email": 0}
    asyncio.run(rig.drainer.aclose())


def test_schema_is_created_on_a_fresh_file(tmp_path: Path) -> None:
    """The drainer creates its tables (and the contract outbox) on a new file, in WAL mode."""

    async def scenario() -> None:
        drainer = Drainer(
            tmp_path / "new.db",
            NotifySettings(),
            channels={},
            clock=FakeClock(),
        )
        report = await drainer.drain_once()
        assert report.error is None
        await drainer.aclose()

    asyncio.run(scenario())
    conn = sqlite3.connect(tmp_path / "new.db")
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"outbox", "outbox_delivery", "notify_series", "notify_cursor"} <= names
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_message_that_cannot_be_rendered_fails_alone(tmp_path: Path) -> None:
    """A payload the webhook cannot encode (NaN) fails for good without blocking the next one."""

    async def scenario() -> None:
        out = OutboxWriter(tmp_path / "edge.db")
        out.add(1, "opened", at=T0, value=float("nan"))
        out.add(2, "opened", at=T0, object_id="device_2")
        settings = NotifySettings(
            webhook_url=f"http://127.0.0.1:{free_port()}/h", webhook_secret=BOTH["webhook_secret"]
        )
        async with httpx.AsyncClient() as client:
            channel = WebhookChannel(url=settings.webhook_url, secret=settings.webhook_secret, client=client)
            drainer = Drainer(out.path, settings, channels={"webhook": channel}, clock=FakeClock())
            await drainer.drain_once()
            await drainer.aclose()
        rows = {r.event_id: r for r in notification_rows(out.conn, None)}
        assert rows[1].status == "failed"
        assert rows[1].last_error is not None and "internal error: ValueError" in rows[1].last_error
        assert rows[2].status == "pending"
        assert rows[2].last_error is not None and "ConnectError" in rows[2].last_error

    asyncio.run(scenario())


def test_run_loop_sends_after_wake(tmp_path: Path) -> None:
    """The background loop delivers a new row as soon as it is woken, then stops on cancel."""

    async def scenario() -> None:
        out = OutboxWriter(tmp_path / "edge.db")
        channel = RecordingChannel("webhook")
        settings = NotifySettings(**{**BOTH, "poll_interval_s": 3600})
        drainer = Drainer(out.path, settings, channels={"webhook": channel})
        task = asyncio.create_task(drainer.run(), name="iotedge.edge.outbox")
        out.add(1, "opened", at=time.time())
        drainer.wake()
        for _ in range(1000):  # bounded: at most ~10 s
            if channel.notes:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await drainer.aclose()
        assert channel.kinds() == ["opened"]

    asyncio.run(scenario())
