"""Several edge processes on one real PostgreSQL scratch database: keys, shard leases, one notifier.

Each test starts its own simulator and edges as processes (``--store postgresql://...``), as
the ``scale`` deployments run them.
"""

import contextlib
import logging
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import KEYS, edge_args, edge_env, require, wait_for
from tests.notifyutil import webhook_receiver
from tests.pgdb import scratch_database, server_problem
from tests.procs import Proc, free_port, loopback_http, start_iotedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_log = logging.getLogger(__name__)

_SIM = ["sim", "--seed", "11", "--interval", "1", "--clients", "6", "--anomaly-rate", "0"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A scratch database of its own for each test."""
    problem = server_problem()
    require(problem is None, problem or "")
    with scratch_database("iotedge_scale") as url:
        yield url


def _iotedge(*args: str) -> str:
    """Run ``python -m iotedge ARGS`` (no IOTEDGE_* from the environment); its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "iotedge", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _status(edge: Proc, key: str) -> int:
    response = loopback_http().get(
        edge.url + "/processed_data", params={"object_id": "device_1"}, headers={"x-api-key": key}, timeout=10
    )
    return response.status_code


def test_a_key_lives_in_postgresql_and_its_revocation_reaches_every_api_replica(
    pg_url: str, tmp_path: Path, logs_dir: Path
) -> None:
    """Two --role api: a key from `keys create --store` works on both; revoked, refused within 1 s."""
    keys_file = tmp_path / "keys.json"
    keys_file.write_text("not a keys file: the PostgreSQL mode never reads it")
    with start_iotedge(_SIM, log_dir=logs_dir) as sim:
        collector_args = edge_args(sim.url, tmp_path / "c", "--store", pg_url, "--role", "collector")
        with start_iotedge(collector_args, log_dir=logs_dir, env=edge_env()) as collector:
            wait_for(
                lambda: loopback_http().get(collector.url + "/readyz", timeout=5).status_code == 200,
                30,
                "collector ready",
            )
            api = [
                edge_args(
                    sim.url,
                    tmp_path / f"api{n}",
                    "--store",
                    pg_url,
                    "--role",
                    "api",
                    "--keys-file",
                    str(keys_file),
                )
                for n in (1, 2)
            ]
            with (
                start_iotedge(api[0], log_dir=logs_dir, env=edge_env()) as one,
                start_iotedge(api[1], log_dir=logs_dir, env=edge_env()) as two,
            ):
                created = _iotedge("keys", "create", "--client", "client_1", "--store", pg_url)
                key_id = re.search(r"^key id:\s+(\S+)$", created, re.MULTILINE)
                key = re.search(r"^key:\s+(\S+)$", created, re.MULTILINE)
                assert key_id is not None and key is not None, created
                for edge in (one, two):
                    wait_for(lambda: _status(edge, key.group(1)) == 200, 5, "the new key accepted")  # noqa: B023
                    assert "keys live in the database" in edge.log()
                _iotedge("keys", "revoke", key_id.group(1), "--store", pg_url)
                revoked_at = time.monotonic()
                wait_for(
                    lambda: _status(two, key.group(1)) == 401, 1.0, "the revocation on the other replica"
                )
                took = time.monotonic() - revoked_at
                assert _status(one, key.group(1)) == 401
                _log.info("revocation reached the other replica in %.3f s", took)
                assert _status(two, edge_env()["IOTEDGE_API_KEYS"].split(",")[0].split("=", 1)[1]) == 200


_SHARDS = 64
_INTERVAL_S = 1.0


def _owned(collector: Proc) -> set[int] | None:
    """The shards ``collector`` holds (its /readyz body), None when it does not answer."""
    try:
        body = loopback_http().get(collector.url + "/readyz", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    return set(body["checks"]["shards"]["owned"])


def _gauge(metrics_port: int, name: str) -> float:
    text = loopback_http().get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} not exported"
    return float(found.group(1))


def _cycles(collector: Proc) -> int:
    body = loopback_http().get(collector.url + "/readyz", timeout=2).json()
    return int(body["checks"]["started"]["cycles"])


def _shared_fairly(collectors: list[Proc]) -> bool:
    """Every shard held by exactly one of ``collectors``, each holding its fair share at most."""
    owned = [_owned(c) for c in collectors]
    fair = -(-_SHARDS // len(collectors))
    if any(shards is None or not 1 <= len(shards) <= fair for shards in owned):
        return False
    union = set().union(*(s for s in owned if s is not None))
    return union == set(range(_SHARDS)) and sum(len(s or ()) for s in owned) == _SHARDS


def _open_duplicates(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM anomalies WHERE ended_at IS NULL"
            " GROUP BY object_id, metric, rule HAVING COUNT(*) > 1) d"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_three_collectors_share_the_shards_and_two_take_over_a_killed_one(
    pg_url: str, tmp_path: Path, logs_dir: Path
) -> None:
    """3 collectors cover the shards once each; kill -9 one: the other two cover all within two intervals."""
    sim_args = ["sim", "--seed", "7", "--interval", "1", "--clients", "30", "--anomaly-rate", "0.6"]
    with (
        start_iotedge([*sim_args, "--anomaly-slot", "5"], log_dir=logs_dir) as sim,
        contextlib.ExitStack() as stack,
    ):
        metrics_ports = [free_port() for _ in range(3)]
        collectors = [
            stack.enter_context(
                start_iotedge(
                    [
                        *edge_args(sim.url, tmp_path / f"c{n}", "--store", pg_url, "--role", "collector"),
                        "--shards",
                        str(_SHARDS),
                        "--metrics-port",
                        str(metrics_ports[n]),
                    ],
                    log_dir=logs_dir,
                    env=edge_env(),
                )
            )
            for n in range(3)
        ]
        wait_for(lambda: _shared_fairly(collectors), 30, "3 collectors cover every shard once")
        victim, survivors = collectors[0], collectors[1:]
        victim.kill()
        killed_at = time.monotonic()
        wait_for(lambda: _shared_fairly(survivors), 10, "2 collectors cover every shard once")
        took = time.monotonic() - killed_at
        _log.info("failover: every shard held again %.2f s after kill -9", took)
        assert took <= 2 * _INTERVAL_S + 0.5, f"failover took {took:.2f} s"
        # The survivors resumed the killed one's open events: none opened twice.
        cycles = {c.url: _cycles(c) for c in survivors}
        wait_for(lambda: all(_cycles(c) >= cycles[c.url] + 3 for c in survivors), 15, "3 more cycles")
        assert _open_duplicates(pg_url) == 0
        # The same picture in the survivors' metrics.
        assert sum(_gauge(port, "iotedge_collector_shards_owned") for port in metrics_ports[1:]) == _SHARDS
        assert {_gauge(port, "iotedge_collector_live") for port in metrics_ports[1:]} == {2.0}


_HOOK_SECRET = "scale-test-webhook-secret-0123456789"


def test_two_collectors_deliver_each_notification_once(pg_url: str, tmp_path: Path, logs_dir: Path) -> None:
    """2 collectors drain one PostgreSQL outbox: every idempotency key reaches the webhook exactly once."""
    sim_args = ["sim", "--seed", "5", "--interval", "1", "--clients", "8", "--anomaly-rate", "0.8"]
    with (
        start_iotedge([*sim_args, "--anomaly-slot", "5"], log_dir=logs_dir) as sim,
        webhook_receiver(_HOOK_SECRET) as hook,
        contextlib.ExitStack() as stack,
    ):
        env = {**edge_env(), "IOTEDGE_WEBHOOK_SECRET": _HOOK_SECRET, "IOTEDGE_NOTIFY_COOLDOWN": "0s"}
        collectors = [
            stack.enter_context(
                start_iotedge(
                    [
                        *edge_args(sim.url, tmp_path / f"c{n}", "--store", pg_url, "--role", "collector"),
                        "--webhook-url",
                        hook.url,
                    ],
                    log_dir=logs_dir,
                    env=env,
                )
            )
            for n in range(2)
        ]
        api_args = edge_args(sim.url, tmp_path / "api", "--store", pg_url, "--role", "api")
        api = stack.enter_context(start_iotedge(api_args, log_dir=logs_dir, env=env))
        wait_for(lambda: len(hook.accepted) >= 20, 60, "20 notifications")
        for collector in collectors:
            assert collector.stop(signal.SIGINT) == 0, collector.log()
            assert "not available with a PostgreSQL store" not in collector.log()
            assert "notification drainer started" in collector.log()
        assert hook.wait_idle(10)
        _log.info("webhook: %d messages, %d duplicates", len(hook.received), hook.duplicates)
        assert hook.problems == []
        assert hook.duplicates == 0
        assert len(hook.received) == len(set(hook.received))
        body = (
            loopback_http()
            .get(
                api.url + "/notifications",
                params={"limit": 1000},
                headers={"x-api-key": KEYS["*"]},
                timeout=10,
            )
            .json()
        )
        sent = {row["idempotency_key"] for row in body["notifications"] if row["status"] == "sent"}
        assert sent == set(hook.accepted)
        assert isinstance(body["pending"], int)
