"""Key lifecycle against a real edge process: 401s, revocation, expiry, rotation, rate limits."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from iotedge.edge import auth
from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.procs import Proc, start_iotedge
from tests.security.helpers import UNAUTHORIZED, cli, create_key, get, keys_list

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class KeyedEdge:
    """An edge reading a keys file the tests edit with the CLI."""

    proc: Proc
    keys_file: Path

    def assert_not_logged(self, *keys: str) -> None:
        """No key ever appears in the edge's log."""
        log = self.proc.log()
        for key in keys:
            assert key not in log


@pytest.fixture(scope="module")
def edge(sim: Proc, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedEdge]:
    """An edge with the test keys in its environment and a keys file (failed-login cap off)."""
    data_dir = tmp_path_factory.mktemp("keyed")
    keys_file = data_dir / "keys.json"
    args = edge_args(sim.url, data_dir, "--keys-file", str(keys_file))
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as proc:
        yield KeyedEdge(proc, keys_file)


def _works(edge: KeyedEdge, key: str) -> bool:
    return get(edge.proc.url, key).status_code == 200


def _refused(edge: KeyedEdge, key: str) -> bool:
    response = get(edge.proc.url, key)
    return response.status_code == 401 and response.json() == UNAUTHORIZED


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "not a key",
        "not-a-key",
        "x" * 300,
        "iek_deadbeef_" + "A" * 43,
        KEYS["client_1"] + "x",
        KEYS["client_1"][:-1],
        KEYS["client_1"].upper(),
    ],
    ids=["missing", "empty", "spaces", "malformed", "oversized", "unknown", "longer", "shorter", "case"],
)
def test_invalid_keys_get_the_course_401(edge: KeyedEdge, key: str | None) -> None:
    """Missing, empty, malformed, unknown and near-miss keys: 401 {"error": "Unauthorized"}."""
    response = get(edge.proc.url, key)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_non_ascii_key_is_401(edge: KeyedEdge) -> None:
    """A key header with bytes outside ASCII is refused like any bad key."""
    response = httpx.get(edge.proc.url + "/objects", headers={b"x-api-key": b"\xff\xfekey-0123456789"})
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


def test_revocation_takes_effect_without_restart(edge: KeyedEdge) -> None:
    """`keys revoke ID` on a running edge: the key is refused, others are not, same process."""
    key_id, key = create_key(edge.keys_file, "client_1")
    wait_for(lambda: _works(edge, key), 10, "the new key to be accepted")
    pid = edge.proc.popen.pid
    assert "revoked " + key_id in cli("keys", "revoke", key_id, "--keys-file", str(edge.keys_file)).stdout
    wait_for(lambda: _refused(edge, key), 10, "the revoked key to be refused")
    assert edge.proc.popen.poll() is None and edge.proc.popen.pid == pid
    assert _works(edge, KEYS["client_1"])
    wait_for(lambda: f"key {key_id} revoked" in edge.proc.log(), 10, "the revocation in the log")
    assert keys_list(edge.keys_file)[key_id]["status"] == "revoked"
    edge.assert_not_logged(key, KEYS["client_1"])


def test_rotation_keeps_the_new_key_working(edge: KeyedEdge) -> None:
    """Create a second key, revoke the first: the overlap has two valid keys, then one."""
    old_id, old = create_key(edge.keys_file, "client_2")
    _, new = create_key(edge.keys_file, "client_2")
    wait_for(lambda: _works(edge, old) and _works(edge, new), 10, "both keys to be accepted")
    mine = {obj["client"] for obj in get(edge.proc.url, new).json()["objects"]}
    assert mine <= {"client_2"}
    cli("keys", "revoke", old_id, "--keys-file", str(edge.keys_file))
    wait_for(lambda: _refused(edge, old), 10, "the old key to be refused")
    assert _works(edge, new)


def test_expired_key_is_401(edge: KeyedEdge) -> None:
    """A key past its expiry is refused, and the log says it expired (by id)."""
    key_id, key = create_key(edge.keys_file, "client_1", "--expires", "30d")
    wait_for(lambda: _works(edge, key), 10, "the new key to be accepted")
    row = keys_list(edge.keys_file)[key_id]
    assert row["expires_at"] == pytest.approx(time.time() + 30 * 86400, abs=120)
    record, expired = auth.create_key(edge.keys_file, "client_1", expires_at=time.time() - 1)

    def refused_as_expired() -> bool:
        return _refused(edge, expired) and f"key {record.id} expired" in edge.proc.log()

    wait_for(refused_as_expired, 10, "the expired key to be refused as expired")
    assert keys_list(edge.keys_file)[record.id]["status"] == "expired"
    edge.assert_not_logged(key, expired)


def test_keys_of_a_deleted_client_are_401(edge: KeyedEdge) -> None:
    """`keys delete-client` removes every key of the client: all of them are refused."""
    keys = [create_key(edge.keys_file, "client_3")[1] for _ in range(2)]
    wait_for(lambda: all(_works(edge, key) for key in keys), 10, "the client's keys to be accepted")
    assert (
        "removed 2 key(s)"
        in cli("keys", "delete-client", "client_3", "--keys-file", str(edge.keys_file)).stdout
    )
    wait_for(lambda: all(_refused(edge, key) for key in keys), 10, "the deleted client's keys to be refused")
    assert all(row["client"] != "client_3" for row in keys_list(edge.keys_file).values())


def test_sighup_reloads_the_keys_file(edge: KeyedEdge) -> None:
    """A change the modification time does not show is picked up on SIGHUP."""
    key_id, key = create_key(edge.keys_file, "client_1")
    wait_for(lambda: _works(edge, key), 10, "the new key to be accepted")
    before = edge.keys_file.stat()
    auth.revoke_keys(edge.keys_file, key_ids=[key_id])
    os.utime(edge.keys_file, ns=(before.st_atime_ns, before.st_mtime_ns))  # hide the change
    assert _works(edge, key)
    edge.proc.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: _refused(edge, key), 10, "the key revoked behind the edge's back to be refused")
    assert "SIGHUP: reloaded" in edge.proc.log()


def test_keys_list_shows_no_secret(edge: KeyedEdge) -> None:
    """`keys list` shows ids, clients, scopes and states, never a key or its hash."""
    key_id, key = create_key(edge.keys_file, "*")
    table = cli("keys", "list", "--keys-file", str(edge.keys_file)).stdout
    assert key_id in table and "read:all-clients" in table
    assert key not in table and auth.hash_key(key) not in table
    assert {"active", "revoked", "expired"} <= {row["status"] for row in keys_list(edge.keys_file).values()}


def test_keys_list_of_an_empty_file_says_so(tmp_path: Path) -> None:
    """No keys yet (as after `make run`: its demo keys are in the environment): one line, no bare header."""
    result = cli("keys", "list", "--keys-file", str(tmp_path / "keys.json"))
    assert result.stdout == ""
    assert (
        result.stderr
        == f"no keys in {tmp_path / 'keys.json'} (the demo keys of iotedge run are not kept in a file)\n"
    )


def test_last_use_is_recorded_by_id(sim: Proc, logs_dir: Path, tmp_path: Path) -> None:
    """After a used key's edge stops, `keys list` shows when it was last used; an unused one shows none."""
    keys_file = tmp_path / "keys.json"
    used_id, used = create_key(keys_file, "client_1")
    idle_id, _ = create_key(keys_file, "client_1")
    started = time.time()
    with start_iotedge(
        edge_args(sim.url, tmp_path / "data", "--keys-file", str(keys_file)), log_dir=logs_dir
    ) as proc:
        assert get(proc.url, used).status_code == 200
        assert proc.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean stop
        assert "Application shutdown complete" in proc.log()
    rows = keys_list(keys_file)
    assert rows[used_id]["last_used_at"] >= started - 1
    assert rows[idle_id]["last_used_at"] is None


def test_a_burst_gets_429_and_spares_other_keys(sim: Proc, logs_dir: Path, tmp_path: Path) -> None:
    """Past its burst a key gets 429 with Retry-After; another client's key still works."""
    args = edge_args(sim.url, tmp_path, "--rate-limit", "0.01", "--rate-burst", "5")
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as proc:
        responses = [get(proc.url, KEYS["client_1"]) for _ in range(8)]
        other = get(proc.url, KEYS["client_2"])
    assert [r.status_code for r in responses] == [200] * 5 + [429] * 3
    limited = responses[-1]
    assert limited.json() == {"error": "Too Many Requests"}
    assert int(limited.headers["retry-after"]) >= 1
    assert other.status_code == 200


def test_failed_logins_are_capped_per_address(sim: Proc, logs_dir: Path, tmp_path: Path) -> None:
    """After N bad keys from one address, it gets 429 even with a valid key (no oracle)."""
    env = {**edge_env(), "IOTEDGE_AUTH_FAILURES": "4"}
    with start_iotedge(edge_args(sim.url, tmp_path), log_dir=logs_dir, env=env) as proc:
        bad = [get(proc.url, f"guess-{n:04d}-0123456789").status_code for n in range(5)]
        valid = get(proc.url, KEYS["client_1"])
        health = httpx.get(proc.url + "/healthz", timeout=10)
    assert bad == [401] * 4 + [429]
    assert valid.status_code == 429
    assert int(valid.headers["retry-after"]) >= 1
    assert health.status_code == 200  # probes need no key and are not blocked


def _bad_entry(keys_file: Path) -> str:
    """The keys file's text with one entry's expiry as a date string (a 500 before validation)."""
    data = json.loads(keys_file.read_text())
    data["keys"][0]["expires_at"] = "2027-01-01"
    return json.dumps(data)


def test_a_bad_keys_file_keeps_the_last_good_keys(edge: KeyedEdge) -> None:
    """A keys file that fails validation is one logged error; the edge keeps serving the old keys."""
    _, key = create_key(edge.keys_file, "client_2")
    wait_for(lambda: _works(edge, key), 10, "the new key to be accepted")
    good = edge.keys_file.read_text()
    try:
        edge.keys_file.write_text(_bad_entry(edge.keys_file))
        os.utime(edge.keys_file, (time.time() + 5, time.time() + 5))
        # The edge looks at the file when a request comes: each poll sends one.
        wait_for(
            lambda: _works(edge, key) and "keeping the previous keys" in edge.proc.log(),
            10,
            "the refusal to be logged",
        )
        assert _works(edge, key)
        assert get(edge.proc.url, KEYS["client_1"]).status_code == 200
        assert "keys[0].expires_at" in edge.proc.log()
        assert "Traceback" not in edge.proc.log()
    finally:
        edge.keys_file.write_text(good)
        os.utime(edge.keys_file, (time.time() + 10, time.time() + 10))


@pytest.mark.parametrize("padding", [" ", "\t", " \t "])
def test_whitespace_around_the_key_header_is_ignored(edge: KeyedEdge, padding: str) -> None:
    """A key sent with blanks around it authenticates like the bare key (raw socket: httpx refuses)."""
    url = httpx.URL(edge.proc.url)
    request = (
        f"GET /objects HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        f"x-api-key: {padding}{KEYS['client_1']}{padding}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((url.host, url.port or 80), timeout=10) as sock:
        sock.sendall(request.encode())
        status_line = sock.makefile("rb").readline()
    assert status_line.split()[1] == b"200", status_line


def test_a_bad_keys_file_at_start_is_one_line_and_exit_1(sim: Proc, tmp_path: Path) -> None:
    """Starting on a keys file that fails validation prints one readable line and exits non-zero."""
    keys_file = tmp_path / "keys.json"
    create_key(keys_file, "client_1")
    keys_file.write_text(_bad_entry(keys_file))
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTEDGE_")}
    result = subprocess.run(
        [sys.executable, "-m", "iotedge", *edge_args(sim.url, tmp_path), "--keys-file", str(keys_file)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert "keys[0].expires_at" in lines[0] and str(keys_file) in lines[0]
