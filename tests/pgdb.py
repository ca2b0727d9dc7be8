"""A throwaway PostgreSQL database per test run, on the server at 127.0.0.1:5432.

The server is a real component the tests need: absent, they skip with the reason locally
and fail in CI (``tests.conftest.require``). ``IOTEDGE_TEST_PG`` overrides the server's
admin URL (default: user postgres, database postgres, trust auth on loopback).
"""

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

ADMIN_URL = os.environ.get("IOTEDGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def server_problem() -> str | None:
    """None when the server answers, else why not (one line)."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()
        return f"PostgreSQL not reachable at {ADMIN_URL}: {first[0] if first else exc!r}"
    return None


def _url_of(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def scratch_database(prefix: str = "iotedge_test") -> Iterator[str]:
    """Create a database of a unique name, yield its URL, then drop it (its sessions first)."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _url_of(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def migrated_database() -> Iterator[str]:
    """:func:`scratch_database` with this release's schema; without a server, skip (fail in CI)."""
    from iotedge.edge.store.postgres import open_pg_store
    from tests.conftest import require

    problem = server_problem()
    require(problem is None, problem or "")
    with scratch_database() as url:

        async def migrate() -> None:
            await (await open_pg_store(url)).close()

        asyncio.run(migrate())
        yield url
