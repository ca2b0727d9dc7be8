"""Real edges on a real PostgreSQL scratch database: same answers as SQLite, outages, roles.

Each test starts its own simulator and edges (``--store postgresql://...``) as processes; the
database is made unreachable with ``ALLOW_CONNECTIONS false`` and its sessions ended, as a
server going away would do to the edge's pool.
"""

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.conftest import KEYS, edge_args, edge_env, require, wait_for, wait_for_answer
from tests.pgdb import ADMIN_URL, scratch_database, server_problem
from tests.procs import Proc, free_port, loopback_http, start_iotedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_SIM = ["sim", "--seed", "11", "--interval", "1", "--clients", "2", "--anomaly-rate", "0"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A scratch database of its own for each test."""
    problem = server_problem()
    require(problem is None, problem or "")
    with scratch_database("iotedge_edge") as url:
        yield url


def _get(edge: Proc, path: str, **params: Any) -> httpx.Response:
    return loopback_http().get(edge.url + path, params=params, headers={"x-api-key": KEYS["*"]}, timeout=15)


def _stored(url: str, since: float = float("-inf"), until: float = float("inf")) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM readings WHERE ts >= %s AND ts < %s", (since, until)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _gauge(metrics_port: int, name: str) -> float:
    text = loopback_http().get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} not exported"
    return float(found.group(1))


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    """What two edges holding the same readings must answer alike (not ages, not the newest reading)."""
    return {
        key: value for key, value in body.items() if key not in ("age_seconds", "stale", "last_reading_at")
    }


def test_a_postgresql_edge_answers_like_a_sqlite_edge(pg_url: str, tmp_path: Path, logs_dir: Path) -> None:
    """Same simulator, same closed window inside both edges' backfilled history: the same statistics."""
    with start_iotedge(_SIM, log_dir=logs_dir) as sim:
        started = time.time()
        # The backfill is the last hour at one-minute steps: identical for both edges.
        window: dict[str, Any] = {"from": f"{started - 3000:.3f}", "to": f"{started - 120:.3f}"}
        lite_args = edge_args(sim.url, tmp_path / "sqlite")
        pg_args = edge_args(sim.url, tmp_path / "pg", "--store", pg_url)
        with (
            start_iotedge(lite_args, log_dir=logs_dir, env=edge_env()) as lite,
            start_iotedge(pg_args, log_dir=logs_dir, env=edge_env()) as pg,
        ):
            for edge in (lite, pg):
                wait_for(
                    lambda: len(_get(edge, "/objects/device_1/readings", **window).json()["points"]) >= 30,  # noqa: B023
                    30,
                    "the backfilled window",
                )
            for object_id in ("device_1", "device_2", "device_3", "device_4"):
                answers = [
                    _get(edge, "/processed_data", object_id=object_id, **window) for edge in (lite, pg)
                ]
                assert [a.status_code for a in answers] == [200, 200]
                assert _comparable(answers[0].json()) == _comparable(answers[1].json()), object_id
                assert answers[0].json()["statistics"]["count"] > 0
                series = [
                    _get(edge, f"/objects/{object_id}/readings", **window).json() for edge in (lite, pg)
                ]
                assert series[0] == series[1], object_id
            clients = [
                _get(edge, "/client_statistics", client_id="client_1", **window) for edge in (lite, pg)
            ]
            assert clients[0].json()["metrics"] == clients[1].json()["metrics"]
            assert clients[0].json()["objects"] == clients[1].json()["objects"]
            assert "store postgresql://postgres@127.0.0.1" in pg.log()


def _block(url: str) -> None:
    """Refuse new connections to the database and end its sessions (the edge's pool loses them all)."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def _unblock(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name)))


def _unavailable(response: httpx.Response) -> bool:
    return response.status_code == 503 and response.json().get("error") == "Store unavailable"


def test_postgresql_down_answers_503_buffers_readings_and_recovers(
    pg_url: str, tmp_path: Path, logs_dir: Path
) -> None:
    """Database gone: 503 JSON with Retry-After, /readyz 503 naming the store, polling goes on into
    the buffer; database back: ready again, buffered readings stored, the count never goes down."""
    metrics_port, small_port = free_port(), free_port()
    with start_iotedge(_SIM, log_dir=logs_dir) as sim, scratch_database("iotedge_small") as small_url:
        args = [
            *edge_args(sim.url, tmp_path / "edge", "--store", pg_url),
            "--metrics-port",
            str(metrics_port),
        ]
        # A second edge whose buffer holds 10 readings: it must drop the oldest. On a database of
        # its own: two edges on one database would share the fleet's shards between them.
        small_args = [
            *edge_args(sim.url, tmp_path / "small", "--store", small_url, "--store-buffer", "10"),
            "--metrics-port",
            str(small_port),
        ]
        with (
            start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge,
            start_iotedge(small_args, log_dir=logs_dir, env=edge_env()) as small,
        ):
            wait_for(lambda: _get(edge, "/readyz").status_code == 200, 30, "edge ready")
            wait_for(
                lambda: _get(edge, "/processed_data", object_id="device_1").status_code == 200, 30, "data"
            )
            before = _stored(pg_url)
            assert before > 0
            _block(pg_url)
            _block(small_url)
            # Nothing reaches the database from here: a reading stamped later was polled in the outage.
            outage_started = time.time()
            try:
                # The answers that showed the outage are the ones checked (asking again takes seconds).
                answer = wait_for_answer(
                    lambda: _get(edge, "/processed_data", object_id="device_1"), _unavailable, 30, "503"
                )
                assert answer.status_code == 503
                assert answer.headers["retry-after"] == "5"
                assert answer.headers["content-type"] == "application/json"
                assert answer.json() == {
                    "error": "Store unavailable",
                    "detail": "The store's database does not answer; retry later.",
                }
                # The FastAPI route (a repeated parameter skips the fast lane) answers the same.
                routed = _get(edge, "/client_statistics?client_id=client_1&client_id=client_1")
                assert routed.status_code == 503
                assert routed.headers["retry-after"] == "5"
                assert routed.json()["error"] == "Store unavailable"
                ready = wait_for_answer(
                    lambda: _get(edge, "/readyz"), lambda r: r.status_code == 503, 30, "unready"
                )
                assert ready.headers["retry-after"] == "5"
                assert ready.json()["failing"] == ["store"]
                assert ready.json()["checks"]["upstream"]["ok"] is True
                wait_for(lambda: _gauge(metrics_port, "iotedge_store_buffer_readings") > 0, 30, "buffering")
                for _ in range(2):  # two more cycles polled into the buffer
                    held = _gauge(metrics_port, "iotedge_store_buffer_readings")
                    wait_for(
                        lambda: _gauge(metrics_port, "iotedge_store_buffer_readings") > held,  # noqa: B023
                        30,
                        "polling goes on",
                    )
                assert _gauge(metrics_port, "iotedge_store_buffer_dropped_total") == 0
                wait_for(lambda: _gauge(small_port, "iotedge_store_buffer_dropped_total") > 0, 30, "drops")
                assert _gauge(small_port, "iotedge_store_buffer_readings") == 10
            finally:
                outage_ended = time.time()
                _unblock(pg_url)
                _unblock(small_url)
            wait_for(lambda: _get(edge, "/readyz").status_code == 200, 90, "ready again")
            wait_for(lambda: _gauge(metrics_port, "iotedge_store_buffer_readings") == 0, 60, "buffer flushed")
            wait_for(
                lambda: _gauge(small_port, "iotedge_store_buffer_readings") == 0, 60, "small buffer flushed"
            )
            wait_for(lambda: _get(small, "/readyz").status_code == 200, 30, "small edge ready again")
            after = _stored(pg_url)
            assert after > before
            # Readings polled while the database was away were stored once it came back.
            assert _stored(pg_url, outage_started, outage_ended) > 0
            assert _get(edge, "/processed_data", object_id="device_1").status_code == 200
            wait_for(lambda: _stored(pg_url) > after, 30, "new readings after the recovery")
            assert "buffering polled readings" in edge.log()
            assert "store answers again" in edge.log()


def test_api_and_collector_roles_share_one_database(pg_url: str, tmp_path: Path, logs_dir: Path) -> None:
    """--role collector polls, serving only the probes; --role api serves what it stored, polling nothing."""
    with start_iotedge(_SIM, log_dir=logs_dir) as sim:
        collector_args = edge_args(sim.url, tmp_path / "collector", "--store", pg_url, "--role", "collector")
        api_args = edge_args(sim.url, tmp_path / "api", "--store", pg_url, "--role", "api")
        with start_iotedge(collector_args, log_dir=logs_dir, env=edge_env()) as collector:
            wait_for(lambda: _get(collector, "/readyz").status_code == 200, 30, "collector ready")
            assert _get(collector, "/healthz").status_code == 200
            for path in ("/processed_data?object_id=device_1", "/objects", "/openapi.json", "/docs", "/ui/"):
                assert _get(collector, path).status_code == 404, path
            with start_iotedge(api_args, log_dir=logs_dir, env=edge_env()) as api:
                wait_for(
                    lambda: _get(api, "/processed_data", object_id="device_1").status_code == 200, 30, "data"
                )
                body = _get(api, "/processed_data", object_id="device_1").json()
                assert body["statistics"]["count"] > 0
                assert body["stale"] is False  # the api role judges staleness by age alone
                ready = _get(api, "/readyz")
                assert ready.status_code == 200
                assert ready.json()["role"] == "api"
                assert "upstream" not in ready.json()["checks"]
                assert ready.json()["checks"]["started"]["cycles"] == 0
                count = _get(api, "/processed_data", object_id="device_1").json()["statistics"]["count"]
                wait_for(
                    lambda: (
                        _get(api, "/processed_data", object_id="device_1").json()["statistics"]["count"]
                        > count
                    ),
                    30,
                    "the collector's new readings through the api",
                )
                assert "not polling" in api.log()
