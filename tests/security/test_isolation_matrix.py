"""Tenant isolation, proven for every endpoint of the schema against a real edge.

For each operation in the edge's OpenAPI schema, each client key, and each foreign client
or foreign object (one another client owns), the foreign id is put into every free-text
parameter (and every string of a JSON body) in turn. The answer must be the answer for an
id that does not exist at all (same status, same body once the id itself is masked), and
no answer may name any foreign client or object. Requests that name nothing foreign must
return nothing foreign either: lists, counts and statistics cover the caller's own data.
"""

import json
import logging
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.procs import Proc, start_iotedge
from tests.security.openapi_requests import (
    Operation,
    body_string_paths,
    build_body,
    default_text,
    offline_schema,
    operations,
    own_value,
    string_slots,
    walk_strings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_log = logging.getLogger(__name__)

SCHEMA = offline_schema()
OPERATIONS = operations(SCHEMA)
CLIENT_KEYS = {client: key for client, key in KEYS.items() if client != "*"}
MISSING = {"client": "client_999999", "object": "device_999999"}
PAIRS: dict[str, int] = {}
"""Pairs tried per operation, for the report."""
WORKERS = 6
"""Requests in flight at once: the pairs are independent, and the edge serves them concurrently."""

_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
_VOLATILE_INTS = re.compile(r"(^|_)(ms|timestamp|count|total|open|objects|cycles)$")


@dataclass
class Fleet:
    """The running stack and who owns what."""

    edge: Proc
    owner: dict[str, str]  # object id -> client
    http: httpx.Client  # keep-alive connections shared by the worker threads

    def objects_of(self, client: str) -> list[str]:
        """The objects ``client`` owns."""
        return sorted(o for o, c in self.owner.items() if c == client)

    def foreign(self, client: str) -> list[tuple[str, str]]:
        """(kind, id) of every client and object that is not ``client``'s."""
        clients = sorted({c for c in self.owner.values() if c != client})
        objects = sorted(o for o, c in self.owner.items() if c != client)
        return [("client", c) for c in clients] + [("object", o) for o in objects]

    def foreign_pattern(self, client: str) -> re.Pattern[str]:
        """Matches any foreign id as a whole token (device_1 does not match inside device_10)."""
        ids = "|".join(re.escape(i) for _, i in self.foreign(client))
        return re.compile(rf"(?<![A-Za-z0-9_])({ids})(?![A-Za-z0-9_])")


@pytest.fixture(scope="module")
def fleet(logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """5 clients x 2 objects with frequent anomalies; an edge without rate limits, ready with data."""
    sim_args = ["sim", "--seed", "23", "--interval", "1", "--clients", "5", "--objects-per-client", "2"]
    sim_args += ["--anomaly-rate", "0.7", "--anomaly-slot", "20"]
    env = edge_env()
    with start_iotedge(sim_args, log_dir=logs_dir) as sim:
        data_dir = tmp_path_factory.mktemp("isolation")
        with start_iotedge(edge_args(sim.url, data_dir), log_dir=logs_dir, env=env) as edge:

            def cloud(path: str) -> Any:
                return httpx.get(edge.url + path, headers={"x-api-key": KEYS["*"]}, timeout=10).json()

            def stocked() -> bool:
                objects = cloud("/objects")["objects"]
                anomalous = {a["client"] for a in cloud("/anomalies?limit=1000")["anomalies"]}
                return len(objects) == 10 and all(o["latest"] for o in objects) and len(anomalous) >= 3

            wait_for(stocked, 60, "every object to have data and 3 clients to have anomalies")
            owner = {o["id"]: o["client"] for o in cloud("/objects")["objects"]}
            limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
            with httpx.Client(base_url=edge.url, timeout=10, limits=limits) as http:
                yield Fleet(edge=edge, owner=owner, http=http)


def _mask(value: Any, key: str = "") -> Any:
    """Hide what changes from one second to the next (times, measured values, tallies)."""
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(item, key) for item in value]
    if isinstance(value, float) or (isinstance(value, int) and _VOLATILE_INTS.search(key)):
        return "<number>"
    if isinstance(value, str) and _ISO.match(value):
        return "<time>"
    return value


def _request(fleet: Fleet, op: Operation, client: str, slot: str | None, text: str | None) -> httpx.Response:
    """``op`` with ``client``'s key: ``text`` in parameter ``slot`` (``body:a/b``: a body field)."""
    own_object = fleet.objects_of(client)[0]
    path, params = op.path, {}
    for param in op.parameters:
        name = param["name"]
        if name == slot:
            value: Any = text
        elif param.get("in") == "path" or param.get("required"):
            value = own_value(SCHEMA, param, client, own_object)
        else:
            continue
        if param.get("in") == "path":
            path = path.replace("{" + name + "}", str(value))
        elif param.get("in") == "query":
            params[name] = value
    body = None
    if op.body_schema is not None:
        now = time.time()

        def fill(at: tuple[str, ...]) -> str:
            if slot == "body:" + "/".join(at) and text is not None:
                return text
            return default_text(at, client, own_object, now)

        body = build_body(SCHEMA, op.body_schema, fill)
    return fleet.http.request(
        op.method.upper(),
        path,
        params=params,
        json=body,
        headers={"x-api-key": CLIENT_KEYS[client]},
        timeout=10,
    )


def _masked_body(response: httpx.Response, echoed: str) -> Any:
    text = response.text.replace(echoed, "<ID>")
    try:
        return _mask(json.loads(text))
    except ValueError:
        return text


def _leaks(fleet: Fleet, client: str, response: httpx.Response, sent: str | None) -> list[str]:
    """Foreign ids in the body other than the one the caller sent itself."""
    found = {m.group(1) for m in fleet.foreign_pattern(client).finditer(response.text)}
    return sorted(found - {sent})


def _check_own_only(fleet: Fleet, client: str, response: httpx.Response) -> list[str]:
    """In a 200 body, every client field is the caller's and every object id one of its own."""
    problems: list[str] = []
    if response.status_code != 200:
        return problems
    body = response.json()
    own_objects = set(fleet.objects_of(client))
    stack: list[Any] = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                # None is an aggregate row's "not about one object/client": nothing revealed.
                if key in {"client", "client_id"} and value not in (client, None):
                    problems.append(f"{key}={value}")
                if key == "object_id" and value is not None and value not in own_objects:
                    problems.append(f"{key}={value}")
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    if any(s in {c for c in fleet.owner.values() if c != client} for s in walk_strings(body)):
        problems.append("a foreign client name as a value")
    return problems


def _compare(fleet: Fleet, op: Operation, client: str, slot: str, kind: str, target: str) -> str | None:
    """None if the foreign id is answered exactly like a missing one; else the difference."""
    for _ in range(2):  # own data can change between the two calls: look twice before failing
        foreign = _request(fleet, op, client, slot, target)
        missing = _request(fleet, op, client, slot, MISSING[kind])
        leaks = _leaks(fleet, client, foreign, target)
        if leaks:
            return f"{op.id} {slot}={target} as {client}: body names {leaks}: {foreign.text[:300]}"
        same = foreign.status_code == missing.status_code and _masked_body(foreign, target) == _masked_body(
            missing, MISSING[kind]
        )
        if same:
            return None
    return (
        f"{op.id} {slot}={target} as {client}: {foreign.status_code} {foreign.text[:300]} "
        f"differs from the missing-id answer {missing.status_code} {missing.text[:300]}"
    )


@pytest.mark.parametrize("op", OPERATIONS, ids=[op.id for op in OPERATIONS])
def test_no_endpoint_reveals_another_client(fleet: Fleet, op: Operation) -> None:
    """Every (client key, foreign client or object) pair: nothing foreign returned or inferable."""
    slots = string_slots(SCHEMA, op)
    if op.body_schema is not None:
        slots += ["body:" + "/".join(at) for at in body_string_paths(SCHEMA, op.body_schema)]
    problems: list[str] = []
    pairs = 0
    cases: list[tuple[str, str, str, str]] = []
    for client in CLIENT_KEYS:
        plain = _request(fleet, op, client, None, None)
        assert plain.status_code < 500, f"{op.id} as {client}: {plain.status_code} {plain.text[:300]}"
        leaks = _leaks(fleet, client, plain, None)
        problems += [f"{op.id} as {client} (no foreign input) names {leaks}"] if leaks else []
        problems += [f"{op.id} as {client}: {p}" for p in _check_own_only(fleet, client, plain)]
        for kind, target in fleet.foreign(client):
            pairs += 1  # the plain request against this foreign id
            cases += [(client, slot, kind, target) for slot in slots]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        found = pool.map(lambda case: _compare(fleet, op, *case), cases)
        problems += [problem for problem in found if problem]
    pairs += len(cases)
    PAIRS[op.id] = pairs
    _log.info("isolation: %s: %d (key, foreign id, parameter) pairs", op.id, pairs)
    assert not problems, "\n".join(problems[:20])


def test_the_live_schema_is_the_one_tested(fleet: Fleet) -> None:
    """The running edge serves the schema the matrix was built from, and it was all tried."""
    live = httpx.get(fleet.edge.url + "/openapi.json", timeout=10).json()
    assert sorted(live["paths"]) == sorted(SCHEMA["paths"])
    total = sum(PAIRS.values())
    _log.warning("isolation matrix: %d pairs over %d operations", total, len(PAIRS))
    assert set(PAIRS) == {op.id for op in OPERATIONS}
    assert total >= len(CLIENT_KEYS) * 12 * len(OPERATIONS)


def test_counts_match_own_data(fleet: Fleet) -> None:
    """List counts equal the caller's own objects and anomalies, never the fleet's."""
    for client, key in CLIENT_KEYS.items():
        headers = {"x-api-key": key}
        objects = httpx.get(fleet.edge.url + "/objects", headers=headers, timeout=10).json()
        assert objects["count"] == len(fleet.objects_of(client)) == 2
        cloud = httpx.get(
            fleet.edge.url + "/anomalies",
            params={"limit": 10000},
            headers={"x-api-key": KEYS["*"]},
            timeout=10,
        ).json()
        mine = httpx.get(
            fleet.edge.url + "/anomalies", params={"limit": 10000}, headers=headers, timeout=10
        ).json()
        cutoff = time.time() - 60  # events older than a minute cannot have changed between the two calls
        old_mine = {a["event_id"] for a in mine["anomalies"] if a["started_at_ms"] / 1000 < cutoff}
        old_cloud = {
            a["event_id"]
            for a in cloud["anomalies"]
            if a["client"] == client and a["started_at_ms"] / 1000 < cutoff
        }
        assert old_mine == old_cloud
        assert mine["count"] <= cloud["count"]
