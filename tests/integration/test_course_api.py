"""An edge pointed at a replay of the course's real device API collects, scopes and serves it."""

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.course_replay import CourseApi, course_api
from tests.procs import Proc, free_port, start_iotedge

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def replay() -> Iterator[CourseApi]:
    """The recorded shapes served on loopback."""
    with course_api() as server:
        yield server


@pytest.fixture(scope="module")
def edge(replay: CourseApi, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A real edge whose --upstream is the replay, with a metrics server to read its labels."""
    data_dir = tmp_path_factory.mktemp("course-edge")
    args = edge_args(replay.url, data_dir)
    args[args.index("--metrics-port") + 1] = str(free_port())
    with start_iotedge(args, log_dir=logs_dir, env=edge_env()) as proc:
        yield proc


def _get(edge: Proc, path: str, client: str = "client_1") -> httpx.Response:
    return httpx.get(edge.url + path, headers={"x-api-key": KEYS[client]}, timeout=10)


def test_replay_answers_like_the_real_service(replay: CourseApi) -> None:
    """The replay itself: /iot_data is an HTML 404, timestamps carry microseconds, history is 10 points."""
    missing = httpx.get(replay.url + "/iot_data/device_1")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    current = httpx.get(replay.url + "/iot_objects/device_1").json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", current["timestamp"])
    assert current["metrics"]["humidity"] is None
    assert len(httpx.get(replay.url + "/iot_objects/device_1/history?limit=60").json()["history"]) == 10
    assert httpx.get(replay.url + "/iot_objects/by_client/client1").status_code == 404


def test_edge_reads_current_values_from_iot_objects(edge: Proc, replay: CourseApi) -> None:
    """The edge finds /iot_data missing, switches to /iot_objects/<id>; history and readings both land."""

    def counted() -> bool:
        answer = _get(edge, "/processed_data?object_id=device_1&window=15m")
        if answer.status_code != 200:
            return False
        body = answer.json()
        # Battery comes only from current readings; the 10 backfilled points are temperatures.
        return bool(body["metrics"]["battery_level"]["count"] >= 2 and body["statistics"]["count"] >= 10)

    wait_for(counted, 30, "current readings of device_1 from /iot_objects/device_1")
    assert "/iot_objects/device_1" in replay.paths
    metrics_port = edge.args[edge.args.index("--metrics-port") + 1]
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    ok = re.search(
        r'iotedge_upstream_requests_total\{endpoint="/iot_objects/\{id\}",outcome="ok"\} (\d+)', text
    )
    assert ok is not None and float(ok.group(1)) > 0, text


def test_edge_keeps_client_scope_on_the_real_ids(edge: Proc) -> None:
    """client_1's key sees device_1 and device_2; the brief's client1 and object 1 are plain 404s."""
    wait_for(lambda: _get(edge, "/objects").json().get("count") == 2, 30, "client_1's two objects")
    ids = [obj["id"] for obj in _get(edge, "/objects").json()["objects"]]
    assert ids == ["device_1", "device_2"]
    assert _get(edge, "/processed_data?object_id=1").status_code == 404
    assert _get(edge, "/client_statistics?client_id=client1").status_code == 404
    assert _get(edge, "/client_statistics?client_id=client_1").status_code == 200
