"""Collectors' shard leases on a real PostgreSQL: fair shares, disjoint cover, failover.

Several :class:`PgShardLeases` run in one process, each on its own connection (its own
session, so its own advisory locks), as separate collector processes would.
"""

import asyncio
import contextlib
import math
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from iotedge.edge.shards import shard_of
from iotedge.edge.store.postgres.leases import LEASE_NAMESPACE, PgShardLeases, register_shard_metrics
from tests.pgdb import migrated_database

SHARDS = 64
CLIENTS = [f"client_{n}" for n in range(500)]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A migrated database of this test's own."""
    with migrated_database() as url:
        yield url


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run one scenario in its own event loop."""
    asyncio.run(scenario())


async def round_of(leases: Sequence[PgShardLeases]) -> None:
    """One poll interval: every collector refreshes once, in turn."""
    for lease in leases:
        await lease.refresh()


def converged(leases: Sequence[PgShardLeases]) -> bool:
    """Disjoint shares that cover every shard, none above the fair share."""
    owned = [lease.owned for lease in leases]
    union = frozenset().union(*owned)
    fair = math.ceil(SHARDS / len(leases))
    return (
        sum(len(o) for o in owned) == SHARDS
        and union == frozenset(range(SHARDS))
        and all(len(o) <= fair for o in owned)
    )


def owners_per_client(leases: Sequence[PgShardLeases]) -> set[int]:
    """How many collectors own each client (a set of the distinct counts)."""
    return {sum(lease.owns(client) for lease in leases) for client in CLIENTS}


def make(
    url: str,
    count: int,
    *,
    interval_s: float = 1.0,
    name: str = "collector",
    refresh_timeout_s: float | None = None,
) -> list[PgShardLeases]:
    """``count`` collectors on one database (``name``-0, ``name``-1 ...), with a one-second interval."""
    return [
        PgShardLeases(
            url, interval_s=interval_s, shards=SHARDS, name=f"{name}-{n}", refresh_timeout_s=refresh_timeout_s
        )
        for n in range(count)
    ]


@contextlib.asynccontextmanager
async def running(leases: Sequence[PgShardLeases], *, together: bool = False) -> AsyncIterator[None]:
    """``leases`` started one after the other (all at once with ``together``); every one closed at the end."""
    try:
        if together:
            await asyncio.gather(*(lease.start() for lease in leases))
        else:
            for lease in leases:
                await lease.start()
        yield
    finally:
        for lease in leases:
            await lease.close()


def wait_gone(url: str, pid: int, timeout: float = 10.0) -> None:
    """Wait (bounded) until the server has ended backend ``pid``."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} still there after {timeout}s")


def test_one_collector_owns_every_shard(pg_url: str) -> None:
    """Alone, a collector takes all shards at start and polls every client."""

    async def scenario() -> None:
        (lease,) = make(pg_url, 1)
        assert not lease.owns("client_1")  # nothing before start
        async with running([lease]):
            assert lease.owned == frozenset(range(SHARDS))
            assert lease.live == 1
            assert all(lease.owns(c) for c in CLIENTS)
            await lease.refresh()
            assert lease.owned == frozenset(range(SHARDS))

    run(scenario)


def test_collectors_started_together_take_fair_shares_at_start(pg_url: str) -> None:
    """Started within the settle time, collectors count each other before taking shards.

    Without it the first one up took every shard and kept them through its first cycle.
    """

    async def scenario() -> None:
        # A 5 s interval settles for 5 s (room for a slow connection on a loaded machine), well
        # inside the 15 s after which a silent heartbeat counts as dead.
        leases = make(pg_url, 3, interval_s=5.0, name="with")
        async with running(leases, together=True):
            assert converged(leases), [len(lease.owned) for lease in leases]
            assert owners_per_client(leases) == {1}

    run(scenario)


def test_three_collectors_converge_to_disjoint_fair_shares(pg_url: str) -> None:
    """Three collectors converge within three rounds and stay converged; one owner per client."""

    async def scenario() -> None:
        leases = make(pg_url, 3)
        async with running(leases):
            rounds = 0
            while not converged(leases):
                rounds += 1
                assert rounds <= 3, [len(lease.owned) for lease in leases]
                await round_of(leases)
            assert sorted(len(lease.owned) for lease in leases) == [20, 22, 22]
            assert all(lease.live == 3 for lease in leases)
            for _ in range(3):  # stable: more rounds change nothing
                await round_of(leases)
                assert converged(leases)
                assert owners_per_client(leases) == {1}
            for client in CLIENTS[:50]:
                (owner,) = [lease for lease in leases if lease.owns(client)]
                assert shard_of(client, SHARDS) in owner.owned

    run(scenario)


def test_a_killed_collector_s_shards_are_taken_within_two_rounds(pg_url: str) -> None:
    """Terminating one collector's backend frees its locks; the other two cover every shard."""

    async def scenario() -> None:
        leases = make(pg_url, 3)
        async with running(leases):
            for _ in range(3):
                await round_of(leases)
            assert converged(leases)
            victim, survivors = leases[1], [leases[0], leases[2]]
            assert victim._conn is not None
            pid = victim._conn.info.backend_pid
            with psycopg.connect(pg_url, autocommit=True) as admin:
                row = admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
                assert row is not None and row[0] is True
            wait_gone(pg_url, pid)
            rounds = 0
            while rounds < 2 and not converged(survivors):
                await round_of(survivors)
                rounds += 1
            assert converged(survivors), [len(lease.owned) for lease in survivors]
            assert all(lease.live == 2 for lease in survivors)
            assert owners_per_client(survivors) == {1}
            # The victim finds its connection gone: it owns nothing, then rejoins as a newcomer.
            await victim.refresh()
            for _ in range(3):
                await round_of(leases)
            assert converged(leases)
            assert owners_per_client(leases) == {1}

    run(scenario)


def test_a_collector_that_loses_its_connection_owns_nothing_then_reconnects(pg_url: str) -> None:
    """A broken session owns nothing at once; the next refresh reconnects and takes shards back."""

    async def scenario() -> None:
        (lease,) = make(pg_url, 1)
        async with running([lease]):
            assert lease._conn is not None
            await lease._conn.close()  # as a dropped network connection leaves it
            assert not any(lease.owns(c) for c in CLIENTS)
            await lease.refresh()
            assert lease.owned == frozenset(range(SHARDS))
            assert lease.reconnects == 2

    run(scenario)


def test_close_gives_shards_back_and_removes_the_heartbeat(pg_url: str) -> None:
    """A collector that stops cleanly frees its shards for the next refresh of the others."""

    async def scenario() -> None:
        first, second = make(pg_url, 2)
        async with running([first, second]):
            await round_of([first, second])
            assert converged([first, second])
            await second.close()
            await first.refresh()
            assert first.owned == frozenset(range(SHARDS))
            assert first.live == 1
            with psycopg.connect(pg_url, autocommit=True) as conn:
                ids = [r[0] for r in conn.execute("SELECT id FROM collectors").fetchall()]
            assert ids == ["collector-0"]

    run(scenario)


def test_stale_heartbeats_are_deleted_and_not_counted(pg_url: str) -> None:
    """A row without a live session (a crashed collector's) is dropped at the next refresh."""

    async def scenario() -> None:
        (lease,) = make(pg_url, 1)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO collectors (id, pid, backend_start, started_at, heartbeat_at)"
                " VALUES ('ghost', 999999, now(), 0, extract(epoch FROM now()))"
            )
        async with running([lease]):
            assert lease.live == 1
            assert lease.owned == frozenset(range(SHARDS))
            with psycopg.connect(pg_url, autocommit=True) as conn:
                row = conn.execute("SELECT COUNT(*) FROM collectors WHERE id = 'ghost'").fetchone()
            assert row is not None and row[0] == 0

    run(scenario)


def test_metrics_show_owned_shards_and_live_collectors(pg_url: str) -> None:
    """The gauges follow the leases."""
    from prometheus_client import CollectorRegistry

    async def scenario() -> None:
        (lease,) = make(pg_url, 1)
        registry = CollectorRegistry()
        register_shard_metrics(lease, registry)
        assert registry.get_sample_value("iotedge_collector_shards_owned") == 0
        async with running([lease]):
            assert registry.get_sample_value("iotedge_collector_shards_owned") == SHARDS
            assert registry.get_sample_value("iotedge_collector_live") == 1
            assert lease.status()["owned_count"] == SHARDS

    run(scenario)


_CHILD = """
import asyncio, sys
from iotedge.edge.store.postgres.leases import PgShardLeases

async def main() -> None:
    lease = PgShardLeases(sys.argv[1], interval_s=1.0, shards=int(sys.argv[2]), name="child")
    while True:
        await lease.refresh()
        print(len(lease.owned), flush=True)
        await asyncio.sleep(0.1)

asyncio.run(main())
"""


def _held_by_others(url: str, mine: Sequence[PgShardLeases]) -> int:
    """Shard locks held by sessions other than ``mine`` (the child's)."""
    pids = [lease._conn.info.backend_pid for lease in mine if lease._conn is not None]
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s"
            " AND objsubid = 2 AND NOT (pid = ANY(%s))"
            # this database only: other tests' collectors may hold the same keys elsewhere
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LEASE_NAMESPACE, pids),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_kill_9_of_a_collector_process_frees_its_shards_for_the_others(pg_url: str, tmp_path: Path) -> None:
    """A collector process killed with SIGKILL: its session ends, the two others cover every shard."""
    log_path = tmp_path / "child.log"
    with log_path.open("wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, pg_url, str(SHARDS)], stdout=log, stderr=subprocess.STDOUT
        )
    try:

        async def scenario() -> None:
            leases = make(pg_url, 2)
            async with running(leases):
                # Converge with the child: the three shares cover every shard, once each.
                async with asyncio.timeout(30):
                    while True:
                        await round_of(leases)
                        ours = sum(len(lease.owned) for lease in leases)
                        live = all(lease.live == 3 for lease in leases)
                        if live and ours < SHARDS and ours + _held_by_others(pg_url, leases) == SHARDS:
                            break
                        await asyncio.sleep(0.1)
                assert all(lease.live == 3 for lease in leases)
                assert len(leases[0].owned & leases[1].owned) == 0
                child.send_signal(signal.SIGKILL)
                child.wait(10)
                async with asyncio.timeout(10):  # the server notices the dropped connection
                    while _held_by_others(pg_url, leases) > 0:  # noqa: ASYNC110 (server state, no event)
                        await asyncio.sleep(0.02)
                for _ in range(2):
                    await round_of(leases)
                assert converged(leases), [len(lease.owned) for lease in leases]
                assert owners_per_client(leases) == {1}

        run(scenario)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == -signal.SIGKILL, log_path.read_text()


def test_a_refresh_the_server_does_not_answer_gives_up_and_owns_nothing(pg_url: str) -> None:
    """A refresh stuck behind a lock gives up after its timeout, owning nothing, then recovers."""

    async def scenario() -> None:
        (lease,) = make(pg_url, 1, name="stuck", refresh_timeout_s=0.5)
        async with running([lease]):
            assert lease.owned == frozenset(range(SHARDS))
            with psycopg.connect(pg_url) as blocker:
                blocker.execute("LOCK TABLE collectors IN ACCESS EXCLUSIVE MODE")
                started = time.monotonic()
                await lease.refresh()
                assert time.monotonic() - started < 5
                assert lease.owned == frozenset()
                assert not lease.owns("client_1")
                blocker.rollback()
            await lease.refresh()
            assert lease.owned == frozenset(range(SHARDS))

    run(scenario)
