"""API keys in PostgreSQL: the keys CLI with --store, and PgKeyRing replicas kept current.

Against the real server on 127.0.0.1:5432, in a database of this module's own.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from iotedge.edge.auth import KeyRing, KeySource
from iotedge.edge.store.postgres import keys as pg_keys
from iotedge.edge.store.postgres.keys import PgKeyRing
from iotedge.errors import AuthError, StoreError
from tests.conftest import require
from tests.pgdb import scratch_database, server_problem

ENV_KEY = "environment-key-0123456789"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A database of this run's own, dropped after the module."""
    problem = server_problem()
    require(problem is None, problem or "")
    with scratch_database() as url:
        yield url


@pytest.fixture
def url(pg_url: str) -> str:
    """The module's database with no keys."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('api_keys')").fetchone() != (None,):
            conn.execute("TRUNCATE api_keys")
    return pg_url


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("IOTEDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "iotedge", "keys", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


def _listed(url: str) -> dict[str, dict[str, object]]:
    result = _cli("list", "--json", "--store", url)
    assert result.returncode == 0, result.stderr
    return {row["id"]: row for row in map(json.loads, result.stdout.splitlines())}


def _conforms(ring: PgKeyRing, file_ring: KeyRing) -> list[KeySource]:
    return [ring, file_ring]  # mypy checks that both satisfy the protocol the app depends on


def test_the_keys_cli_creates_lists_revokes_and_deletes_in_the_store(url: str) -> None:
    """Each command is its own process; the keys file is never touched; IOTEDGE_STORE works too."""
    created = _cli("create", "--client", "client_1", "--expires", "30d", "--store", url)
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(":", 1) for line in created.stdout.splitlines())
    key_id, key = fields["key id"].strip(), fields["key"].strip()
    assert key.startswith(f"iek_{key_id}_")
    other = _cli("create", "--client", "client_2", env={"IOTEDGE_STORE": url})
    assert other.returncode == 0, other.stderr
    listed = _listed(url)
    assert {row["client"] for row in listed.values()} == {"client_1", "client_2"}
    assert listed[key_id]["status"] == "active"
    assert listed[key_id]["expires_at"] is not None
    assert key not in json.dumps(listed)

    missing = _cli("revoke", "nope", "--store", url)
    assert missing.returncode == 1
    assert "no key with id nope" in missing.stderr
    revoked = _cli("revoke", key_id, "--store", url)
    assert revoked.stdout.strip() == f"revoked {key_id} (client_1)"
    assert _listed(url)[key_id]["status"] == "revoked"
    again = _cli("revoke", key_id, "--store", url)
    assert "nothing to revoke" in again.stderr

    deleted = _cli("delete-client", "client_2", "--store", url)
    assert deleted.stdout.strip() == "removed 1 key(s) of client_2"
    assert set(_listed(url)) == {key_id}
    refused = _cli("list", "--store", "sqlite:///x")
    assert refused.returncode == 2
    assert "postgresql://" in refused.stderr


def test_an_unreachable_store_is_one_line_without_the_password() -> None:
    """Nothing listens on port 1: exit 1 with one error line naming the URL without its password."""
    result = _cli("list", "--store", "postgresql://edge:s3cret@127.0.0.1:1/iotedge")
    assert result.returncode == 1
    assert "cannot reach PostgreSQL at postgresql://edge@127.0.0.1:1/iotedge" in result.stderr
    assert "s3cret" not in result.stderr


async def _until(condition: Callable[[], bool], deadline_s: float) -> float:
    """Seconds until ``condition`` held; fails after ``deadline_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > deadline_s:
            pytest.fail(f"not within {deadline_s} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def _refused(ring: PgKeyRing, key: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            ring.authenticate(key)
        except AuthError:
            return True
        return False

    return check


def test_a_revocation_through_one_replica_reaches_the_other_by_notification(url: str) -> None:
    """Two rings on one database: a new key reaches both, a revocation through one stops the other.

    The rings' periodic reload (30 s) is set far beyond the deadlines (10 s): only the
    notification can carry the change in time. How long it took is printed, not asserted.
    """

    async def scenario() -> None:
        async with await pg_keys.open_keys_connection(url) as conn:
            first = PgKeyRing(url, env_keys=f"*={ENV_KEY}", reload_s=30)
            second = PgKeyRing(url, reload_s=30)
            await first.start()
            await second.start()
            try:
                assert len(first) == 1  # the environment's key
                assert first.authenticate(ENV_KEY).client == "*"
                record, key = await pg_keys.create_key(conn, "client_1")
                await _until(lambda: len(second) == 1, 10.0)
                await _until(lambda: len(first) == 2, 10.0)
                assert second.authenticate(key).client == "client_1"
                assert first.authenticate(f" {key}\n").key_id == record.id
                [revoked] = await pg_keys.revoke_keys(conn, key_ids=[record.id])
                assert revoked.id == record.id
                took = await _until(_refused(second, key), 10.0)
                await _until(_refused(first, key), 10.0)
                with pytest.raises(AuthError, match="revoked"):
                    second.authenticate(key)
                print(f"\nrevocation seen by the other ring after {took:.3f} s")  # noqa: T201
                assert await pg_keys.delete_client(conn, "client_1") == 1
                await _until(lambda: len(second) == 0, 10.0)
                with pytest.raises(AuthError, match="unknown key"):
                    second.authenticate(key)
            finally:
                await first.aclose()
                await second.aclose()

    asyncio.run(scenario())


def test_the_periodic_reload_catches_a_change_that_notified_nobody(url: str) -> None:
    """A revocation made with the trigger disabled (no notification) is still seen within reload_s."""

    async def scenario() -> None:
        async with await pg_keys.open_keys_connection(url) as conn:
            record, key = await pg_keys.create_key(conn, "client_1")
            ring = PgKeyRing(url, reload_s=0.3)
            await ring.start()
            try:
                assert ring.authenticate(key).key_id == record.id
                async with conn.transaction():
                    await conn.execute("ALTER TABLE api_keys DISABLE TRIGGER api_keys_changed")
                    await conn.execute("UPDATE api_keys SET revoked_at = 0 WHERE id = %s", (record.id,))
                    await conn.execute("ALTER TABLE api_keys ENABLE TRIGGER api_keys_changed")
                await _until(_refused(ring, key), 10.0)
            finally:
                await ring.aclose()

    asyncio.run(scenario())


def test_last_use_is_written_to_the_store(url: str) -> None:
    """Keys used through a ring get last_used_at in the table: periodically, and at close."""

    async def scenario() -> None:
        async with await pg_keys.open_keys_connection(url) as conn:
            used, idle = (
                await pg_keys.create_key(conn, "client_1"),
                await pg_keys.create_key(conn, "client_2"),
            )
            ring = PgKeyRing(url, reload_s=0.1, usage_flush_s=0.2)
            await ring.start()
            try:
                before = time.time()
                ring.authenticate(used[1])

                async def last_used() -> dict[str, float | None]:
                    return {record.id: last for record, last in await pg_keys.list_keys(conn)}

                deadline = time.monotonic() + 5
                while (await last_used())[used[0].id] is None:
                    assert time.monotonic() < deadline, "last use not written within 5 s"
                    await asyncio.sleep(0.05)
                written = await last_used()
                assert (written[used[0].id] or 0) >= before
                assert written[idle[0].id] is None
                ring.authenticate(idle[1])
            finally:
                await ring.aclose()  # writes the pending use of the idle key
            assert (await last_used())[idle[0].id] is not None

    asyncio.run(scenario())


def test_a_ring_on_an_unreachable_store_fails_to_start() -> None:
    """start() is one StoreError naming the URL without its password."""
    ring = PgKeyRing("postgresql://edge:s3cret@127.0.0.1:1/iotedge")
    with pytest.raises(StoreError) as caught:
        asyncio.run(ring.start())
    assert "cannot reach PostgreSQL at postgresql://edge@127.0.0.1:1/iotedge" in str(caught.value)
    assert "s3cret" not in str(caught.value)
