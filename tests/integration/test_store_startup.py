"""A bad store or keys file stops a real edge with one readable line; recovery; readiness blames the store."""

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.store import Store
from iotedge.edge.store.choose import check_postgres
from iotedge.edge.store.postgres import PG_SCHEMA_VERSION
from tests.conftest import edge_args, edge_env, require, wait_for, wait_for_answer
from tests.pgdb import scratch_database, server_problem
from tests.procs import Proc, free_port, start_iotedge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORE = "iotedge.sqlite3"


def _iotedge(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("IOTEDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "iotedge", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _edge_once(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Start an edge that should refuse to start; its upstream is never reached."""
    return _iotedge(
        "edge", "--data-dir", str(data_dir), "--upstream", "http://127.0.0.1:9", "--port", str(free_port()),
        "--metrics-port", "0",
    )  # fmt: skip


def _one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    for word in words:
        assert word in errors[0], output
    return errors[0]


def _damaged_store(data_dir: Path) -> Path:
    """A real store with readings whose pages past the first were overwritten on disk."""
    path = data_dir / STORE
    store = Store(path)
    store.upsert_objects([CatalogueEntry("device_1", "client_1", "temperature_sensor")], 0.0)
    store.insert_readings(
        [Reading("device_1", "client_1", "temperature", float(i), 25.0) for i in range(5000)]
    )
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data) - page, 3 * page):
        data[offset + 100 : offset + 600] = b"\xa5" * 500
    path.write_bytes(bytes(data))
    return path


def test_a_file_that_is_no_database_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """Garbage where the store should be: exit 1, one 'Error:' line naming the file, no traceback."""
    (tmp_path / STORE).write_bytes(b"this is not a database\n" * 200)
    line = _one_line_error(_edge_once(tmp_path), str(tmp_path / STORE))
    assert "store check" in line


def test_iotedge_run_refuses_a_bad_store_the_same_way(tmp_path: Path) -> None:
    """`iotedge run` (simulator and edge in one process) checks the store before serving too."""
    (tmp_path / STORE).write_bytes(b"this is not a database\n" * 200)
    ports = ["--sim-port", str(free_port()), "--port", str(free_port()), "--metrics-port", "0"]
    _one_line_error(_iotedge("run", "--data-dir", str(tmp_path), *ports), str(tmp_path / STORE))


def test_a_damaged_store_is_found_by_quick_check_and_moved_aside(tmp_path: Path, logs_dir: Path) -> None:
    """Corrupt pages stop the edge; `store check` says so; `--move-aside` lets a real edge start."""
    path = _damaged_store(tmp_path)
    _one_line_error(_edge_once(tmp_path), str(path))
    check = _iotedge("store", "check", "--data-dir", str(tmp_path))
    _one_line_error(check, "--move-aside")
    moved = _iotedge("store", "check", "--data-dir", str(tmp_path), "--move-aside")
    assert moved.returncode == 0, moved.stderr
    assert not path.exists()
    [aside] = [p for p in tmp_path.glob(f"{STORE}.bad-*") if not p.name.endswith(("-wal", "-shm"))]
    assert aside.read_bytes()[:15] == b"SQLite format 3"  # kept for forensics, never deleted
    with start_iotedge(["sim"], log_dir=logs_dir) as sim:
        args = edge_args(sim.url, tmp_path)
        with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
            assert httpx.get(edge.url + "/healthz").status_code == 200
    assert _iotedge("store", "check", "--data-dir", str(tmp_path)).returncode == 0


def test_a_bad_keys_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A keys file that is not JSON stops the edge with one line naming it."""
    (tmp_path / "keys.json").write_text("{not json")
    _one_line_error(_edge_once(tmp_path), "keys.json")


def _readiness(edge: Proc) -> dict[str, object]:
    body: dict[str, object] = httpx.get(edge.url + "/readyz", timeout=30).json()
    return body


def test_readiness_blames_the_store_not_the_device_api(tmp_path: Path, logs_dir: Path) -> None:
    """While another process holds the store's write lock, /readyz names the store alone."""
    with (
        start_iotedge(["sim", "--interval", "1"], log_dir=logs_dir) as sim,
        start_iotedge(edge_args(sim.url, tmp_path), log_dir=logs_dir, env=edge_env()) as edge,
    ):
        wait_for(lambda: _readiness(edge)["ready"] is True, 20, "edge ready")
        blocker = sqlite3.connect(tmp_path / STORE, isolation_level=None, timeout=10)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            # The answer that blames the store is the one checked: while the lock is held a
            # later /readyz can wait on the store for many seconds.
            blamed = wait_for_answer(
                lambda: _readiness(edge), lambda body: body["failing"] == ["store"], 40, "the store blamed"
            )
            checks = blamed["checks"]
            assert isinstance(checks, dict)
            assert checks["upstream"]["ok"] is True
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        deadline = time.monotonic() + 40
        wait_for(lambda: _readiness(edge)["ready"] is True, max(1.0, deadline - time.monotonic()), "recovery")


def _edge_on_store(data_dir: Path, store: str) -> subprocess.CompletedProcess[str]:
    """Start an edge on ``store`` that should refuse to start; its upstream is never reached."""
    return _iotedge(
        "edge", "--data-dir", str(data_dir), "--store", store, "--upstream", "http://127.0.0.1:9",
        "--port", str(free_port()), "--metrics-port", "0",
    )  # fmt: skip


def test_an_unreachable_postgresql_is_one_line_without_the_password(tmp_path: Path) -> None:
    """Nothing listens on the store's port: exit non-zero, one 'Error:' line naming it, no password."""
    result = _edge_on_store(tmp_path, "postgresql://iotedge:s3cret-pw@127.0.0.1:1/iotedge")
    line = _one_line_error(result, "cannot reach PostgreSQL", "postgresql://iotedge@127.0.0.1:1/iotedge")
    assert "s3cret-pw" not in result.stdout + result.stderr, line


def test_iotedge_run_refuses_an_unreachable_postgresql_the_same_way(tmp_path: Path) -> None:
    """`iotedge run --store postgres://...` checks the server before serving too (postgres:// works)."""
    ports = ["--sim-port", str(free_port()), "--port", str(free_port()), "--metrics-port", "0"]
    result = _iotedge(
        "run", "--data-dir", str(tmp_path), "--store", "postgres://u:pw-x9@127.0.0.1:1/db", *ports
    )
    _one_line_error(result, "cannot reach PostgreSQL")
    assert "pw-x9" not in result.stdout + result.stderr


def test_a_postgresql_schema_from_a_newer_release_is_one_line(tmp_path: Path) -> None:
    """A database migrated by a newer release is refused at start, and left as it was."""
    problem = server_problem()
    require(problem is None, problem or "")
    with scratch_database() as url:
        asyncio.run(check_postgres(url))  # what `iotedge edge` does first: migrate to this release
        with psycopg.connect(url, autocommit=True) as conn:
            count = conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()
            assert count is not None and count[0] >= 1
            conn.execute(
                "INSERT INTO schema_version VALUES (%s, 'from the future', 0)", (PG_SCHEMA_VERSION + 1,)
            )
        _one_line_error(_edge_on_store(tmp_path, url), "newer than this release")
        with psycopg.connect(url, autocommit=True) as conn:
            newest = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        assert newest == (PG_SCHEMA_VERSION + 1,)


def _cycles(edge: Proc) -> int:
    checks = _readiness(edge)["checks"]
    assert isinstance(checks, dict)
    return int(checks["started"]["cycles"])


def test_a_dead_device_api_never_makes_the_edge_unready(tmp_path: Path, logs_dir: Path) -> None:
    """SQLite store, nothing listening upstream: /readyz is 200 with the device API under 'degraded'."""
    args = edge_args("http://127.0.0.1:9", tmp_path)
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as edge:
        wait_for(lambda: httpx.get(edge.url + "/readyz", timeout=10).status_code == 200, 20, "ready")
        for _ in range(3):  # several failed cycles later, still ready
            cycles = _cycles(edge)
            wait_for(lambda: _cycles(edge) > cycles, 10, "another cycle")  # noqa: B023 - used at once
            response = httpx.get(edge.url + "/readyz", timeout=10)
            assert response.status_code == 200
            body = response.json()
            assert body["ready"] is True
            assert body["degraded"] == ["upstream"]
            assert body["checks"]["upstream"]["ok"] is False
