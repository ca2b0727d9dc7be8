"""The edge as a real process polling a real simulator: values, statistics, scope, errors."""

import time
from typing import Any

import httpx
import pytest

from iotedge.edge.stats import summarise
from iotedge.sim.fleet import Fleet
from tests.conftest import KEYS, Stack, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = Fleet(seed=11, clients=20, interval_s=1, anomaly_rate=0.6, anomaly_slot_s=30)
CLIENT_OBJECTS = {"client_1": {"device_1", "device_2"}, "client_2": {"device_3", "device_4"}}


def _closed_window(stack: Stack, seconds: float = 90) -> dict[str, Any]:
    """A window that ended two seconds ago, so no reading arrives in it while we compare.

    It waits until device_1..3 each have five readings in it: a slow machine polls less
    often than the clock suggests, so the wait is on the data, not on elapsed time.
    """

    def closed() -> dict[str, Any]:
        until = time.time() - 2
        return {"from": str(until - seconds), "to": str(until)}

    def stocked() -> bool:
        window = closed()
        return all(
            len(stack.get(f"/objects/{object_id}/readings", client="*", **window).json()["points"]) >= 5
            for object_id in ("device_1", "device_2", "device_3")
        )

    wait_for(stocked, 60, "five readings of device_1..3 in a closed window")
    return closed()


def test_stored_values_are_the_simulators(stack: Stack) -> None:
    """Every stored reading equals the deterministic model's value at its timestamp."""
    window = _closed_window(stack)
    for object_id in ("device_1", "device_2", "device_3"):
        body = stack.get(f"/objects/{object_id}/readings", client="*", **window).json()
        obj = MODEL.by_id[object_id]
        assert len(body["points"]) >= 5
        for point in body["points"]:
            assert point["value"] == MODEL.value(obj, body["metric"], point["timestamp"] / 1000)


def test_processed_data_statistics_match_the_readings(stack: Stack) -> None:
    """/processed_data statistics equal a reference computed from the same readings."""
    window = _closed_window(stack)
    points = stack.get("/objects/device_1/readings", **window).json()["points"]
    expected = summarise([p["value"] for p in points])
    body = stack.get("/processed_data", object_id="device_1", **window).json()
    stats = body["statistics"]
    assert body["metric"] == "temperature"
    assert stats["count"] == expected.count
    assert stats["average"] == pytest.approx(expected.average, abs=1e-4)
    assert (stats["min"], stats["max"], stats["last"]) == (expected.min, expected.max, expected.last)
    assert set(body["metrics"]) == {"temperature", "battery_level"}
    assert body["stale"] is False
    assert body["edge_id"] == "test-edge"


def test_client_statistics_are_per_metric(stack: Stack) -> None:
    """client_1's humidity statistics come from device_2's humidity readings only."""
    window = _closed_window(stack)
    humidity = [p["value"] for p in stack.get("/objects/device_2/readings", **window).json()["points"]]
    body = stack.get("/client_statistics", client_id="client_1", **window).json()
    assert set(body["metrics"]) == {"temperature", "humidity", "battery_level"}
    assert body["metrics"]["humidity"]["average"] == pytest.approx(summarise(humidity).average, abs=1e-4)
    assert body["metrics"]["humidity"]["objects"] == 1
    assert body["metrics"]["battery_level"]["objects"] == 2
    assert {o["object_id"] for o in body["objects"]} == CLIENT_OBJECTS["client_1"]


def test_down_sampled_series(stack: Stack) -> None:
    """With step, points are ascending buckets in epoch milliseconds with min <= avg <= max."""
    window = _closed_window(stack)
    points = stack.get("/objects/device_4/readings", client="client_2", step="10", **window).json()["points"]
    assert points
    times = [p["timestamp"] for p in points]
    assert times == sorted(times)
    assert all(p["min"] <= p["value"] <= p["max"] for p in points)
    assert times[0] > 1_000_000_000_000


@pytest.mark.parametrize("client", ["client_1", "client_2"])
def test_a_client_never_sees_another_clients_data(stack: Stack, client: str) -> None:
    """Lists hold only the key's objects; every foreign object or client is a 404."""
    mine = CLIENT_OBJECTS[client]
    foreign_objects = [f"device_{i}" for i in range(1, 41) if f"device_{i}" not in mine]
    foreign_clients = [f"client_{i}" for i in range(1, 21) if f"client_{i}" != client]
    assert {o["id"] for o in stack.get("/objects", client=client).json()["objects"]} == mine
    assert {a["client"] for a in stack.get("/anomalies", client=client, limit=1000).json()["anomalies"]} <= {
        client
    }
    assert [c["client_id"] for c in stack.get("/client_statistics", client=client).json()["clients"]] == [
        client
    ]
    for object_id in foreign_objects:
        for path, params in (
            ("/processed_data", {"object_id": object_id}),
            (f"/objects/{object_id}", {}),
            (f"/objects/{object_id}/readings", {}),
        ):
            response = stack.get(path, client=client, **params)
            assert response.status_code == 404, path
            assert response.json() == {"error": "Object not found"}
        assert stack.get("/anomalies", client=client, object_id=object_id).json()["anomalies"] == []
    for other in foreign_clients:
        for path in ("/client_statistics", "/objects", "/anomalies"):
            response = stack.get(path, client=client, client_id=other)
            assert response.status_code == 404
            assert response.json() == {"error": "Client not found"}
    unknown = stack.get("/processed_data", client=client, object_id="device_999")
    assert unknown.json() == {"error": "Object not found"}


def test_cloud_key_sees_every_client(stack: Stack) -> None:
    """The '*' key lists all six objects and all three clients."""
    assert stack.get("/objects", client="*").json()["count"] == 40
    clients = [c["client_id"] for c in stack.get("/client_statistics", client="*").json()["clients"]]
    assert sorted(clients) == sorted(f"client_{i}" for i in range(1, 21))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": ""},
        {"x-api-key": "wrong"},
        {"x-api-key": KEYS["client_1"] + "x"},
        {"X-API-KEY": "é".encode("latin-1")},
    ],
    ids=["missing", "empty", "unknown", "near-miss", "non-ascii"],
)
@pytest.mark.parametrize(
    "path", ["/processed_data?object_id=device_1", "/objects", "/anomalies", "/client_statistics"]
)
def test_no_valid_key_is_401_with_the_course_body(stack: Stack, path: str, headers: dict[str, Any]) -> None:
    """Missing or bad keys get 401 and exactly {"error": "Unauthorized"}."""
    response = httpx.get(stack.edge.url + path, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/processed_data", {}, "object_id"),
        ("/processed_data", {"object_id": "device_1", "window": "soon"}, "window"),
        ("/processed_data", {"object_id": "device_1", "window": "90d"}, "window"),
        ("/processed_data", {"object_id": "device_1", "from": "2030-01-01", "to": "2029-01-01"}, "from"),
        ("/processed_data", {"object_id": "device_1", "to": "nan"}, "to"),
        ("/processed_data", {"object_id": "device_1", "metric": "humidity"}, "metric"),
        ("/objects/device_1/readings", {"limit": "0"}, "limit"),
        ("/objects/device_1/readings", {"step": "-5"}, "step"),
        ("/objects/device_1/readings", {"step": "0.001", "window": "7d"}, "step"),
        ("/anomalies", {"state": "maybe"}, "state"),
        ("/anomalies", {"from": "last week"}, "from"),
    ],
)
def test_bad_parameters_are_422_naming_the_parameter(
    stack: Stack, path: str, params: dict[str, str], parameter: str
) -> None:
    """Invalid parameters give 422 with a JSON body naming the parameter."""
    response = stack.get(path, **params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["parameter"] == parameter


def test_health_and_docs(stack: Stack) -> None:
    """/healthz needs no key; /readyz reports its checks; /docs and the OpenAPI schema are served."""
    assert httpx.get(stack.edge.url + "/healthz").json()["status"] == "ok"
    ready = httpx.get(stack.edge.url + "/readyz").json()
    assert ready["checks"]["store"]["ok"] is True
    assert httpx.get(stack.edge.url + "/docs").status_code == 200
    schema = httpx.get(stack.edge.url + "/openapi.json").json()
    assert {"/processed_data", "/client_statistics", "/objects", "/anomalies"} <= set(schema["paths"])


def _overlaps(event_start: float, truth: dict[str, Any], slack: float) -> bool:
    return bool(truth["start"] - 1 <= event_start <= truth["end"] + slack)


def test_injected_anomalies_are_detected(stack: Stack) -> None:
    """Precision and recall of detection against the simulator's ground truth are both >= 0.8."""
    wait_for(lambda: time.time() - stack.started_at > 40, 45, "forty seconds of polling")
    begin, end = stack.started_at + 3, time.time() - 8
    truth = httpx.get(stack.sim.url + "/_sim/anomalies", params={"since": begin, "until": end}).json()[
        "anomalies"
    ]
    everything = truth
    # What the rules can see at all: a stuck value must last the stuck rule's 8 readings, a
    # missing metric longer than the offline rule's limit (3 device periods + 1 poll). Both
    # are counted in polls that really happened: 1 s buckets here, but a loaded machine
    # polls less often, and then only longer anomalies are visible to any rule.
    polled = stack.get(
        "/objects/device_1/readings",
        client="*",
        metric="temperature",
        limit=10000,
        **{"from": begin, "to": end},
    ).json()["points"]
    period = max(1.0, (end - begin) / max(len(polled), 1))
    too_short = {"stuck": 8 * period + 1, "missing": 4 * period + 1}
    truth = [
        t
        for t in truth
        if t["start"] >= begin and t["end"] <= end and t["end"] - t["start"] >= too_short.get(t["kind"], 0)
    ]
    # An event opens when a rule sees it, up to a poll or two after the anomaly (an offline
    # event once the silence outlived its limit): a detection within that slack after the
    # window still counts, on a loaded machine whose polls come late too.
    slack = 6.0 + 2 * period
    events = stack.get("/anomalies", client="*", limit=10000).json()["anomalies"]
    events = [e for e in events if begin <= e["started_at_ms"] / 1000 <= end + slack]
    assert truth, f"the schedule injected nothing in [{begin}, {end}]: {everything}"
    found = [
        t
        for t in truth
        if any(
            e["object_id"] == t["object_id"] and _overlaps(e["started_at_ms"] / 1000, t, slack)
            for e in events
        )
    ]
    around = {"since": begin - 30, "until": end + 30}
    wider = httpx.get(stack.sim.url + "/_sim/anomalies", params=around).json()["anomalies"]
    true_events = [e for e in events if any(
        e["object_id"] == t["object_id"] and _overlaps(e["started_at_ms"] / 1000, t, slack) for t in wider
    )]  # fmt: skip
    recall = len(found) / len(truth)
    precision = len(true_events) / len(events) if events else 0.0
    print(f"\nanomaly detection: {len(truth)} injected, {len(events)} detected, "  # noqa: T201
          f"recall {recall:.2f}, precision {precision:.2f}")  # fmt: skip
    assert recall >= 0.8, [t for t in truth if t not in found]
    assert precision >= 0.8, [e["message"] for e in events if e not in true_events]
