"""The Grafana JSON data source protocol against a real edge fed by a real simulator.

Bodies are the ones Simple JSON and simPod JSON send, Grafana's internal fields included.
"""

import itertools
import json
import math
import time
from collections import defaultdict
from typing import Any

import httpx
import pytest

from tests.conftest import KEYS, Stack, wait_for
from tests.grafana_plugins import SIMPLE_JSON, SIMPOD_JSON, iso_ms, post, query_body, time_range

pytestmark = pytest.mark.integration

SIM_CLIENTS = 5  # the `stack` fleet: client_1..client_5, device_1..device_10
OWN = {"client_1": {"device_1", "device_2"}, "client_2": {"device_3", "device_4"}}
HUMIDITY_SENSORS = {"device_2", "device_5", "device_8"}


def _window(stack: Stack, seconds: int = 90) -> tuple[float, float]:
    """A closed window of whole seconds (a multiple of 5 long) that ended two seconds ago.

    It waits until the window holds readings in at least four 5-second buckets, so a
    slow machine (fewer polls than the clock suggests) waits longer instead of failing.
    """

    def closed() -> tuple[float, float]:
        until = float(int(time.time()) - 2)
        return until - seconds, until

    def stocked() -> bool:
        since, until = closed()
        points = _raw(stack, "device_1", "temperature", since, until)
        return len(_buckets(points, since, 5.0)) >= 4

    wait_for(stocked, 60, "readings in four 5-second buckets")
    return closed()


def _query(stack: Stack, body: dict[str, Any], client: str = "client_1") -> list[dict[str, Any]]:
    response = post(stack.edge.url, "/query", KEYS[client], body)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def _raw(stack: Stack, object_id: str, metric: str, since: float, until: float) -> list[dict[str, Any]]:
    params = {"metric": metric, "from": str(since), "to": str(until), "limit": "10000"}
    points: list[dict[str, Any]] = stack.get(f"/objects/{object_id}/readings", client="*", **params).json()[
        "points"
    ]
    return points


def _buckets(points: list[dict[str, Any]], since: float, step: float) -> dict[int, list[float]]:
    """Raw values grouped like the edge's grid: multiples of ``step``, the first stamped at ``since``."""
    origin = math.floor(since / step) * step
    grouped: dict[int, list[float]] = defaultdict(list)
    for point in points:
        start = origin + math.floor((point["timestamp"] / 1000 - origin) / step) * step
        grouped[round(max(start, since) * 1000)].append(point["value"])
    return grouped


def test_root_is_the_connection_test(stack: Stack) -> None:
    """GET / is 200 without a key and with a valid one (naming its client), 401 with a wrong one."""
    anonymous = httpx.get(stack.edge.url + "/")
    assert anonymous.status_code == 200
    assert {"message", "hint"} <= set(anonymous.json())
    keyed = httpx.get(stack.edge.url + "/", headers={"x-api-key": KEYS["client_2"]})
    assert keyed.status_code == 200 and keyed.json()["client"] == "client_2"
    wrong = httpx.get(stack.edge.url + "/", headers={"x-api-key": KEYS["client_2"] + "x"})
    assert wrong.status_code == 401 and wrong.json() == {"error": "Unauthorized"}


def test_timeserie_buckets_are_averages_in_ms_ascending(stack: Stack) -> None:
    """device_1.temperature: [value, ms] pairs, ascending, in range, each the mean of its bucket."""
    since, until = _window(stack)
    target = {"refId": "A", "target": "device_1.temperature", "type": "timeserie"}
    body = query_body(SIMPLE_JSON, [target], since, until, interval_ms=5000, max_points=100)
    [series] = _query(stack, body)
    assert series["target"] == "device_1.temperature" and series["refId"] == "A"
    times = [t for _, t in series["datapoints"]]
    assert times == sorted(times) and len(times) <= 100
    assert all(isinstance(t, int) and since * 1000 <= t <= until * 1000 for t in times)
    expected = _buckets(_raw(stack, "device_1", "temperature", since, until), since, 5.0)
    assert len(series["datapoints"]) == len(expected) >= 3
    for value, stamp in series["datapoints"]:
        assert value == pytest.approx(sum(expected[stamp]) / len(expected[stamp]), abs=1e-9)


def test_client_aggregates_and_min_max_count(stack: Stack) -> None:
    """client_1.battery_level[.min|.max|.count] aggregate device_1 and device_2 per bucket."""
    since, until = _window(stack)
    targets = [
        {"refId": r, "target": f"client_1.battery_level{suffix}"}
        for r, suffix in (("A", ""), ("B", ".min"), ("C", ".max"), ("D", ".count"))
    ]
    result = _query(stack, query_body(SIMPLE_JSON, targets, since, until, interval_ms=10_000))
    assert [s["target"] for s in result] == [
        "client_1.battery_level",
        "client_1.battery_level.min",
        "client_1.battery_level.max",
        "client_1.battery_level.count",
    ]
    raw = _raw(stack, "device_1", "battery_level", since, until) + _raw(
        stack, "device_2", "battery_level", since, until
    )
    expected = _buckets(raw, since, 10.0)
    avg, low, high, count = ({t: v for v, t in s["datapoints"]} for s in result)
    assert set(avg) == set(expected)
    for stamp, values in expected.items():
        assert avg[stamp] == pytest.approx(sum(values) / len(values))
        assert (low[stamp], high[stamp], count[stamp]) == (min(values), max(values), len(values))


def test_max_data_points_caps_the_buckets(stack: Stack) -> None:
    """With maxDataPoints 5 and a tiny intervalMs, a series has at most 5 points."""
    since, until = _window(stack)
    body = query_body(
        SIMPLE_JSON,
        [{"refId": "A", "target": "device_2.humidity"}],
        since,
        until,
        interval_ms=1,
        max_points=5,
    )
    [series] = _query(stack, body)
    assert 1 <= len(series["datapoints"]) <= 5


def test_course_tables(stack: Stack) -> None:
    """processed_data and client_statistics as tables: the REST API's numbers, positional rows."""
    since, until = _window(stack)
    targets = [
        {"refId": "A", "target": "processed_data?object_id=device_1", "type": "table"},
        {"refId": "B", "target": "client_statistics?client_id=client_1", "type": "table"},
    ]
    processed, clients = _query(stack, query_body(SIMPLE_JSON, targets, since, until))
    for table in (processed, clients):
        assert table["type"] == "table"
        assert all(len(row) == len(table["columns"]) for row in table["rows"])
    names = [c["text"] for c in processed["columns"]]
    assert {"object_id", "metric", "average", "min", "max", "last", "count"} <= set(names)
    assert {c["text"]: c["type"] for c in processed["columns"]}["last_reading_at_ms"] == "time"
    rows = {row[names.index("metric")]: dict(zip(names, row, strict=True)) for row in processed["rows"]}
    rest = stack.get("/processed_data", object_id="device_1", **{"from": str(since), "to": str(until)}).json()
    assert set(rows) == {"temperature", "battery_level"}
    assert rows["temperature"]["average"] == rest["statistics"]["average"]
    assert rows["temperature"]["count"] == rest["statistics"]["count"]
    client_names = [c["text"] for c in clients["columns"]]
    metrics = [row[client_names.index("metric")] for row in clients["rows"]]
    assert metrics == ["temperature", "humidity", "battery_level"]


def test_series_target_as_table(stack: Stack) -> None:
    """A series target with type table gives one table: Time (ms), series, value, min, max, count."""
    since, until = _window(stack)
    body = query_body(
        SIMPLE_JSON, [{"refId": "A", "target": "device_4.temperature", "type": "table"}], since, until
    )
    [table] = _query(stack, body, client="client_2")
    assert [c["text"] for c in table["columns"]] == ["Time", "series", "value", "min", "max", "count"]
    times = [row[0] for row in table["rows"]]
    assert times and times == sorted(times) and all(isinstance(t, int) for t in times)
    assert all(row[3] <= row[2] <= row[4] for row in table["rows"])


def test_simpod_payloads_and_builder_target(stack: Stack) -> None:
    """simPod sends payload (object or JSON text), no type, filters: tables and 'series' work."""
    since, until = _window(stack)
    targets: list[dict[str, Any]] = [
        {
            "refId": "A",
            "target": "processed_data",
            "payload": {"object_id": "device_1"},
            "editorMode": "builder",
        },
        {
            "refId": "B",
            "target": "series",
            "payload": {"client_id": "client_1", "metric": "humidity", "agg": "max"},
        },
        {
            "refId": "C",
            "target": "processed_data",
            "payload": '{"object_id": "device_2", "metric": "humidity"}',
        },
    ]
    table_a, series_b, table_c = _query(stack, query_body(SIMPOD_JSON, targets, since, until))
    assert table_a["refId"] == "A" and len(table_a["rows"]) == 2
    assert series_b["target"] == "client_1.humidity.max" and series_b["datapoints"]
    metric_column = [c["text"] for c in table_c["columns"]].index("metric")
    assert [row[metric_column] for row in table_c["rows"]] == ["humidity"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (
            [{"key": "type", "operator": "=", "value": "humidity_sensor"}],
            {f"{o}.{m}" for o in HUMIDITY_SENSORS for m in ("humidity", "battery_level")},
        ),
        (
            [
                {"key": "type", "operator": "=", "value": "humidity_sensor"},
                {"key": "metric", "operator": "!=", "value": "battery_level"},
            ],
            {f"{o}.humidity" for o in HUMIDITY_SENSORS},
        ),
        (
            [{"key": "object", "operator": "=~", "value": "device_(2|5)"}],
            {"device_2.humidity", "device_5.humidity"},
        ),
        (
            [{"key": "client", "operator": "=|", "value": "", "values": ["client_1", "client_2"]}],
            {"device_2.humidity"},
        ),
    ],
    ids=["type", "type-and-metric", "object-regex", "client-one-of"],
)
def test_adhoc_filters_narrow_series(stack: Stack, filters: list[dict[str, Any]], expected: set[str]) -> None:
    """Ad-hoc filters on type, metric, object and client pick the matching series only."""
    since, until = _window(stack)
    target = "*" if len(expected) > 2 else "*.humidity"
    body = query_body(SIMPLE_JSON, [{"refId": "A", "target": target}], since, until, filters=filters)
    assert {s["target"] for s in _query(stack, body, client="*")} == expected


def test_adhoc_filters_narrow_tables(stack: Stack) -> None:
    """A client filter keeps only that client's rows of client_statistics (simPod's 'filters')."""
    since, until = _window(stack)
    filters = [{"key": "client", "operator": "=", "value": "client_2"}]
    body = query_body(
        SIMPOD_JSON, [{"refId": "A", "target": "client_statistics"}], since, until, filters=filters
    )
    [table] = _query(stack, body, client="*")
    column = [c["text"] for c in table["columns"]].index("client_id")
    assert table["rows"] and {row[column] for row in table["rows"]} == {"client_2"}


def _wait_for_anomalies(stack: Stack) -> list[dict[str, Any]]:
    def found() -> bool:
        events = stack.get("/anomalies", client="*", limit=1000).json()["anomalies"]
        return any(event["client"] in KEYS for event in events)

    wait_for(found, 60, "an anomaly event on a client the tests hold a key for")
    events: list[dict[str, Any]] = stack.get("/anomalies", client="*", limit=1000).json()["anomalies"]
    return events


def _annotations(stack: Stack, client: str, query: str) -> list[dict[str, Any]]:
    # From before the history backfill (an hour of minute points), so every event counts.
    since, until = stack.started_at - 3900, time.time() + 1
    annotation = {
        "name": "Anomalies",
        "datasource": "Edge",
        "enable": True,
        "iconColor": "red",
        "query": query,
    }
    body = {
        "range": time_range(since, until),
        "rangeRaw": {"from": "now-1h", "to": "now"},
        "annotation": annotation,
    }
    response = post(stack.edge.url, "/annotations", KEYS[client], {**body, "variables": {}})
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def test_annotations_are_anomaly_events_in_scope(stack: Stack) -> None:
    """Anomalies come back as annotations (ms times, title, text, tags); scoped; the query narrows."""
    events = _wait_for_anomalies(stack)
    everything = _annotations(stack, "*", "")
    assert len(everything) >= 1
    for event in everything:
        assert isinstance(event["time"], int) and event["time"] > 1_000_000_000_000
        assert event["title"] and event["text"] and isinstance(event["tags"], list)
        assert event["annotation"]["name"] == "Anomalies"
        assert event.get("timeEnd", event["time"]) >= event["time"]
    keyed = [e for e in events if e["client"] in KEYS]
    assert keyed, "no anomaly on a client the tests hold a key for"
    target = keyed[0]["object_id"]
    narrowed = _annotations(stack, "*", target)
    assert narrowed and all(target in event["tags"] for event in narrowed)
    owner = keyed[0]["client"]
    mine = _annotations(stack, owner, "")
    assert mine and all(owner in event["tags"] for event in mine)
    other = next(c for c in ("client_1", "client_2", "client_3") if c != owner)
    assert all(owner not in event["tags"] for event in _annotations(stack, other, target))


def test_anomalies_table_for_simpod_annotations(stack: Stack) -> None:
    """The anomalies table has time/timeEnd/title/text/tags columns, as Grafana annotations want."""
    _wait_for_anomalies(stack)
    # From before the history backfill, like _annotations: the event found may be a backfilled one.
    body = query_body(
        SIMPOD_JSON, [{"refId": "A", "target": "anomalies"}], stack.started_at - 3900, time.time() + 1
    )
    [table] = _query(stack, body, client="*")
    columns = {c["text"]: c["type"] for c in table["columns"]}
    assert {
        "time": "time",
        "timeEnd": "time",
        "title": "string",
        "text": "string",
        "tags": "string",
    }.items() <= columns.items()
    assert table["rows"]


def test_tag_keys_and_values_are_scoped(stack: Stack) -> None:
    """Tag keys are client/object/metric/type; a client key sees only its own values."""
    keys = post(stack.edge.url, "/tag-keys", KEYS["client_1"], {}).json()
    assert [k["text"] for k in keys] == ["client", "object", "metric", "type"]
    objects = post(stack.edge.url, "/tag-values", KEYS["client_1"], {"key": "object"}).json()
    assert {v["text"] for v in objects} == OWN["client_1"]
    clients = post(stack.edge.url, "/tag-values", KEYS["*"], {"key": "client_id"}).json()
    assert len(clients) == 5
    assert post(stack.edge.url, "/tag-values", KEYS["*"], {"key": "colour"}).json() == []


def test_search_and_variables_are_scoped(stack: Stack) -> None:
    """/search lists the key's targets and answers finder queries; simPod /variable too."""
    listed = post(stack.edge.url, "/search", KEYS["client_1"], {"target": "", "type": "timeseries"}).json()
    assert "device_1.temperature" in listed and "client_1.humidity" in listed
    assert not [t for t in listed if "device_3" in t or "client_2" in t]
    found = post(
        stack.edge.url, "/search", KEYS["*"], {"target": "objects?client_id=(client_1|client_2)"}
    ).json()
    assert set(found) == OWN["client_1"] | OWN["client_2"]
    assert (
        post(stack.edge.url, "/search", KEYS["client_1"], {"target": "objects?client_id=client_2"}).json()
        == []
    )
    options = post(
        stack.edge.url, "/variable", KEYS["client_2"], {"payload": {"target": "objects"}, "range": None}
    )
    assert {o["__value"] for o in options.json()} == OWN["client_2"]
    raw = post(stack.edge.url, "/variable", KEYS["*"], {"payload": "clients"}).json()
    assert [o["__text"] for o in raw] == [f"client_{i}" for i in range(1, 6)]


def test_simpod_builder_endpoints(stack: Stack) -> None:
    """/metrics lists builder targets with payloads; /metric-payload-options fills the selects."""
    metrics = post(stack.edge.url, "/metrics", KEYS["client_1"], {"metric": "", "payload": {}}).json()
    assert {"series", "processed_data", "client_statistics", "anomalies"} <= {m["value"] for m in metrics}
    assert all(m["payloads"] and all(p["name"] for p in m["payloads"]) for m in metrics)
    body = {"metric": "series", "payload": {}, "name": "object_id"}
    objects = post(stack.edge.url, "/metric-payload-options", KEYS["client_1"], body).json()
    assert {o["value"] for o in objects} == OWN["client_1"]
    body = {"metric": "series", "payload": {"object_id": "device_2"}, "name": "metric"}
    assert [
        o["value"] for o in post(stack.edge.url, "/metric-payload-options", KEYS["client_1"], body).json()
    ] == [
        "humidity",
        "battery_level",
    ]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/query",
            {"range": {"from": "2030-01-02T00:00:00.000Z", "to": "2030-01-01T00:00:00.000Z"}, "targets": []},
        ),
        ("/query", {"range": {"from": "yesterday", "to": "2030-01-01T00:00:00.000Z"}, "targets": []}),
        ("/query", {"range": {"from": {"x": 1}, "to": "2030-01-01T00:00:00.000Z"}, "targets": []}),
        ("/query", {"range": {"from": "2030-01-01T00:00:00.000Z"}, "targets": []}),
        ("/query", {"range": {"from": "nan", "to": "inf"}, "targets": []}),
        ("/query", {"intervalMs": -5, "targets": []}),
        ("/query", {"targets": "device_1.temperature"}),
        ("/query", {"targets": [], "adhocFilters": [{"key": "object", "operator": "<>", "value": "x"}]}),
        ("/query", {"targets": [], "adhocFilters": [{"key": "object", "operator": "=~", "value": "("}]}),
        ("/query", [{"target": "device_1.temperature"}]),
        ("/annotations", {"range": {"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}}),
        ("/query", {"targets": [{"target": "anomalies?limit=0"}]}),
        ("/query", {"targets": [{"target": "statistics?by=colour"}]}),
    ],
    ids=[
        "from-after-to",
        "unreadable",
        "object",
        "missing-to",
        "not-finite",
        "negative-interval",
        "targets-not-a-list",
        "unknown-operator",
        "bad-regex",
        "not-an-object",
        "annotation-range",
        "bad-limit",
        "bad-grouping",
    ],
)
def test_bad_requests_are_422_json(stack: Stack, path: str, body: Any) -> None:
    """Bad ranges, filters and parameters get 422 with a JSON error body, never a 500."""
    response = post(stack.edge.url, path, KEYS["*"], body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] and response.json()["detail"]


@pytest.mark.parametrize(
    "target",
    [
        "nope.temperature",
        "device_999.temperature",
        "device_1.pressure",
        "select metric",
        "foo?x=1",
        "client_9.humidity",
    ],
)
def test_unknown_targets_give_an_empty_result(stack: Stack, target: str) -> None:
    """A target that names nothing (or nothing visible) answers [] with 200."""
    since, until = _window(stack)
    assert _query(stack, query_body(SIMPLE_JSON, [{"refId": "A", "target": target}], since, until), "*") == []


def test_hidden_and_empty_targets_are_skipped(stack: Stack) -> None:
    """Hidden targets and targets without text give no element."""
    since, until = _window(stack)
    targets: list[dict[str, Any]] = [
        {"refId": "A", "target": "device_1.temperature", "hide": True},
        {"refId": "B"},
        {"refId": "C", "target": ""},
    ]
    assert _query(stack, query_body(SIMPLE_JSON, targets, since, until)) == []


def test_a_client_key_sees_only_its_clients_data(stack: Stack) -> None:
    """client_1: foreign objects and clients are empty; '*' and tables hold only client_1's."""
    since, until = _window(stack)
    targets = [
        {"refId": "A", "target": "device_3.temperature"},
        {"refId": "B", "target": "client_2.humidity"},
        {"refId": "C", "target": "processed_data?object_id=device_4", "type": "table"},
    ]
    result = _query(stack, query_body(SIMPLE_JSON, targets, since, until))
    assert result == [{"type": "table", "refId": "C", "columns": result[0]["columns"], "rows": []}]
    series = _query(stack, query_body(SIMPLE_JSON, [{"refId": "A", "target": "*"}], since, until))
    assert {s["target"].split(".")[0] for s in series} == OWN["client_1"]
    tables = [
        {"refId": r, "target": t, "type": "table"}
        for r, t in (("A", "objects"), ("B", "anomalies"), ("C", "clients"))
    ]
    for table in _query(stack, query_body(SIMPLE_JSON, tables, stack.started_at - 60, time.time() + 1)):
        column = [c["text"] for c in table["columns"]].index("client_id")
        assert {row[column] for row in table["rows"]} <= {"client_1"}
    everything = _query(
        stack, query_body(SIMPLE_JSON, [{"refId": "A", "target": "*.battery_level"}], since, until), "*"
    )
    assert len(everything) == 10


def test_rest_reads_for_infinity(stack: Stack) -> None:
    """/readings, /statistics, /clients: flat rows, ms times, Grafana's ${__from}/${__to} in ms."""
    since, until = _window(stack)
    window = {"from": str(int(since * 1000)), "to": str(int(until * 1000))}
    rows = stack.get(
        "/readings", client="*", metric="temperature", client_id="client_1,client_2", step_ms="5000", **window
    ).json()
    assert {r["series"] for r in rows} == {"device_1", "device_4"}
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)
    assert all(since * 1000 <= r["timestamp"] <= until * 1000 and isinstance(r["value"], float) for r in rows)
    per_client = stack.get(
        "/readings", client="client_1", metric="battery_level", by="client", **window
    ).json()
    assert per_client and {r["series"] for r in per_client} == {"client_1"}
    stats = stack.get("/statistics", client="client_1", by="object", **window).json()
    assert {(r["object_id"], r["metric"]) for r in stats} == {
        ("device_1", "temperature"),
        ("device_1", "battery_level"),
        ("device_2", "humidity"),
        ("device_2", "battery_level"),
    }
    assert all(isinstance(r["average"], float) and r["last_reading_at_ms"] > 1e12 for r in stats)
    clients = stack.get("/clients", client="*").json()
    assert [c["client_id"] for c in clients["clients"]] == [f"client_{i}" for i in range(1, 6)]
    assert all(c["objects"] == 2 for c in clients["clients"])
    assert stack.get("/statistics", client="client_1", client_id="client_1,client_2").status_code == 404
    assert stack.get("/objects", client="*", client_id="client_1,client_3").json()["count"] == 4
    assert stack.get("/readings", client="client_1", object_id="device_3").status_code == 404
    points = stack.get("/objects/device_2/readings", metric="humidity", step_ms="10000", **window).json()[
        "points"
    ]
    assert points and all(p["min"] <= p["value"] <= p["max"] for p in points)
    assert all(b["timestamp"] - a["timestamp"] >= 10_000 for a, b in itertools.pairwise(points))


def test_openapi_documents_the_protocol(stack: Stack) -> None:
    """/docs shows the protocol endpoints with their request models."""
    schema = httpx.get(stack.edge.url + "/openapi.json").json()
    paths = {"/search", "/query", "/annotations", "/tag-keys", "/tag-values", "/metrics", "/variable"}
    assert paths | {"/metric-payload-options", "/readings", "/statistics", "/clients"} <= set(schema["paths"])
    query = schema["paths"]["/query"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert query["$ref"].endswith("/QueryIn")
    assert {"range", "targets", "adhocFilters", "intervalMs", "maxDataPoints"} <= set(
        schema["components"]["schemas"]["QueryIn"]["properties"]
    )
    assert json.dumps(schema)  # the schema serialises (no NaN defaults)


def test_iso_ms_is_what_grafana_sends() -> None:
    """The helper writes range bounds like Grafana: milliseconds and a Z suffix."""
    assert iso_ms(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"
