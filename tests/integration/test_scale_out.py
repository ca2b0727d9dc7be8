"""Scale-out on one real PostgreSQL: a simulator, 3 sharded collectors, 2 API replicas, a webhook.

Every component is a real process (issue 15, item 6). The collectors split the fleet into
shards held as session advisory locks: the test reads who holds what from ``pg_locks``,
counts device calls from each collector's metrics and readings from the store itself.
The tests share one module-scoped fleet and run in file order: the destructive ones (a
collector killed, the database made unreachable) come last, and each test first waits
(bounded) for the steady state it needs.
"""

import itertools
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from iotedge.edge.shards import shard_of
from iotedge.edge.store.postgres.leases import LEASE_NAMESPACE
from tests.conftest import KEYS, edge_args, require, wait_for
from tests.notifyutil import WebhookReceiver, webhook_receiver
from tests.pgdb import ADMIN_URL, scratch_database, server_problem
from tests.procs import Proc, free_port, loopback_http, start_iotedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = 60
PER_CLIENT = 5
OBJECTS = CLIENTS * PER_CLIENT
INTERVAL = 2.0
SHARDS = 64
SECRET = "scale-out-webhook-secret"
_POLLS = re.compile(r'^iotedge_upstream_requests_total\{endpoint="/iot_data/\{id\}",[^}]*\} (\S+)$', re.M)
_CYCLES = re.compile(r"^iotedge_collector_cycles_total\{[^}]*\} (\S+)$", re.M)


@dataclass
class Collector:
    """One collector process and its metrics port."""

    proc: Proc
    metrics_port: int

    def polls_and_cycles(self) -> tuple[float, float]:
        """(device-data calls, cycles) counted so far by this collector."""
        text = loopback_http().get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        return sum(map(float, _POLLS.findall(text))), sum(map(float, _CYCLES.findall(text)))

    @property
    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc.popen.poll() is None


@dataclass
class Fleet:
    """The processes, the database and the keys of the module."""

    url: str
    sim: Proc
    collectors: list[Collector]
    apis: list[Proc]
    receiver: WebhookReceiver
    keys: dict[str, str]
    key_ids: dict[str, str]
    started_at: float
    counts: list[int] = field(default_factory=list)
    steady_at: float | None = None
    """When the collectors last settled; None after a test disturbed them."""

    def live(self) -> list[Collector]:
        """The collectors not killed."""
        return [c for c in self.collectors if c.alive]

    def get(self, api: Proc, path: str, key: str, **params: Any) -> httpx.Response:
        """GET on one API replica with ``key``."""
        return loopback_http().get(api.url + path, params=params, headers={"x-api-key": key}, timeout=15)

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement on the scratch database."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=3) as conn:
            return conn.execute(statement, params).fetchall()

    def readings(self) -> int:
        """Readings stored, recorded so a test can check the count never goes down."""
        count = int(self.query("SELECT COUNT(*) FROM readings")[0][0])
        assert not self.counts or count >= self.counts[-1], (
            f"readings went down: {self.counts[-1]} -> {count}"
        )
        self.counts.append(count)
        return count

    def shard_holders(self) -> list[tuple[int, int]]:
        """(shard, backend pid) of every granted shard lock in this database."""
        rows = self.query(
            "SELECT objid::int, pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND objsubid = 2"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LEASE_NAMESPACE,),
        )
        return [(int(shard), int(pid)) for shard, pid in rows]

    def backend_of(self, collector: Collector) -> int | None:
        """The backend pid holding ``collector``'s leases (its heartbeat row names its process)."""
        rows = self.query("SELECT id, pid FROM collectors")
        mine = [int(pid) for cid, pid in rows if f"-{collector.proc.popen.pid}-" in str(cid)]
        return mine[0] if mine else None

    def fair(self) -> bool:
        """No live collector holds more than its fair share of the shards."""
        live = len(self.live())
        per_pid = [pid for _, pid in self.shard_holders()]
        return all(per_pid.count(pid) <= -(-SHARDS // live) for pid in set(per_pid))

    def covered(self) -> bool:
        """Every shard held exactly once, only by live collectors' sessions, each holding some."""
        holders = self.shard_holders()
        shards = [shard for shard, _ in holders]
        backends = {self.backend_of(c) for c in self.live()}
        return (
            sorted(shards) == list(range(SHARDS))
            and {pid for _, pid in holders} == backends
            and None not in backends
        )


def _keys_cli(url: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "iotedge", "keys", *args, "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _create_key(url: str, client: str) -> tuple[str, str]:
    """(key id, key) of a new key of ``client`` in the database."""
    out = _keys_cli(url, "create", "--client", client)
    key_id = re.search(r"^key id:\s+(\S+)$", out, re.M)
    key = re.search(r"^key:\s+(\S+)$", out, re.M)
    assert key_id is not None and key is not None, out
    return key_id.group(1), key.group(1)


def _enter_all(stack: ExitStack, starts: list[AbstractContextManager[Proc]]) -> list[Proc]:
    """Enter the process contexts at once (each waits for its process to be ready); all or none."""
    with ThreadPoolExecutor(len(starts)) as pool:
        futures = [pool.submit(start.__enter__) for start in starts]
    procs: list[Proc] = []
    failure: BaseException | None = None
    for start, future in zip(starts, futures, strict=True):
        try:
            procs.append(future.result())
        except Exception as exc:  # noqa: BLE001 (the first failure is raised once the others are stopped)
            failure = failure or exc
        else:
            stack.push(start)
    if failure is not None:
        raise failure
    return procs


@pytest.fixture(scope="module")
def fleet(logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The simulator, 3 collectors and 2 API replicas on one scratch database, with a webhook."""
    problem = server_problem()
    require(problem is None, problem or "")
    # The cloud key comes from the environment (PgKeyRing accepts env keys as the keys file did);
    # the clients' keys live in the database, where a revocation reaches every replica.
    env = {
        "IOTEDGE_API_KEYS": f"*={KEYS['*']}",
        "IOTEDGE_AUTH_FAILURES": "0",
        "IOTEDGE_RATE_LIMIT": "0",
        "IOTEDGE_WEBHOOK_SECRET": SECRET,
    }
    sim_args = ["sim", "--seed", "15", "--clients", str(CLIENTS), "--objects-per-client", str(PER_CLIENT)]
    sim_args += ["--interval", "2s", "--anomaly-rate", "0.1", "--anomaly-slot", "20s"]
    with ExitStack() as stack:
        url = stack.enter_context(scratch_database("iotedge_scale"))
        receiver = stack.enter_context(webhook_receiver(SECRET))
        keys: dict[str, str] = {}
        key_ids: dict[str, str] = {}
        keys["*"] = KEYS["*"]
        # The client's key lives in the database (this first call of the CLI migrates it).
        key_ids["client_2"], keys["client_2"] = _create_key(url, "client_2")
        sim = stack.enter_context(start_iotedge(sim_args, log_dir=logs_dir))
        started = time.time()
        ports = [free_port() for _ in range(3)]
        starts: list[AbstractContextManager[Proc]] = []
        for n, port in enumerate(ports):
            args = edge_args(sim.url, tmp_path_factory.mktemp(f"collector{n}"), "--store", url)
            args += ["--role", "collector", "--poll-interval", "2s", "--upstream-timeout", "2s"]
            args += ["--metrics-port", str(port), "--edge-id", f"collector-{n}", "--shards", str(SHARDS)]
            args += ["--webhook-url", receiver.url, "--notify-poll-interval", "1s"]
            starts.append(start_iotedge(args, log_dir=logs_dir, env=env, timeout=60))
        for n in range(2):
            args = edge_args(sim.url, tmp_path_factory.mktemp(f"api{n}"), "--store", url)
            # Replicas of one Deployment share their settings, the edge id (in every body) included.
            args += ["--role", "api", "--edge-id", "scale-api"]
            starts.append(start_iotedge(args, log_dir=logs_dir, env=env, timeout=60))
        procs = _enter_all(stack, starts)
        collectors = [Collector(proc, port) for proc, port in zip(procs, ports, strict=False)]
        yield Fleet(url, sim, collectors, procs[3:], receiver, keys, key_ids, started)


def _cycles_after(fleet: Fleet, cycles: int, timeout: float) -> None:
    """Wait (bounded) until every live collector has run ``cycles`` more polling cycles."""
    live = fleet.live()
    before = [c.polls_and_cycles()[1] for c in live]
    wait_for(
        lambda: all(c.polls_and_cycles()[1] >= b + cycles for c, b in zip(live, before, strict=True)),
        timeout,
        f"{cycles} more cycles of every collector",
    )


def _steady(fleet: Fleet, timeout: float = 40) -> float:
    """Wait (bounded) until the live collectors hold every shard, have each polled their share
    twice since (a hand-over is done) and readings are flowing; returns when that was."""
    if fleet.steady_at is not None and fleet.covered():
        return fleet.steady_at
    deadline = time.monotonic() + timeout
    while True:
        # Shares move for a few cycles after a collector comes or goes: wait for fair shares
        # that cover every shard, then for two more cycles of each collector without a move.
        wait_for(
            lambda: fleet.covered() and fleet.fair(), max(1.0, deadline - time.monotonic()), "fair shares"
        )
        holders = sorted(fleet.shard_holders())
        _cycles_after(fleet, 2, max(1.0, deadline - time.monotonic()))
        if sorted(fleet.shard_holders()) == holders:
            break
    steady_at = time.time()
    count = fleet.readings()
    wait_for(lambda: fleet.readings() > count, timeout, "new readings")
    fleet.steady_at = steady_at
    return steady_at


def _complete_slots_since(fleet: Fleet, since: float, slots: int = 3) -> tuple[float, float]:
    """The first ``slots`` whole intervals after ``since`` that every collector has polled past.

    Waits (bounded) until the last of them ended one cycle ago and every live collector ran a
    cycle after that: their readings are all stored by then.
    """
    first = (since // INTERVAL + 1) * INTERVAL
    until = first + slots * INTERVAL
    wait_for(lambda: time.time() >= until + INTERVAL, slots * INTERVAL + 10, "the slots to pass")
    _cycles_after(fleet, 1, 4 * INTERVAL + 10)
    return first, until


def _at_cycle_ends(live: list[Collector], after: list[float], timeout: float) -> list[tuple[float, float]]:
    """Each collector's (calls, cycles) read just after its cycle counter passes ``after``.

    A cycle makes its device calls first and counts itself last, then waits for the next
    tick: read right after the count, no call of the next cycle is in yet.
    """
    seen: list[tuple[float, float] | None] = [None] * len(live)

    def all_seen() -> bool:
        for n, collector in enumerate(live):
            if seen[n] is None:
                sample = collector.polls_and_cycles()
                if sample[1] > after[n]:
                    seen[n] = sample
        return all(sample is not None for sample in seen)

    wait_for(all_seen, timeout, "the end of a cycle of every collector")
    return [sample for sample in seen if sample is not None]


def _polls_per_cycle(fleet: Fleet, cycles: int = 3) -> float:
    """Device-data calls per cycle, summed over the live collectors, over ``cycles`` cycles each."""
    live = fleet.live()
    start = _at_cycle_ends(live, [c.polls_and_cycles()[1] for c in live], 4 * INTERVAL + 10)
    end = _at_cycle_ends(live, [c + cycles - 1 for _, c in start], (cycles + 2) * INTERVAL * 2 + 10)
    return sum((e[0] - s[0]) / (e[1] - s[1]) for s, e in zip(start, end, strict=True))


def _gaps(fleet: Fleet, since: float, until: float) -> dict[str, str]:
    """Objects whose readings in [since, until) are not one per interval (what is wrong with each).

    A poll stores the simulator's 2 s bucket, and a cycle that starts a moment after a bucket
    boundary, then one a moment before the next-but-one, skips a bucket with no poll missed:
    so each object must have a reading at most two intervals after the previous one (from a
    reading just before ``since``), and as many readings as intervals, give or take one.
    """
    rows = fleet.query(
        "SELECT object_id, array_agg(DISTINCT ts ORDER BY ts) FROM readings"
        " WHERE ts >= %s AND ts < %s GROUP BY object_id",
        (since - 2 * INTERVAL, until),
    )
    stamps: dict[str, list[float]] = {str(o): [float(t) for t in ts] for o, ts in rows}
    expected = round((until - since) / INTERVAL)
    wrong: dict[str, str] = {}
    for object_id in (f"device_{n}" for n in range(1, OBJECTS + 1)):
        times = [since - 2 * INTERVAL, *stamps.get(object_id, []), until]
        inside = sum(1 for t in times[1:-1] if t >= since)
        gap = max(b - a for a, b in itertools.pairwise(times))
        if gap > 2 * INTERVAL or abs(inside - expected) > 1:
            wrong[object_id] = f"{inside} readings for {expected} intervals, largest gap {gap:.0f} s"
    return wrong


def test_every_object_is_polled_once_per_interval_across_the_collectors(fleet: Fleet) -> None:
    """Disjoint shards that cover the fleet; one device call per object and cycle; no gap in the store."""
    steady_at = _steady(fleet)
    assert int(fleet.query("SELECT COUNT(*) FROM objects")[0][0]) == OBJECTS
    holders = fleet.shard_holders()
    shards = [shard for shard, _ in holders]
    assert len(shards) == len(set(shards)) == SHARDS  # disjoint and covering
    owners = {pid for _, pid in holders}
    assert len(owners) == 3, "each of the 3 collectors holds a share"
    per_owner = [sum(1 for _, pid in holders if pid == owner) for owner in owners]
    assert max(per_owner) <= -(-SHARDS // 3), per_owner  # a fair share each
    rate = _polls_per_cycle(fleet)
    print(f"\ndevice-data calls per cycle across 3 collectors: {rate:.1f} for {OBJECTS} objects")  # noqa: T201
    assert abs(rate - OBJECTS) <= OBJECTS / 20, rate
    # The store: every object has readings in each interval since the shares settled.
    assert _gaps(fleet, *_complete_slots_since(fleet, steady_at)) == {}


_NOW_FIELDS = ("age_seconds", "last_reading_at", "stale", "anomalies")
"""Fields of /processed_data about the object now, not about the window: its newest reading, that
reading's age at the time of the request, the open anomalies. Two requests a moment apart differ there."""


def test_both_api_replicas_answer_a_closed_window_alike(fleet: Fleet) -> None:
    """Same query, same answer from either replica (stateless readers of one store).

    /client_statistics over a closed window in the backfilled past: the same bytes.
    /processed_data: the same bytes but for the fields about now (``_NOW_FIELDS``), over the
    backfilled past and over a closed window of live polling.
    """
    steady_at = _steady(fleet)
    key = fleet.keys["*"]
    past = {"from": f"{fleet.started_at - 1800:.3f}", "to": f"{fleet.started_at - 120:.3f}"}
    for client in ("client_1", f"client_{CLIENTS}"):
        answers = [fleet.get(api, "/client_statistics", key, client_id=client, **past) for api in fleet.apis]
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert answers[0].content == answers[1].content, client
        assert answers[0].json()["metrics"], client
    since, until = _complete_slots_since(fleet, steady_at, 2)
    recent = {"from": f"{since:.3f}", "to": f"{until:.3f}"}
    for window in (past, recent):
        for object_id in ("device_1", f"device_{OBJECTS}"):
            answers = [
                fleet.get(api, "/processed_data", key, object_id=object_id, **window) for api in fleet.apis
            ]
            assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
            bodies = [{k: v for k, v in a.json().items() if k not in _NOW_FIELDS} for a in answers]
            assert bodies[0] == bodies[1], (object_id, window)
            assert bodies[0]["statistics"]["count"] > 0, (object_id, window)
            # The window's part of the body is the same bytes too.
            windowed = [a.content.split(b',"anomalies"')[0] for a in answers]
            assert windowed[0] == windowed[1]


def test_a_revoked_key_is_refused_by_both_replicas_within_a_second(fleet: Fleet) -> None:
    """A database key works on both replicas; revoked through the CLI, both refuse it within 1 s."""
    key = fleet.keys["client_2"]
    object_id = fleet.query("SELECT id FROM objects WHERE client = 'client_2' ORDER BY id LIMIT 1")[0][0]

    def both_answer(status: int) -> bool:
        return all(
            fleet.get(api, "/processed_data", key, object_id=object_id).status_code == status
            for api in fleet.apis
        )

    # The key works on both replicas once the object has data (the fleet may have just started).
    wait_for(lambda: both_answer(200), 30, "both replicas answering with the key")
    out = _keys_cli(fleet.url, "revoke", fleet.key_ids["client_2"])
    revoked_at = time.monotonic()
    assert f"revoked {fleet.key_ids['client_2']}" in out
    wait_for(lambda: both_answer(401), 1.0, "both replicas refusing the revoked key")
    print(f"\nrevocation refused by both replicas after {time.monotonic() - revoked_at:.2f} s")  # noqa: T201
    # The other keys still work.
    assert (
        fleet.get(fleet.apis[1], "/processed_data", fleet.keys["*"], object_id=object_id).status_code == 200
    )


def test_the_webhook_gets_each_idempotency_key_once(fleet: Fleet) -> None:
    """However many collectors drain the shared outbox, each message reaches the receiver once."""
    receiver = fleet.receiver
    wait_for(lambda: len(receiver.accepted) >= 3, 60, "webhook deliveries of the anomalies")
    # Let the messages already due be delivered (bounded), then compare. A message held by the
    # cooldown stays pending with a later due time: it is not part of this fixed set.
    pending = (
        "SELECT COUNT(*) FROM outbox_delivery"
        " WHERE status = 'pending' AND created_at < %s AND next_attempt_at <= %s"
    )
    cutoff = time.time()
    wait_for(lambda: int(fleet.query(pending, (cutoff, cutoff))[0][0]) == 0, 30, "the due outbox drained")
    # Marked sent after the receiver answered: every key sent so far has been received.
    sent = {
        str(key) if kind == "event" else f"{key}:{kind}"
        for key, kind in fleet.query(
            "SELECT o.idempotency_key, d.kind FROM outbox_delivery d JOIN outbox o ON o.id = d.outbox_id"
            " WHERE d.channel = 'webhook' AND d.status = 'sent'"
        )
    }
    assert receiver.wait_idle(10)
    keys = list(receiver.received)
    print(f"\nwebhook: {len(keys)} deliveries, {receiver.duplicates} duplicates")  # noqa: T201
    assert receiver.duplicates == 0
    assert len(keys) == len(set(keys))
    assert receiver.problems == []
    assert sent, "no webhook delivery recorded as sent"
    assert sent <= set(keys)
    # A flapping or stable note's key is its event's key and the kind.
    stored = {str(row[0]) for row in fleet.query("SELECT idempotency_key FROM outbox")}
    assert {":".join(key.split(":")[:3]) for key in keys} <= stored


def _no_duplicates(fleet: Fleet) -> tuple[int, int]:
    row = fleet.query("SELECT COUNT(*), COUNT(DISTINCT (object_id, metric, ts)) FROM readings")[0]
    return int(row[0]), int(row[1])


def test_a_killed_collectors_shards_are_taken_within_two_intervals(fleet: Fleet) -> None:
    """kill -9 one collector: the others hold its shards within two intervals and poll its objects."""
    _steady(fleet)
    victim = fleet.live()[0]
    backend = fleet.backend_of(victim)
    assert backend is not None
    its_shards = {shard for shard, pid in fleet.shard_holders() if pid == backend}
    assert its_shards
    its_objects = [
        str(object_id)
        for object_id, client in fleet.query("SELECT id, client FROM objects")
        if shard_of(str(client), SHARDS) in its_shards
    ]
    assert its_objects
    before = fleet.readings()
    fleet.steady_at = None
    victim.proc.kill()
    killed_at, killed_wall = time.monotonic(), time.time()
    wait_for(fleet.covered, 4 * INTERVAL + 10, "the survivors holding every shard")
    failover = time.monotonic() - killed_at
    print(f"\nfailover: kill -9 to every shard held by the survivors in {failover:.2f} s")  # noqa: T201
    assert failover <= 2 * INTERVAL, f"failover took {failover:.2f} s"

    def resumed() -> bool:
        fleet.readings()  # checks the count never goes down
        rows = fleet.query(
            "SELECT COUNT(DISTINCT object_id) FROM readings WHERE ts > %s AND object_id = ANY(%s)",
            (killed_wall + INTERVAL, its_objects),
        )
        return int(rows[0][0]) == len(its_objects)

    wait_for(resumed, 6 * INTERVAL + 10, "readings of the killed collector's objects")
    assert fleet.readings() > before
    total, distinct = _no_duplicates(fleet)
    print(f"\nduplicate readings: {total - distinct}")  # noqa: T201
    assert total == distinct
    # Two collectors now, still one device call per object and cycle, and no gap once settled.
    steady_at = _steady(fleet)
    rate = _polls_per_cycle(fleet, cycles=2)
    print(f"\ndevice-data calls per cycle across 2 collectors: {rate:.1f} for {OBJECTS} objects")  # noqa: T201
    assert abs(rate - OBJECTS) <= OBJECTS / 20, rate
    assert _gaps(fleet, *_complete_slots_since(fleet, steady_at, 2)) == {}


def _block(url: str, allow: bool) -> None:
    """Refuse (or allow again) connections to the database; refusing also ends its sessions."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(name), sql.SQL("true" if allow else "false")
            )
        )
        if not allow:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )


def test_postgresql_down_then_back(fleet: Fleet) -> None:
    """Database unreachable: both replicas answer 503 JSON with Retry-After; back: the collectors
    store again and the readings count never went down."""
    _steady(fleet)
    before = fleet.readings()
    key = fleet.keys["*"]
    fleet.steady_at = None
    _block(fleet.url, allow=False)
    try:
        for api in fleet.apis:
            wait_for(
                lambda: fleet.get(api, "/processed_data", key, object_id="device_1").status_code == 503,  # noqa: B023
                30,
                "503 while the database is away",
            )
            answer = fleet.get(api, "/processed_data", key, object_id="device_1")
            assert answer.headers["content-type"] == "application/json"
            assert int(answer.headers["retry-after"]) > 0
            assert answer.json()["error"] == "Store unavailable"
    finally:
        _block(fleet.url, allow=True)
    recovered_from = time.monotonic()
    wait_for(lambda: fleet.readings() > before, 40, "readings stored again")
    wait_for(fleet.covered, 40, "every shard held again")
    back = time.monotonic() - recovered_from
    print(f"\ncollectors storing again {back:.1f} s after the database came back")  # noqa: T201
    for api in fleet.apis:
        wait_for(
            lambda: fleet.get(api, "/processed_data", key, object_id="device_1").status_code == 200,  # noqa: B023
            40,
            "the API answering again",
        )
    total, distinct = _no_duplicates(fleet)
    assert total == distinct
    assert fleet.counts == sorted(fleet.counts)
