"""No request may stall the edge or cost without limit; odd values are 422s, never 500s.

Issue 13 findings 1 (a backtracking regex stalled every client for 6 s), 3 (100 ``*``
targets returned 5 MB and held other clients) and 6 (inputs that gave unhandled 500s).
"""

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.procs import Proc, start_iotedge

pytestmark = pytest.mark.integration

CRAFTED = {"key": "type", "operator": "=~", "value": "[a-z]{2}(\\w|[a-z_]|.)*X"}
"""Issue 13's pattern: 6 s of backtracking per request in Python's re."""

STALL_DEADLINE_S = 3.0
"""Generous bound on the crafted request and on a concurrent one (it took 6-14 s before)."""


@pytest.fixture(scope="module")
def edge(sim: Proc, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """An edge polling the default fleet (6 objects), without rate limits."""
    env = {**edge_env(), "IOTEDGE_RATE_LIMIT": "0"}
    with start_iotedge(
        edge_args(sim.url, tmp_path_factory.mktemp("cost")), log_dir=logs_dir, env=env
    ) as proc:
        wait_for(lambda: _has_readings(proc, KEYS["*"]), 30, "readings")
        yield proc


def _query(edge: Proc, body: Any, key: str = KEYS["*"], **kwargs: Any) -> httpx.Response:
    return httpx.post(edge.url + "/query", json=body, headers={"x-api-key": key}, timeout=60, **kwargs)


def _has_readings(edge: Proc, key: str) -> bool:
    response = _query(edge, {"targets": [{"target": "*"}]}, key=key)
    return response.status_code == 200 and response.json() != []


def _timed_get(edge: Proc) -> tuple[int, float]:
    started = time.monotonic()
    response = httpx.get(edge.url + "/objects", headers={"x-api-key": KEYS["client_2"]}, timeout=60)
    return response.status_code, time.monotonic() - started


def test_crafted_regex_does_not_stall_other_clients(edge: Proc) -> None:
    """The backtracking pattern answers at once, and another client is served meanwhile."""
    body = {"targets": [{"target": "*"}], "adhocFilters": [CRAFTED]}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        crafted = pool.submit(_query, edge, body)
        other = pool.submit(_timed_get, edge)
        response = crafted.result(timeout=30)
        crafted_s = time.monotonic() - started
        status, other_s = other.result(timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == []  # no type name ends with X
    assert crafted_s < STALL_DEADLINE_S
    assert status == 200 and other_s < STALL_DEADLINE_S


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("adhocFilters", r"(device)_\1", id="backreference"),
        pytest.param("filters", "(?<=client_)1", id="lookbehind"),
        pytest.param("adhocFilters", "x" * 300, id="too-long"),
    ],
)
def test_unsupported_regex_is_422_naming_the_filter(edge: Proc, field: str, value: str) -> None:
    """Syntax the linear-time engine refuses, or a pattern too long, is a 422 naming the filter."""
    filters = [
        {"key": "object", "operator": "=", "value": "device_1"},
        {"key": "object", "operator": "=~", "value": value},
    ]
    response = _query(edge, {"targets": [{"target": "*"}], field: filters})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["parameter"] == f"{field}[1].value"


def test_too_many_series_is_422_naming_the_limit(edge: Proc) -> None:
    """100 '*' table targets (1,200 series here) are refused before any read, naming the limit."""
    targets = [{"target": "*", "type": "table", "refId": f"A{n}"} for n in range(100)]
    started = time.monotonic()
    response = _query(edge, {"targets": targets})
    assert response.status_code == 422, response.text
    assert "limit 'series'" in response.json()["detail"][0]["message"]
    assert time.monotonic() - started < STALL_DEADLINE_S
    allowed = _query(edge, {"targets": targets[:40]})  # 480 series: within the budget
    assert allowed.status_code == 200 and len(allowed.json()) == 40


def test_query_cost_is_charged_to_the_key(sim: Proc, logs_dir: Path, tmp_path: Path) -> None:
    """A costly query spends the key's rate budget (next request 429); other keys are untouched."""
    args = edge_args(sim.url, tmp_path, "--rate-limit", "1", "--rate-burst", "30")
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as proc:
        wait_for(lambda: _has_readings(proc, KEYS["client_3"]), 30, "readings")  # spares the keys below
        cheap = [_query(proc, {"targets": [{"target": "device_1.temperature"}]}) for _ in range(3)]
        costly = _query(proc, {"targets": [{"target": "*", "refId": f"A{n}"} for n in range(40)]})
        after = _query(proc, {"targets": [{"target": "device_1.temperature"}]})
        other = _query(proc, {"targets": [{"target": "device_1.temperature"}]}, key=KEYS["client_1"])
    assert [r.status_code for r in cheap] == [200] * 3  # a simple query costs about one request
    assert costly.status_code == 200
    assert after.status_code == 429 and int(after.headers["retry-after"]) > 1
    assert other.status_code == 200


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/processed_data?object_id=device_1&to=1e20", "to"),
        ("/processed_data?object_id=device_1&to=0001-01-01T00:00:00", "to"),
        ("/processed_data?object_id=device_1&from=9999-12-31T00:00:00&to=9999-12-31T23:59:59.999999", "to"),
        ("/objects/device_1/readings?from=1e20&to=1.00000000000001e20", "to"),
        ("/client_statistics?from=1e20&to=1.00000000000001e20", "to"),
    ],
    ids=["to-1e20", "to-year-1", "year-9999", "readings-1e20", "client-statistics-1e20"],
)
def test_out_of_range_instants_are_422_naming_the_parameter(edge: Proc, path: str, parameter: str) -> None:
    """Issue 13 finding 6's inputs: a 422 naming the parameter, not a 500."""
    response = httpx.get(edge.url + path, headers={"x-api-key": KEYS["client_1"]}, timeout=10)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["parameter"] == parameter


@pytest.mark.parametrize("number", [b"Infinity", b"1e999", b"-Infinity", b"NaN"])
def test_non_finite_interval_is_422(edge: Proc, number: bytes) -> None:
    """``intervalMs`` that JSON cannot hold as a finite number is a 422 naming it."""
    content = b'{"intervalMs": ' + number + b', "targets": [{"target": "device_1"}]}'
    response = httpx.post(
        edge.url + "/query",
        content=content,
        headers={"x-api-key": KEYS["*"], "content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["parameter"] == "intervalMs"


@pytest.mark.parametrize(
    "content", [b"\xff\xfe{", b'{"targets": [}', b"\xc3("], ids=["utf16-bom", "syntax", "bad-utf8"]
)
def test_unreadable_bodies_get_one_error_class(edge: Proc, content: bytes) -> None:
    """Invalid UTF-8 and malformed JSON both get the same 422 naming the body."""
    response = httpx.post(
        edge.url + "/query",
        content=content,
        headers={"x-api-key": KEYS["*"], "content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 422, response.text
    assert response.json() == {
        "error": "Invalid request parameters",
        "detail": [{"parameter": "body", "in": "body", "message": "not valid JSON text (UTF-8)"}],
    }
