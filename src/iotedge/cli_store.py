"""``iotedge store``: check the store file, and move a bad one aside so the edge can start."""

import sqlite3
import time
from pathlib import Path

import click

from iotedge.edge.store import SCHEMA_VERSION, quick_check, schema_version

__all__ = ["store"]

_STORE_FILENAME = "iotedge.sqlite3"  # the edge's file inside its data directory
_COMPANIONS = ("", "-wal", "-shm")  # SQLite's journal files travel with the database


def _problem(path: Path) -> str | None:
    """What is wrong with the store file, or None when it is sound. Never writes to it."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"cannot open: {exc}"
    try:
        complaint = quick_check(conn)
        if complaint is not None:
            return f"corrupt: {complaint}"
        version = schema_version(conn)
        if version > SCHEMA_VERSION:
            return f"schema version {version} is newer than this release's {SCHEMA_VERSION}"
    except sqlite3.Error as exc:
        return f"unreadable: {exc}"
    finally:
        conn.close()
    return None


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.bad-{stamp}")
    for suffix in _COMPANIONS:
        source = Path(str(path) + suffix)
        if source.exists():
            source.rename(Path(str(target) + suffix))
    return target


@click.group()
def store() -> None:
    """The edge's store file (SQLite)."""


@store.command("check")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("data"),
    show_default=True,
    envvar="IOTEDGE_DATA_DIR",
    help="The edge's data directory (env IOTEDGE_DATA_DIR).",
)
@click.option(
    "--move-aside",
    is_flag=True,
    help="If the store is bad, rename it (and its -wal/-shm) to NAME.bad-TIME so the edge starts empty.",
)
def check(data_dir: Path, move_aside: bool) -> None:
    """Check the store with PRAGMA quick_check; exit 1 if it is bad. Stop the edge first."""
    path = data_dir / _STORE_FILENAME
    if not path.exists():
        click.echo(f"{path}: no store yet (the edge creates it)")
        return
    problem = _problem(path)
    if problem is None:
        click.echo(f"{path}: ok (schema version {SCHEMA_VERSION})")
        return
    if move_aside:
        target = _move_aside(path)
        click.echo(f"{path}: {problem}; moved aside to {target}")
        return
    raise click.ClickException(f"{path}: {problem}; to start afresh: iotedge store check --move-aside")
