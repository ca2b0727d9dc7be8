"""The statistics fast lane and the answer cache give exactly what the FastAPI routes give.

Two edges are built on identical stores with one frozen clock, one with the fast lane and
the answer cache and one with neither; every request of a matrix (valid, invalid, foreign,
absent, unauthenticated, repeated or odd parameters and headers) must get the same status,
headers and body from both, and leave the same request counters behind. The clock is
frozen so that windows and ages are equal to the byte; that is why the apps run in this
process. A second pair is asked the same questions while its clock moves and readings,
catalogue changes and anomaly events arrive through each edge's own store.
"""

import functools
import random
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from iotedge.config import load_edge_settings
from iotedge.edge.api import fastlane
from iotedge.edge.app import create_app
from iotedge.edge.normalise import CatalogueEntry, Reading
from iotedge.edge.store import AnomalyEvent, EventEnd, new_event_id
from iotedge.edge.store.cached import CachedSqliteStore
from tests.conftest import KEYS

with warnings.catch_warnings():  # starlette suggests another httpx package; this one does the job
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

NOW = 1_790_000_000.0
OBJECTS = [
    CatalogueEntry("device_1", "client_1", "temperature_sensor"),
    CatalogueEntry("device_2", "client_1", "humidity_sensor"),
    CatalogueEntry("device_3", "client_2", "activity_tracker"),
    CatalogueEntry("device_4", "client_2", "temperature_sensor"),
]
EMPTY = CatalogueEntry("device_5", "client_1", "temperature_sensor")  # no readings: 503
METRICS = {
    "temperature_sensor": ("temperature", "battery_level"),
    "humidity_sensor": ("humidity", "battery_level"),
    "activity_tracker": ("activity_level", "battery_level"),
}
GOOD = KEYS["client_1"]

MATRIX: list[tuple[str, str, list[tuple[str, str]]]] = [
    # (path, query string, headers)
    ("/processed_data", "object_id=device_1", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_2&metric=battery_level&window=10m", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_1&window=7d", [("x-api-key", GOOD)]),
    ("/processed_data", f"object_id=device_1&from={NOW - 600:.0f}&to={NOW - 60:.0f}", [("x-api-key", GOOD)]),
    ("/processed_data", f"object_id=device_1&from={(NOW - 600) * 1000:.0f}", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_1&from=2026-09-21T00:00:00Z", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_1&window=40d", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_1&window=banana", [("x-api-key", GOOD)]),
    ("/processed_data", f"object_id=device_1&from={NOW:.0f}&to={NOW - 60:.0f}", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_1&from=yesterday", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_1&metric=humidity", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_1&metric=nonsense", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_3", [("x-api-key", GOOD)]),  # foreign
    ("/processed_data", "object_id=device_999", [("x-api-key", GOOD)]),  # absent
    ("/processed_data", "object_id=device_5", [("x-api-key", GOOD)]),  # no data yet
    ("/processed_data", "object_id=device_3", [("x-api-key", KEYS["*"])]),
    ("/processed_data", "object_id=device_1&object_id=device_2", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_1,device_2", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=", [("x-api-key", GOOD)]),
    ("/processed_data", "", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=" + "d" * 201, [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_1&window=", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_1&extra=1", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device%5F1", [("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_1", []),
    ("/processed_data", "object_id=device_1", [("x-api-key", "")]),
    ("/processed_data", "object_id=device_1", [("x-api-key", "wrong-key")]),
    ("/processed_data", "object_id=device_1", [("x-api-key", f"  {GOOD}  ")]),
    ("/processed_data", "object_id=device_1", [("x-api-key", GOOD), ("x-api-key", GOOD)]),
    ("/processed_data", "object_id=device_3", []),
    ("/client_statistics", "", [("x-api-key", GOOD)]),
    ("/client_statistics", "client_id=client_1", [("x-api-key", GOOD)]),
    ("/client_statistics", "client_id=client_1&window=1d", [("x-api-key", GOOD)]),
    ("/client_statistics", f"client_id=client_1&from={NOW - 900:.0f}&to={NOW:.0f}", [("x-api-key", GOOD)]),
    ("/client_statistics", "client_id=client_2", [("x-api-key", GOOD)]),  # foreign
    ("/client_statistics", "client_id=client_999", [("x-api-key", GOOD)]),  # absent
    ("/client_statistics", "", [("x-api-key", KEYS["*"])]),
    ("/client_statistics", "client_id=client_2", [("x-api-key", KEYS["*"])]),
    ("/client_statistics", "client_id=client_1&client_id=client_2", [("x-api-key", GOOD)]),
    ("/client_statistics", "client_id=client_1,client_2", [("x-api-key", GOOD)]),
    ("/client_statistics", "client_id=", [("x-api-key", GOOD)]),
    ("/client_statistics", "window=0s", [("x-api-key", GOOD)]),
    ("/client_statistics", "object_id=device_1", [("x-api-key", GOOD)]),
    ("/client_statistics", "", []),
    ("/client_statistics", "", [("x-api-key", "wrong-key")]),
    # After the failure cap, the address gets 429 from both.
    *[("/processed_data", "object_id=device_1", [("x-api-key", "wrong-key")])] * 4,
    ("/processed_data", "object_id=device_1", [("x-api-key", GOOD)]),
    ("/client_statistics", "", [("x-api-key", GOOD)]),
]


def _fill(client: TestClient) -> None:
    store = client.app.state.ctx.store.sync  # type: ignore[attr-defined]
    store.upsert_objects([*OBJECTS, EMPTY], NOW - 7200)
    readings = [
        Reading(entry.id, entry.client, metric, NOW - age, 20.0 + (age % 97) / 7 + index)
        for index, entry in enumerate(OBJECTS)
        for metric in METRICS[entry.type]
        for age in range(5, 3 * 86400, 313)
    ]
    store.insert_readings(readings)


def _twins(
    tmp_path_factory: pytest.TempPathFactory, clock: Callable[[], float]
) -> tuple[TestClient, TestClient]:
    """(fast lane and answer cache on, both off) on empty stores."""
    clients = []
    for lane in (True, False):
        data_dir: Path = tmp_path_factory.mktemp(f"edge-lane-{lane}")
        settings = load_edge_settings(
            {},
            data_dir=data_dir,
            api_keys=",".join(f"{client}={key}" for client, key in KEYS.items()),
            auth_failures=5,
            rate_limit=0,
            metrics_port=0,
            fast_lane=lane,
            answer_cache=lane,
        )
        clients.append(TestClient(create_app(settings, clock=clock, run_collector=False)))
    return clients[0], clients[1]


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, TestClient]]:
    """(fast lane and cache on, both off) on identical stores, one frozen clock."""
    first, second = _twins(tmp_path_factory, lambda: NOW)
    with first as fast, second as slow:
        assert isinstance(fast.app.state.ctx.store, CachedSqliteStore)  # type: ignore[attr-defined]
        assert not isinstance(slow.app.state.ctx.store, CachedSqliteStore)  # type: ignore[attr-defined]
        _fill(fast)
        _fill(slow)
        yield fast, slow


def _request_counts(client: TestClient) -> list[str]:
    text = generate_latest(client.app.state.metrics.registry).decode()  # type: ignore[attr-defined]
    return sorted(line for line in text.splitlines() if "http_requests_total{" in line)


def _served_by_the_lane(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the lane, not FastAPI, goes on to answer (proof that the fast side used it)."""
    served: list[str] = []
    for path, (allowed, required, answer) in list(fastlane._LANES.items()):

        def counted(*args: Any, path: str = path, answer: Any = answer) -> Any:
            served.append(path)
            return answer(*args)

        monkeypatch.setitem(fastlane._LANES, path, (allowed, required, counted))
    return served


def test_same_answers(twins: tuple[TestClient, TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = twins
    served = _served_by_the_lane(monkeypatch)
    statuses = set()
    for path, query, headers in MATRIX:
        url = f"{path}?{query}" if query else path
        a = fast.get(url, headers=headers)
        b = slow.get(url, headers=headers)
        what = f"{url} {headers}"
        assert a.status_code == b.status_code, what
        assert a.headers.multi_items() == b.headers.multi_items(), what
        assert a.content == b.content, what
        statuses.add(a.status_code)
    assert {200, 401, 404, 422, 429, 503} <= statuses  # the matrix reaches every answer
    assert _request_counts(fast) == _request_counts(slow)
    assert {"/processed_data", "/client_statistics"} <= set(served)
    assert any('route="/processed_data"' in line for line in _request_counts(fast))


def _broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("broken on purpose")


@pytest.mark.parametrize("broken", ["store", "metrics"])
def test_same_answers_when_something_breaks(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    """An error before the answer begins gets the app's 500 from both (the store); one after
    it has begun (counting it) gets nothing more. Both re-raise it to the server."""
    first, second = _twins(tmp_path_factory, lambda: NOW)
    with first as fast, second as slow:
        _fill(fast)
        _fill(slow)
        _same_answers_when_broken(fast, slow, monkeypatch, broken)


def _same_answers_when_broken(
    fast: TestClient, slow: TestClient, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    twins = (fast, slow)
    served = _served_by_the_lane(monkeypatch)
    for client in twins:
        app: Any = client.app
        if broken == "store":
            monkeypatch.setattr(app.state.ctx.store, "object_answer", _broken)
            monkeypatch.setattr(app.state.ctx.store, "client_answer", _broken)
        else:
            monkeypatch.setattr(app.state.metrics, "observe_http", _broken)
    for url in ["/processed_data?object_id=device_1", "/client_statistics?client_id=client_1"]:
        for client in twins:
            with pytest.raises(RuntimeError, match="broken on purpose"):
                client.get(url, headers={"x-api-key": GOOD})
    answers = []
    for client in twins:
        monkeypatch.setattr(client._transport, "raise_server_exceptions", False)
        answers.append(
            [
                client.get(url, headers={"x-api-key": GOOD})
                for url in ["/processed_data?object_id=device_1", "/client_statistics?client_id=client_1"]
            ]
        )
    for a, b in zip(*answers, strict=True):
        assert a.status_code == b.status_code == (500 if broken == "store" else 200)
        assert a.headers.multi_items() == b.headers.multi_items()
        assert a.content == b.content
    assert _request_counts(fast) == _request_counts(slow)
    assert {"/processed_data", "/client_statistics"} <= set(served)


_ASKED = [
    ("/processed_data?object_id=device_1", GOOD),
    ("/processed_data?object_id=device_2&metric=battery_level&window=90s", GOOD),
    ("/processed_data?object_id=device_1&window=10m", GOOD),
    ("/processed_data?object_id=device_3", KEYS["*"]),
    ("/processed_data?object_id=device_5", GOOD),
    ("/client_statistics?client_id=client_1", GOOD),
    ("/client_statistics?client_id=client_1&window=2m", GOOD),
    ("/client_statistics?client_id=client_2&window=1d", KEYS["*"]),
    ("/client_statistics", GOOD),
]


def test_same_answers_while_the_clock_moves_and_data_arrives(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Readings (past, present, ahead of the clock), moves and events, written through each
    edge's own store, show in the very next answer of both; so does the window sliding."""
    now = [NOW + 0.25]
    rng = random.Random(16)
    first, second = _twins(tmp_path_factory, lambda: now[0])
    with first as fast, second as slow:
        pair = (fast, slow)
        for client in pair:
            _fill(client)
        opened: list[int] = []
        hits = fast.app.state.ctx.store.cache  # type: ignore[attr-defined]
        for step in range(150):
            roll = rng.random()
            writes: list[tuple[str, tuple[Any, ...]]] = []
            if roll < 0.3:
                entry = rng.choice(OBJECTS)
                stamp = now[0] + rng.choice([-200.0, -30.0, 0.0, 0.5, 3.0, 40.0])
                metric = METRICS[entry.type][0]
                writes.append(
                    ("insert_readings", ([Reading(entry.id, entry.client, metric, stamp, float(step))],))
                )
            elif roll < 0.35:
                entry = rng.choice(OBJECTS)
                owner = rng.choice(["client_1", "client_2"])
                writes.append(("upsert_objects", ([CatalogueEntry(entry.id, owner, entry.type)], now[0])))
            elif roll < 0.4:
                entry = rng.choice(OBJECTS)
                event = AnomalyEvent(
                    id=new_event_id(),
                    object_id=entry.id,
                    client=entry.client,
                    type=entry.type,
                    metric=METRICS[entry.type][0],
                    rule="r",
                    severity="warning",
                    value=1.0,
                    threshold=0.0,
                    message="m",
                    started_at=now[0],
                )
                opened.append(event.id)
                writes.append(("record_transitions", ([event], [])))
            elif roll < 0.45 and opened:
                writes.append(("record_transitions", ([], [EventEnd(opened.pop(), now[0], 1.0)])))
            else:
                now[0] += rng.choice([0.0, 1e-6, 0.3, 2.0, 7.0, 31.0, 60.0])
            for name, args in writes:
                for client in pair:
                    store = client.app.state.ctx.store  # type: ignore[attr-defined]
                    kwargs = {"edge_id": "e", "now": now[0]} if name == "record_transitions" else {}
                    write = functools.partial(getattr(store, name), *args, **kwargs)
                    client.portal.call(write)  # type: ignore[union-attr]
            for url, key in _ASKED:
                a, b = (client.get(url, headers={"x-api-key": key}) for client in pair)
                assert (a.status_code, a.headers.multi_items(), a.content) == (
                    b.status_code,
                    b.headers.multi_items(),
                    b.content,
                ), f"step {step}: {url}"
        assert hits.hits > 0 and hits.misses > 0


@pytest.mark.parametrize(("role", "cached"), [("all", True), ("api", False)])
def test_only_the_process_that_writes_caches_answers(tmp_path: Path, role: str, cached: bool) -> None:
    """In the api role another process writes the store: every answer is read from it."""
    settings = load_edge_settings(
        {}, data_dir=tmp_path, api_keys=f"client_1={GOOD}", metrics_port=0, role=role
    )
    with TestClient(create_app(settings, clock=lambda: NOW, run_collector=False)) as client:
        store = client.app.state.ctx.store  # type: ignore[attr-defined]
        assert isinstance(store, CachedSqliteStore) is cached
