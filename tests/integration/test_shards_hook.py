"""The collector polls only the clients its ShardOwnership owns, and refreshes it every cycle."""

import warnings
from pathlib import Path

import pytest

from iotedge.config import load_edge_settings
from iotedge.edge.app import create_app
from tests.procs import Proc

with warnings.catch_warnings():  # starlette suggests another httpx package; this one does the job
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.integration


class OnlyClient:
    """Owns one client; counts its refreshes."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.refreshes = 0

    def owns(self, client: str) -> bool:
        return client == self.client

    async def refresh(self) -> None:
        self.refreshes += 1


def test_the_collector_polls_only_owned_clients(sim: Proc, tmp_path: Path) -> None:
    """Two cycles against the real simulator (3 clients): only client_2's readings are stored."""
    shards = OnlyClient("client_2")
    settings = load_edge_settings({}, upstream=sim.url, data_dir=tmp_path, metrics_port=0)
    with TestClient(create_app(settings, run_collector=False, shards=shards)) as client:
        ctx = client.app.state.ctx  # type: ignore[attr-defined]
        portal = client.portal
        assert portal is not None
        for _ in range(2):
            report = portal.call(ctx.collector.refresh)
            assert report.ok, report
        assert shards.refreshes == 2
        stored = ctx.store.sync.latest()
        assert stored, "nothing stored"
        assert {client_id for _, client_id, _, _, _ in stored} == {"client_2"}
        # Every client stays in the catalogue; only the polling is sharded.
        assert {entry.client for entry in ctx.collector.catalogue.values()} == {
            "client_1",
            "client_2",
            "client_3",
        }
