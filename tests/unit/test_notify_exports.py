"""The notify package's public surface is what ``__all__`` says."""

import importlib

import iotedge.edge.notify as notify


def test_all_names_exist_once() -> None:
    """Every exported name resolves, and the list has no duplicates."""
    assert len(set(notify.__all__)) == len(notify.__all__)
    for name in notify.__all__:
        assert getattr(notify, name) is not None, name


def test_submodules_export_only_what_they_define() -> None:
    """Each module's ``__all__`` names resolve in that module."""
    for module in (
        "backend",
        "base",
        "channels",
        "drainer",
        "mail",
        "message",
        "noise",
        "state",
        "webhook",
    ):
        mod = importlib.import_module(f"iotedge.edge.notify.{module}")
        missing = [name for name in mod.__all__ if not hasattr(mod, name)]
        assert missing == [], (module, missing)
    for module in ("iotedge.config_notify",):  # the notification settings live in the settings tree
        mod = importlib.import_module(module)
        missing = [name for name in mod.__all__ if not hasattr(mod, name)]
        assert missing == [], (module, missing)
