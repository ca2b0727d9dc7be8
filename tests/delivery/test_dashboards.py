"""The provisioned dashboards: generated, well-formed, wired, and every query answered by a real edge.

For each panel target, the request its plugin would send is rebuilt from the dashboard
JSON (variables resolved through their own queries, then filled as Grafana fills them)
and sent to a real edge polling a real simulator. PromQL targets are checked statically
here; a real Prometheus runs them in the observability tests.
"""

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tools.dashboards import render, render_grafana11
from tools.dashboards.performance import METRIC_NAMES

from tests.conftest import KEYS, Stack, wait_for
from tests.delivery.compose_env import REPO
from tests.grafana_plugins import (
    INFINITY,
    SIMPLE_JSON,
    SIMPOD_JSON,
    interpolate,
    post,
    query_body,
    select,
    time_range,
)

DASHBOARDS = REPO / "deploy/grafana/dashboards"
DATASOURCES = REPO / "deploy/grafana/provisioning/datasources"
GRAFANA11 = REPO / "deploy/grafana/grafana11"  # compose.grafana11.yaml: the default tree + Simple JSON
# Every dashboard once: the default ones, and those only Grafana 11 with Angular can show.
_FILES = sorted(DASHBOARDS.glob("*.json")) + sorted(
    path for path in (GRAFANA11 / "dashboards").glob("*.json") if not (DASHBOARDS / path.name).exists()
)
_KEY = KEYS["*"]  # compose gives Grafana the cross-client key (EDGE_API_KEY)
_STEP_MS = 2000
_ACCEPT = "application/json;q=0.9,text/plain"  # what Infinity asks for


def _load(path: Path) -> dict[str, Any]:
    model: dict[str, Any] = json.loads(path.read_text())
    return model


def _provisioned() -> dict[str, str]:
    found = {}
    for path in [*DATASOURCES.glob("*.yaml"), *(GRAFANA11 / "provisioning/datasources").glob("*.yaml")]:
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            found[ds["uid"]] = ds["type"]
    return found


def _targets(model: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in model["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def test_committed_dashboards_are_the_generators_output() -> None:
    """deploy/grafana/dashboards holds exactly what `python -m tools.dashboards` writes."""
    expected = render()
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(expected)
    for path in DASHBOARDS.glob("*.json"):
        assert path.read_text() == expected[path.name], f"regenerate {path.name}: python -m tools.dashboards"


def test_committed_grafana11_tree_is_the_generators_output() -> None:
    """deploy/grafana/grafana11 is the default provisioning plus Simple JSON, exactly as generated."""
    expected = render_grafana11(REPO / "deploy/grafana")
    committed = {str(p.relative_to(GRAFANA11)): p.read_text() for p in GRAFANA11.rglob("*") if p.is_file()}
    assert committed == expected, "regenerate: python -m tools.dashboards"
    assert "grafana-simple-json-datasource" in expected["provisioning/datasources/datasources.yaml"]
    assert "iot-fleet-simplejson.json" in {p.rsplit("/", 1)[-1] for p in expected}


@pytest.mark.parametrize("path", _FILES, ids=lambda p: p.name)
def test_dashboard_is_a_bare_model_with_unique_ids_on_the_grid(path: Path) -> None:
    """A bare model (uid, title, no id or __inputs); unique panel ids; inside 24 columns, no overlap."""
    model = _load(path)
    assert model["title"] and 8 <= len(model["uid"]) <= 40 and re.fullmatch(r"[\w-]+", model["uid"])
    assert "id" not in model and "__inputs" not in model and "dashboard" not in model
    assert "${DS_" not in path.read_text()
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in model["panels"]:
        pos = panel["gridPos"]
        assert pos["w"] >= 1 and pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        covered = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
        assert panel["targets"] and all(t["refId"] for t in panel["targets"])


def test_dashboard_uids_are_unique() -> None:
    """No two dashboards share a uid or a title."""
    models = [_load(path) for path in _FILES]
    assert len({m["uid"] for m in models}) == len({m["title"] for m in models}) == len(models)


@pytest.mark.parametrize("path", _FILES, ids=lambda p: p.name)
def test_every_data_source_reference_is_provisioned(path: Path) -> None:
    """Panels, targets, variables and annotations name provisioned uids, with the matching type."""
    provisioned = _provisioned()
    model = _load(path)
    refs = [p["datasource"] for p in model["panels"]] + [t["datasource"] for _, t in _targets(model)]
    refs += [v["datasource"] for v in model["templating"]["list"]]
    refs += [a["datasource"] for a in model["annotations"]["list"] if a.get("builtIn") != 1]
    for ref in refs:
        assert provisioned.get(ref["uid"]) == ref["type"], ref


_PROMQL_NAME = re.compile(r"\b((?:edge|iotedge)_[a-z_]+)\b")
_PROMQL_LABELS = re.compile(
    r'"[^"]*"|\{[^}]*\}|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)'
)


def _metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label names in matchers and groupings left out)."""
    return set(_PROMQL_NAME.findall(_PROMQL_LABELS.sub(" ", expr)))


def _balanced(expr: str) -> bool:
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in re.sub(r'"[^"]*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def test_promql_targets_use_the_edges_metric_names() -> None:
    """Every PromQL expression is balanced and reads only metrics the edge exports."""
    expressions = [
        t["expr"]
        for path in _FILES
        for _, t in _targets(_load(path))
        if t["datasource"]["type"] == "prometheus"
    ]
    assert len(expressions) >= 10
    seen: set[str] = set()
    for expr in expressions:
        assert isinstance(expr, str) and _balanced(expr), expr
        names = _metric_names(expr)
        assert names and names <= set(METRIC_NAMES), expr
        seen |= names
    for course in ("edge_cpu_usage", "edge_memory_usage", "edge_disk_usage"):
        assert course in seen


# --- every query against the real edge --------------------------------------------------


class Grafana:
    """Grafana's side of one dashboard: its time range, resolved variables, plugin requests."""

    def __init__(self, stack: Stack, model: dict[str, Any]) -> None:
        self.stack = stack
        self.model = model
        self.until = time.time() + 1
        self.since = stack.started_at - 120
        self.builtins = {
            "__from": str(int(self.since * 1000)),
            "__to": str(int(self.until * 1000)),
            "__interval_ms": str(_STEP_MS),
            "__interval": f"{_STEP_MS // 1000}s",
        }
        self.variables: dict[str, list[str]] = {}
        for variable in model["templating"]["list"]:
            values = self.variable_values(variable)
            assert values, f"variable {variable['name']} has no options"
            self.variables[variable["name"]] = values  # "All", as the dashboards default to

    def fill(self, text: str, fmt: str) -> str:
        """Interpolate as Grafana does for the plugin (default format ``fmt``)."""
        return interpolate(text, self.variables, fmt=fmt, builtins=self.builtins)

    def infinity(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """GET the Infinity URL (base URL + path) and apply its root selector."""
        url = self.fill(query["url"], "csv")
        assert url.startswith("/") and "$" not in url, url
        response = httpx.get(
            self.stack.edge.url + url, headers={"x-api-key": _KEY, "accept": _ACCEPT}, timeout=15
        )
        assert response.status_code == 200, (url, response.text)
        found = select(response.json(), query["root_selector"])
        rows = found if isinstance(found, list) else [found]
        assert all(isinstance(row, dict) for row in rows), (url, query["root_selector"])
        first = query["columns"][0]["selector"]
        assert all(select(row, first) is not None for row in rows), (url, first)
        for row in rows:
            for column in query["columns"]:
                assert _fits(select(row, column["selector"]), column["type"]), (url, column, row)
        return [{c["text"]: select(row, c["selector"]) for c in query["columns"]} for row in rows]

    def protocol(self, plugin: str, target: dict[str, Any]) -> list[dict[str, Any]]:
        """POST /query with the target as the plugin rewrites it."""
        sent = {**target, "target": self.fill(target["target"], "regex")}
        body = query_body(plugin, [sent], self.since, self.until, interval_ms=_STEP_MS)
        response = post(self.stack.edge.url, "/query", _KEY, body)
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()
        return result

    def variable_values(self, variable: dict[str, Any]) -> list[str]:
        """A query variable's options, fetched the way its plugin fetches them."""
        kind, query = variable["datasource"]["type"], variable["query"]
        if kind == INFINITY:
            column = query["infinityQuery"]["columns"][0]["text"]
            return list(dict.fromkeys(str(row[column]) for row in self.infinity(query["infinityQuery"])))
        if kind == SIMPOD_JSON:
            body = {
                "payload": {"target": self.fill(query["query"], "regex")},
                "range": time_range(self.since, self.until),
            }
            return [o["__value"] for o in post(self.stack.edge.url, "/variable", _KEY, body).json()]
        assert kind == SIMPLE_JSON, kind
        return [
            str(v)
            for v in post(self.stack.edge.url, "/search", _KEY, {"target": self.fill(query, "regex")}).json()
        ]


def _fits(value: Any, kind: str) -> bool:
    if value is None:
        return True
    if kind == "timestamp_epoch":
        return isinstance(value, int) and value > 1_000_000_000_000
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "timestamp":
        return isinstance(value, str) and bool(re.match(r"\d{4}-\d\d-\d\dT", value))
    return isinstance(value, str)


def _wanted_fields(panel: dict[str, Any]) -> tuple[re.Pattern[str] | None, list[str]]:
    """The numeric fields a stat-like panel reduces, and the fields its display name uses."""
    fields = panel["options"].get("reduceOptions", {}).get("fields", "")
    pattern = re.compile(fields.strip("/")) if fields else None
    display = panel["fieldConfig"]["defaults"].get("displayName", "")
    return pattern, re.findall(r"__data\.fields\.(\w+)", display)


def _check_frame(panel: dict[str, Any], columns: dict[str, str], rows: list[dict[str, Any]]) -> None:
    """Rows (as dicts) and column kinds satisfy what the panel reads."""
    assert rows, f"{panel['title']}: no rows"
    pattern, named = _wanted_fields(panel)
    for name in named:
        assert name in columns, (panel["title"], name)
    if pattern is not None:
        numeric = [c for c, kind in columns.items() if pattern.fullmatch(c) and kind == "number"]
        assert numeric, (panel["title"], columns)
        for column in numeric:
            assert any(isinstance(row[column], int | float) for row in rows), (panel["title"], column)


def _check_series(panel: dict[str, Any], frames: list[dict[str, Any]], grafana: Grafana) -> None:
    assert frames and all("datapoints" in f for f in frames), panel["title"]
    assert any(f["datapoints"] for f in frames), f"{panel['title']}: every series empty"
    for frame in frames:
        times = [t for _, t in frame["datapoints"]]
        assert times == sorted(times)
        assert all(isinstance(t, int) and grafana.since * 1000 <= t <= grafana.until * 1000 for t in times)
        assert all(v is None or isinstance(v, int | float) for v, _ in frame["datapoints"])


_TYPES = {"time": "timestamp_epoch", "number": "number", "string": "string", "boolean": "boolean"}


def _check_protocol(panel: dict[str, Any], frames: list[dict[str, Any]], grafana: Grafana) -> None:
    if panel["type"] == "timeseries":
        _check_series(panel, frames, grafana)
        return
    [table] = frames
    assert table["type"] == "table"
    columns = {c["text"]: c["type"] for c in table["columns"]}
    for row in table["rows"]:
        assert len(row) == len(columns)
        for value, (name, kind) in zip(row, columns.items(), strict=True):
            assert _fits(value, _TYPES[kind]), (panel["title"], name, value)
    _check_frame(panel, columns, [dict(zip(columns, row, strict=True)) for row in table["rows"]])


def _check_infinity(panel: dict[str, Any], target: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    kinds = {"timestamp_epoch": "time", "timestamp": "time", "number": "number", "boolean": "boolean"}
    columns = {c["text"]: kinds.get(c["type"], "string") for c in target["columns"]}
    if target["format"] == "timeseries":
        times = [row["Time"] for row in rows]
        assert times and times == sorted(times), "long frames must be ascending for Infinity"
        assert all(isinstance(row["Value"], int | float) for row in rows), panel["title"]
        label = panel["fieldConfig"]["defaults"]["displayName"].split(".")[-1].rstrip("}")
        assert all(isinstance(row[label], str) for row in rows)
        return
    _check_frame(panel, columns, rows)


@pytest.fixture(scope="module")
def live(stack: Stack) -> Stack:
    """The stack once it has readings and an anomaly event inside the dashboards' time range.

    The history backfill opens (and closes) events up to an hour back: those are outside the
    range Grafana asks for (see ``Grafana.since``), so they do not count here.
    """
    wait_for(lambda: time.time() - stack.started_at > 8, 15, "a few polls")
    since_ms = (stack.started_at - 120) * 1000

    def in_range() -> bool:
        events = stack.get("/anomalies", client="*", limit=1000).json()["anomalies"]
        return any(e["ended_at_ms"] is None or e["ended_at_ms"] >= since_ms for e in events)

    wait_for(in_range, 90, "an anomaly event in the dashboards' time range")
    return stack


_LIVE = [
    pytest.param(path, panel["id"], id=f"{path.stem}-{panel['id']}-{panel['title']}")
    for path in _FILES
    for panel in _load(path)["panels"]
    if panel["datasource"]["type"] != "prometheus"
]


@pytest.mark.integration
@pytest.mark.parametrize(("path", "panel_id"), _LIVE)
def test_panel_queries_return_data_of_the_panels_shape(live: Stack, path: Path, panel_id: int) -> None:
    """Every target of the panel, sent as its plugin sends it, returns non-empty data of the right shape."""
    model = _load(path)
    grafana = Grafana(live, model)
    panel = next(p for p in model["panels"] if p["id"] == panel_id)
    for target in panel["targets"]:
        kind = target["datasource"]["type"]
        if kind == INFINITY:
            _check_infinity(panel, target, grafana.infinity(target))
        else:
            _check_protocol(panel, grafana.protocol(kind, target), grafana)


@pytest.mark.integration
@pytest.mark.parametrize("path", [p for p in _FILES if p.stem != "edge-performance"], ids=lambda p: p.name)
def test_anomaly_annotations_return_events(live: Stack, path: Path) -> None:
    """The dashboard's anomaly annotation query returns events with epoch-ms times."""
    model = _load(path)
    grafana = Grafana(live, model)
    [annotation] = [a for a in model["annotations"]["list"] if a.get("builtIn") != 1]
    kind = annotation["datasource"]["type"]
    if kind == INFINITY:
        rows = grafana.infinity(annotation["target"])
        times = [row["time"] for row in rows]
    elif kind == SIMPOD_JSON:
        [table] = grafana.protocol(kind, annotation["target"])
        column = [c["text"] for c in table["columns"]].index("time")
        times = [row[column] for row in table["rows"]]
    else:
        sent = {**annotation, "query": grafana.fill(annotation["query"], "glob")}
        body = {
            "range": time_range(grafana.since, grafana.until),
            "rangeRaw": {"from": "now-1h", "to": "now"},
        }
        response = post(live.edge.url, "/annotations", _KEY, {**body, "annotation": sent})
        assert response.status_code == 200
        times = [event["time"] for event in response.json()]
    assert times and all(isinstance(t, int) and t > 1_000_000_000_000 for t in times)


def test_dashboards_check_command_passes() -> None:
    """`python -m tools.dashboards --check` (run from the repository root) finds nothing stale."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tools.dashboards", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
