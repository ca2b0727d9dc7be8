"""Several edge processes on one real PostgreSQL scratch database: keys, shard leases, one notifier.

Each test starts its own simulator and edges as processes (``--store postgresql://...``), as
the ``scale`` deployments run them.
"""

import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import edge_args, edge_env, require, wait_for
from tests.pgdb import scratch_database, server_problem
from tests.procs import Proc, loopback_http, start_iotedge

pytestmark = pytest.mark.integration

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
