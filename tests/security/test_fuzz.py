"""Property tests of every endpoint in the OpenAPI schema against a real edge (hypothesis).

Parameters get schema-shaped values, values just past their limits, hostile strings and
random text; keys are valid, cross-client, missing or random. Whatever comes in: no 5xx
(except a 503 the operation documents), every error is a JSON ``{"error": ...}`` body,
no stack trace, and the security headers are always there.
"""

import json
import logging
import os
import string
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.conftest import KEYS, edge_args, edge_env, wait_for
from tests.procs import Proc, start_iotedge
from tests.security.openapi_requests import Operation, build_body, offline_schema, operations, resolve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_log = logging.getLogger(__name__)

SCHEMA = offline_schema()
OPERATIONS = operations(SCHEMA)
EXAMPLES = int(os.environ.get("IOTEDGE_FUZZ_EXAMPLES", "200"))
CASES: dict[str, int] = {}
STATUSES: Counter[int] = Counter()

HOSTILE = [
    "",
    "0",
    "-1",
    "1e309",
    "NaN",
    "inf",
    "*",
    "%",
    "%00",
    "\x00",
    "../../etc/passwd",
    "' OR '1'='1",
    "device_1; DROP TABLE readings",
    "${__from}",
    "2026-13-45T99:99:99",
    "99999999999999999999999",
    "client_1,client_2",
    "\u202e\u0000\ufeff",
    "x" * 250,
    "9" * 5000,
]

_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)


@pytest.fixture(scope="module")
def client(sim: Proc, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A keep-alive client of a ready edge (no rate limits, no failed-login cap)."""
    env = edge_env()
    with (
        start_iotedge(edge_args(sim.url, tmp_path_factory.mktemp("fuzz")), log_dir=logs_dir, env=env) as edge,
        httpx.Client(base_url=edge.url, timeout=10) as http,
    ):
        wait_for(lambda: http.get("/readyz").status_code == 200, 30, "the edge to be ready")
        yield http


def _value_strategy(param: dict[str, Any]) -> st.SearchStrategy[Any]:
    node = param.get("schema", {})
    options = [resolve(SCHEMA, o) for o in (node.get("anyOf") or [node]) if o.get("type") != "null"]
    strategies: list[st.SearchStrategy[Any]] = [st.sampled_from(HOSTILE), _TEXT]
    for option in options:
        if "enum" in option:
            strategies.append(st.sampled_from(option["enum"]))
        elif option.get("type") == "integer":
            strategies.append(st.integers(min_value=-(2**63), max_value=2**63))
        elif option.get("type") == "number":
            strategies.append(st.floats(allow_nan=True, allow_infinity=True).map(repr))
        elif option.get("type") == "string":
            limit = option.get("maxLength", 60) + 3
            strategies.append(st.text(st.characters(exclude_categories=["Cs"]), max_size=limit))
            strategies.append(st.sampled_from(["device_1", "device_2", "device_3", "client_1", "client_2"]))
    value = st.one_of(strategies)
    if param.get("in") == "path" or param.get("required"):
        return value
    return st.one_of(st.none(), value)


def _request_strategy(op: Operation) -> st.SearchStrategy[dict[str, Any]]:
    params = {p["name"]: _value_strategy(p) for p in op.parameters if p.get("in") in {"path", "query"}}
    key = st.one_of(
        st.sampled_from([KEYS["client_1"], KEYS["client_2"], KEYS["*"], None]),
        st.text(string.ascii_letters + string.digits + "-_.~", max_size=300),
    )
    body: st.SearchStrategy[Any] = st.none()
    if op.body_schema is not None:
        schema = op.body_schema
        json_values = st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
            max_leaves=12,
        )
        body = st.one_of(
            st.just({}),
            st.sampled_from(HOSTILE).map(lambda text: build_body(SCHEMA, schema, text)),
            _TEXT.map(lambda text: build_body(SCHEMA, schema, text)),
            json_values,
            st.binary(max_size=200),
        )
    return st.fixed_dictionaries({"params": st.fixed_dictionaries(params), "key": key, "body": body})


def _send(http: httpx.Client, op: Operation, case: dict[str, Any]) -> httpx.Response:
    path, query = op.path, {}
    for name, value in case["params"].items():
        if value is None:
            continue
        if "{" + name + "}" in path:
            path = path.replace("{" + name + "}", urllib.parse.quote(str(value), safe="") or "%20")
        else:
            query[name] = str(value)
    headers = {} if case["key"] is None else {"x-api-key": case["key"]}
    body = case["body"]
    content = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    if content is not None:
        headers["content-type"] = "application/json"
    return http.request(op.method.upper(), path, params=query, headers=headers, content=content)


def _check(op: Operation, response: httpx.Response) -> None:
    status = response.status_code
    documented_503 = status == 503 and "503" in op.documented_statuses
    assert status < 500 or documented_503, f"{op.id}: {status} {response.text[:300]}"
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("cache-control") == "no-store"
    if status >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.text[:200]
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str), body


@pytest.mark.parametrize("op", OPERATIONS, ids=[op.id for op in OPERATIONS])
def test_any_input_gets_a_json_answer_and_no_5xx(client: httpx.Client, op: Operation) -> None:
    """Hypothesis-generated requests to one operation: no 5xx, JSON errors, headers always set."""
    CASES[op.id] = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=os.environ.get("CI") == "true",
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(case=_request_strategy(op))
    def run(case: dict[str, Any]) -> None:
        CASES[op.id] += 1
        response = _send(client, op, case)
        STATUSES[response.status_code] += 1
        _check(op, response)

    run()
    assert CASES[op.id] >= EXAMPLES


def test_fuzz_covered_every_operation() -> None:
    """Every operation of the schema was fuzzed; the total is logged for the report."""
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(STATUSES.items()))
    _log.warning("fuzz: %d cases over %d operations (%s)", sum(CASES.values()), len(CASES), statuses)
    assert set(CASES) == {op.id for op in OPERATIONS}
