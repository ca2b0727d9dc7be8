"""The statistics bodies sent without model validation equal their response models' round trip."""

import time
from typing import Any

import pytest
from pydantic import BaseModel

from iotedge.edge.api.models import ClientsStatisticsOut, ClientStatisticsOut, ProcessedDataOut
from tests.conftest import Stack, wait_for

pytestmark = pytest.mark.integration

SIM_CLIENTS = 3


def _round_trip(model: type[BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    return model.model_validate(body).model_dump(mode="json", by_alias=True)


@pytest.fixture(scope="module")
def polled(stack: Stack) -> Stack:
    """The stack once device_1 has readings."""
    wait_for(lambda: stack.get("/processed_data", object_id="device_1").status_code == 200, 20, "readings")
    return stack


@pytest.mark.parametrize(
    ("path", "client", "params", "model"),
    [
        pytest.param(
            "/processed_data", "client_1", {"object_id": "device_1"}, ProcessedDataOut, id="processed"
        ),
        pytest.param(
            "/processed_data",
            "client_1",
            {"object_id": "device_2", "metric": "battery_level", "window": "10m"},
            ProcessedDataOut,
            id="processed-other-metric",
        ),
        pytest.param(
            "/client_statistics", "client_1", {"client_id": "client_1"}, ClientStatisticsOut, id="one-client"
        ),
        pytest.param("/client_statistics", "*", {}, ClientsStatisticsOut, id="every-client"),
    ],
)
def test_body_is_what_its_model_would_send(
    polled: Stack, path: str, client: str, params: dict[str, str], model: type[BaseModel]
) -> None:
    """Same keys, same values (21 == 21.0), JSON content type: the model only documents the body."""
    response = polled.get(path, client=client, **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == _round_trip(model, body)


def test_empty_window_keeps_its_nulls(polled: Stack) -> None:
    """A window before any reading gives count 0 and null statistics, as the model says."""
    until = time.time() - 86400
    body = polled.get("/processed_data", object_id="device_1", **{"from": str(until - 60), "to": str(until)})
    assert body.status_code == 200, body.text
    stats = body.json()["statistics"]
    assert stats["count"] == 0
    assert stats["average"] is None
    assert body.json() == _round_trip(ProcessedDataOut, body.json())
