"""The store package's public surface is what ``__all__`` says, and the backend fits the interface."""

import importlib
from pathlib import Path

import iotedge.edge.store as store_package
from iotedge.edge.store import SqliteStore
from iotedge.edge.store.aio import AsyncEdgeStore

MODULES = ("aio", "choose", "connection", "events", "readings", "records", "schema", "sqlite", "summaries")


def test_all_names_exist_once() -> None:
    """Every exported name resolves, and the list has no duplicates."""
    assert len(set(store_package.__all__)) == len(store_package.__all__)
    for name in store_package.__all__:
        assert getattr(store_package, name) is not None, name


def test_submodules_export_only_what_they_define() -> None:
    """Each module's ``__all__`` names resolve in that module."""
    for module in MODULES:
        mod = importlib.import_module(f"iotedge.edge.store.{module}")
        missing = [name for name in mod.__all__ if not hasattr(mod, name)]
        assert missing == [], (module, missing)


def test_the_sqlite_backend_has_every_method_of_the_interface(tmp_path: Path) -> None:
    """Nothing the rest of the edge calls is missing from the backend (mypy checks the signatures)."""
    wanted = {name for name in vars(AsyncEdgeStore) if not name.startswith("_")}
    store = SqliteStore(tmp_path / "s.sqlite3")
    assert {name for name in wanted if not hasattr(store, name)} == set()
    store.close()
