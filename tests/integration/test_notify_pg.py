"""Several notification drainers on one PostgreSQL database, with a real loopback webhook receiver.

Each drainer has its own connection and its own database thread, as drainers in separate
collector replicas do; what they share is the database, where claims decide who sends.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator

import psycopg
import pytest

from iotedge.edge.notify import Drainer, NotifySettings, PgOutbox
from tests.notifyutil import T0, FakeClock, PgOutboxWriter, webhook_receiver
from tests.pgdb import migrated_database

HOOK_KEY = "loopback-shared-key"
logger = logging.getLogger(__name__)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A migrated database of this test's own."""
    with migrated_database() as url:
        yield url


def _settings(url: str, **kwargs: float) -> NotifySettings:
    return NotifySettings(
        edge_id="edge-test", webhook_url=url, webhook_secret=HOOK_KEY, webhook_timeout_s=10, **kwargs
    )


def test_three_drainers_deliver_each_message_exactly_once(pg_url: str) -> None:
    """300 messages, 3 drainers racing on one database: every key arrives once, all shared out."""
    count = 300
    out = PgOutboxWriter(pg_url)
    now = time.time()
    for n in range(1, count + 1):
        out.add(n, "opened", at=now, object_id=f"device_{n}", rule=f"rule_{n}")
    sent: Counter[int] = Counter()

    with webhook_receiver(HOOK_KEY) as hook:

        async def main() -> float:
            settings = _settings(hook.url, poll_interval_s=0.05, batch_size=50)

            def tally(i: int) -> Callable[[str, str, int], None]:
                def record(_channel: str, outcome: str, k: int) -> None:
                    if outcome == "sent":
                        sent[i] += k

                return record

            drainers = [
                Drainer(PgOutbox(pg_url, name=f"drainer-{i}"), settings, on_outcome=tally(i))
                for i in range(3)
            ]
            started = time.monotonic()
            tasks = [asyncio.create_task(d.run()) for d in drainers]
            try:
                async with asyncio.timeout(60):
                    while len(hook.accepted) < count:  # noqa: ASYNC110 (the receiver is a thread)
                        await asyncio.sleep(0.02)
                elapsed = time.monotonic() - started
                # A little longer: a duplicate, if any, would show up now.
                await asyncio.sleep(0.5)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                for d in drainers:
                    await d.aclose()
            return elapsed

        elapsed = asyncio.run(main())
        assert hook.wait_idle(10)
    logger.warning(
        "3 drainers on PostgreSQL: %s messages in %.2fs (%.0f/s), per drainer %s",
        count,
        elapsed,
        count / elapsed,
        dict(sent),
    )
    assert hook.problems == []
    assert hook.duplicates == 0
    assert sorted(hook.received) == sorted(f"edge-test:{n}:opened" for n in range(1, count + 1))
    assert sum(sent.values()) == count
    assert len(sent) == 3, dict(sent)  # the work was shared, not done by one
    assert {s[3] for s in out.statuses()} == {"sent"}
    assert out.pending() == 0


def test_a_drainer_killed_mid_claim_leaves_its_claims_due_after_the_lease(pg_url: str) -> None:
    """Claims of a drainer whose connection died are sent by another once the lease runs out."""
    out = PgOutboxWriter(pg_url)
    for n in range(1, 6):
        out.add(n, "opened", at=T0, object_id=f"device_{n}", rule=f"rule_{n}")
    clock = FakeClock(T0)

    with webhook_receiver(HOOK_KEY) as hook:

        async def main() -> None:
            settings = _settings(hook.url)
            hook.hang = True  # the first request hangs: the victim is mid-send with 5 claims
            victim = Drainer(PgOutbox(pg_url, name="victim", lease_s=60), settings, clock=clock)
            task = asyncio.create_task(victim.drain_once())
            assert await asyncio.to_thread(hook.got_request.wait, 10)
            with psycopg.connect(pg_url, autocommit=True) as conn:
                claims = conn.execute(
                    "SELECT COUNT(*) FROM outbox_delivery WHERE claimed_by = 'victim' AND claim_until = %s",
                    (T0 + 60,),
                ).fetchone()
                assert claims is not None and claims[0] == 5
                backend = victim.backend
                assert isinstance(backend, PgOutbox) and backend._conn is not None
                conn.execute("SELECT pg_terminate_backend(%s)", (backend._conn.info.backend_pid,))
            task.cancel()  # the process dies with its connection
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await victim.aclose()
            hook.hang = False

            heir = Drainer(PgOutbox(pg_url, name="heir", lease_s=60), settings, clock=clock)
            clock.advance(30)  # within the lease: the claims are still the victim's
            report = await heir.drain_once()
            assert report.error is None and report.sent == 0
            assert len(hook.accepted) == 0
            clock.advance(31)  # the lease ran out
            report = await heir.drain_once()
            assert report.error is None and report.sent == 5
            assert heir.pending == 0
            await heir.aclose()

        asyncio.run(main())
        hook.release()  # the victim's hung request completes: its message arrives twice
        assert hook.wait_idle(10)
    assert hook.problems == []
    assert sorted(hook.accepted) == [f"edge-test:{n}:opened" for n in range(1, 6)]
    # At least once across the crash, with the same idempotency key: only the in-flight one twice.
    assert hook.duplicates == 1
    assert Counter(hook.received).most_common(1) == [("edge-test:1:opened", 2)]
    assert {s[3] for s in out.statuses()} == {"sent"}


def test_a_pass_fails_while_postgresql_is_away_and_the_next_one_reconnects(pg_url: str) -> None:
    """A dropped connection fails one pass (reported, not raised); the next pass delivers."""
    out = PgOutboxWriter(pg_url)
    clock = FakeClock(T0)
    with webhook_receiver(HOOK_KEY) as hook:

        async def main() -> None:
            drainer = Drainer(PgOutbox(pg_url), _settings(hook.url), clock=clock)
            report = await drainer.drain_once()  # connects; nothing to send yet
            assert report.error is None and report.sent == 0
            out.add(1, "opened", at=T0)
            backend = drainer.backend
            assert isinstance(backend, PgOutbox) and backend._conn is not None
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (backend._conn.info.backend_pid,))
            report = await drainer.drain_once()
            assert report.error is not None and report.sent == 0
            report = await drainer.drain_once()
            assert report.error is None and report.sent == 1
            await drainer.aclose()

        asyncio.run(main())
    assert sorted(hook.accepted) == ["edge-test:1:opened"]
