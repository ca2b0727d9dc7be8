"""A device that changes owner takes none of its history along, in either direction (finding 4).

The simulator's catalogue follows its flags: with 3 clients of 2 objects device_3 belongs to
client_2, with 2 clients of 3 objects to client_1. One edge store sees device_3 move from
client_2 to client_1 and back, each move an edge restart against the other catalogue.
"""

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.procs import Proc, start_iotedge

pytestmark = pytest.mark.integration

CATALOGUES = {
    "client_2": ["--clients", "3", "--objects-per-client", "2"],
    "client_1": ["--clients", "2", "--objects-per-client", "3"],
}
WINDOW = {"from": str(time.time() - 3600), "to": str(time.time() + 3600)}


@contextlib.contextmanager
def _edge_with_owner(owner: str, data_dir: Path, logs_dir: Path) -> Iterator[Proc]:
    """A simulator whose catalogue gives device_3 to ``owner``, and the edge on ``data_dir``."""
    sim_args = ["sim", "--interval", "1", "--anomaly-rate", "0", *CATALOGUES[owner]]
    with (
        start_iotedge(sim_args, log_dir=logs_dir) as sim,
        start_iotedge(edge_args(sim.url, data_dir), log_dir=logs_dir, env=edge_env()) as edge,
    ):
        yield edge


def _points(edge: Proc, client: str) -> list[float] | None:
    """Reading times of device_3 that ``client`` sees (None: the device is not theirs)."""
    answer = httpx.get(
        edge.url + "/objects/device_3/readings",
        params={**WINDOW, "metric": "activity_level"},
        headers={"x-api-key": KEYS[client]},
    )
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return [p["timestamp"] / 1000 for p in answer.json()["points"]]


def _processed(edge: Proc, client: str) -> dict[str, Any]:
    answer = httpx.get(
        edge.url + "/processed_data",
        params={"object_id": "device_3", **WINDOW},
        headers={"x-api-key": KEYS[client]},
    )
    body: dict[str, Any] = answer.json()
    return body


def test_history_stays_with_the_owner_of_the_time(tmp_path: Path, logs_dir: Path) -> None:
    """client_1 never sees client_2's readings of device_3, and client_2 never sees client_1's."""
    with _edge_with_owner("client_2", tmp_path, logs_dir) as edge:
        wait_for(lambda: len(_points(edge, "client_2") or []) >= 3, 30, "client_2 readings of device_3")
        assert _points(edge, "client_1") is None
    first_move = time.time()

    with _edge_with_owner("client_1", tmp_path, logs_dir) as edge:
        assert _points(edge, "client_2") is None  # no longer theirs
        wait_for(lambda: len(_points(edge, "client_1") or []) >= 3, 30, "client_1 readings of device_3")
        mine = _points(edge, "client_1") or []
        assert min(mine) >= first_move - 1.0, "client_1 sees readings from before it owned device_3"
        stats = _processed(edge, "client_1")
        assert stats["statistics"]["count"] <= len(_points(edge, "client_1") or [])  # only its own readings
        assert stats["anomalies"] == {"open": 0, "total": 0}
    second_move = time.time()

    with _edge_with_owner("client_2", tmp_path, logs_dir) as edge:
        wait_for(
            lambda: max(_points(edge, "client_2") or [0.0]) >= second_move - 1.0, 30, "new client_2 readings"
        )
        theirs = _points(edge, "client_2") or []
        during_client_1 = [ts for ts in theirs if first_move <= ts < second_move - 1.0]
        assert during_client_1 == [], "client_2 sees readings taken while client_1 owned device_3"
        assert min(theirs) < first_move  # its own old history is back
