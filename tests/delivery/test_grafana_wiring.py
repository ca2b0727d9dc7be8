"""Grafana provisioning against compose.yaml: data sources, plugins, dashboards all line up.

The provisioning files live in deploy/grafana (provisioning/datasources/*.yaml,
provisioning/dashboards/*.yaml, dashboards/**/*.json). The checker is first exercised on a
small sample, so it is tested even before those files exist.
"""

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.delivery.compose_env import REPO, interpolate, load_compose

_GRAFANA = REPO / "deploy/grafana"
# Data source types that ship inside Grafana, and references that are not data sources.
_CORE_TYPES = {"prometheus", "grafana", "datasource", "loki", "testdata"}
_SPECIAL_UIDS = {"-- Grafana --", "-- Mixed --", "-- Dashboard --", "grafana"}
# Angular-only plugins cannot load on the Grafana 12 image compose.yaml pins: only the
# Grafana 11 tree (compose.grafana11.yaml, deploy/grafana/grafana11) provisions them.
_ANGULAR_ONLY = {"grafana-simple-json-datasource"}
_ENV_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def _yaml_files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def _datasources(root: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in _yaml_files(root / "provisioning/datasources"):
        data = yaml.safe_load(path.read_text()) or {}
        assert data.get("apiVersion") == 1, f"{path.name}: apiVersion 1"
        found += data.get("datasources", [])
    return found


def _dashboard_refs(node: Any) -> list[str]:
    """Every data source uid a dashboard JSON model refers to."""
    refs: list[str] = []
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and isinstance(ds.get("uid"), str):
            refs.append(ds["uid"])
        for value in node.values():
            refs += _dashboard_refs(value)
    elif isinstance(node, list):
        for value in node:
            refs += _dashboard_refs(value)
    return refs


def _defaulted(value: str) -> str:
    """``value`` with compose defaults applied; a value that needs .env stays as written."""
    try:
        return interpolate(value, {})
    except KeyError:
        return value


def check_grafana(root: Path, compose: dict[str, Any]) -> list[str]:
    """Problems between the provisioning under ``root`` and compose's grafana service."""
    problems: list[str] = []
    services = compose["services"]
    grafana = services["grafana"]
    environment = {key: str(value) for key, value in grafana["environment"].items()}
    env_values = {key: _defaulted(value) for key, value in environment.items()}
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    plugins = {p.split("@")[0] for p in env_values["GF_PLUGINS_PREINSTALL_SYNC"].split(",")}

    datasources = _datasources(root)
    if not datasources:
        problems.append("no provisioned data source")
    uids = set()
    for ds in datasources:
        name = ds.get("name", "?")
        uid, kind = ds.get("uid"), ds.get("type", "")
        if not uid:
            problems.append(f"data source {name}: no uid")
        uids.add(uid)
        if kind not in _CORE_TYPES | plugins:
            problems.append(f"data source {name}: plugin {kind} is not installed")
        text = json.dumps(ds)
        for var in _ENV_REF.findall(text):
            if var not in environment:
                problems.append(f"data source {name}: ${var} is not in grafana's environment")
        url = ds.get("url", "")
        if url:
            url = _ENV_REF.sub(lambda m: env_values.get(m.group(1), m.group(0)), url)
            parts = urlsplit(url)
            host, port = parts.hostname, str(parts.port or "")
            if host not in services or port not in services[host].get("expose", []):
                problems.append(f"data source {name}: {url} is not a compose service port")
    if len(uids) != len(datasources):
        problems.append("duplicate data source uids")

    inside = root.resolve().is_relative_to(REPO)  # the samples of the checker's own tests live elsewhere
    dashboards_source = (
        "./" + str((root / "dashboards").relative_to(REPO)) if inside else "./deploy/grafana/dashboards"
    )
    mount_target = next((t for t, s in mounts.items() if s == dashboards_source), None)
    for path in _yaml_files(root / "provisioning/dashboards"):
        data = yaml.safe_load(path.read_text()) or {}
        for provider in data.get("providers", []):
            if provider.get("options", {}).get("path") != mount_target:
                problems.append(f"{path.name}: provider path is not {mount_target}")

    dashboard_uids: set[str] = set()
    for path in sorted((root / "dashboards").rglob("*.json")):
        model = json.loads(path.read_text())
        if "dashboard" in model and "panels" not in model:
            problems.append(f"{path.name}: bare dashboard model expected, not an API wrapper")
            continue
        uid = model.get("uid")
        if uid in dashboard_uids:
            problems.append(f"{path.name}: duplicate dashboard uid {uid}")
        dashboard_uids.add(uid)
        for ref in _dashboard_refs(model):
            if ref not in uids and ref not in _SPECIAL_UIDS and not ref.startswith("$"):
                problems.append(f"{path.name}: data source uid {ref!r} is not provisioned")
    return problems


def _write_sample(root: Path, *, dashboard_uid: str, url: str) -> None:
    (root / "provisioning/datasources").mkdir(parents=True)
    (root / "provisioning/dashboards").mkdir(parents=True)
    (root / "dashboards").mkdir()
    datasources = {
        "apiVersion": 1,
        "datasources": [
            {"name": "Prometheus", "type": "prometheus", "uid": "prometheus", "url": url},
            {
                "name": "Edge",
                "type": "yesoreyeram-infinity-datasource",
                "uid": "edge-infinity",
                "jsonData": {"httpHeaderName1": "x-api-key"},
                "secureJsonData": {"httpHeaderValue1": "$EDGE_API_KEY"},
            },
        ],
    }
    (root / "provisioning/datasources/ds.yaml").write_text(yaml.safe_dump(datasources))
    provider = {
        "apiVersion": 1,
        "providers": [{"name": "edge", "options": {"path": "/var/lib/grafana/dashboards"}}],
    }
    (root / "provisioning/dashboards/edge.yaml").write_text(yaml.safe_dump(provider))
    panel = {"id": 1, "datasource": {"type": "prometheus", "uid": dashboard_uid}, "targets": []}
    model = {"uid": "edge-overview", "title": "Edge", "panels": [panel]}
    (root / "dashboards/edge.json").write_text(json.dumps(model))


def test_checker_accepts_a_consistent_sample(tmp_path: Path) -> None:
    """A sample whose uids, URL, variables and provider path agree with compose passes."""
    _write_sample(tmp_path, dashboard_uid="prometheus", url="${PROMETHEUS_URL}")
    assert check_grafana(tmp_path, load_compose()) == []


def test_checker_reports_a_missing_uid_and_a_wrong_host(tmp_path: Path) -> None:
    """A dashboard naming an unknown uid and a data source on localhost are both reported."""
    _write_sample(tmp_path, dashboard_uid="prom", url="http://localhost:9090")
    problems = check_grafana(tmp_path, load_compose())
    assert any("'prom' is not provisioned" in p for p in problems)
    assert any("localhost:9090 is not a compose service port" in p for p in problems)


def test_shipped_provisioning_matches_compose() -> None:
    """deploy/grafana's data sources, plugins and dashboards agree with compose.yaml."""
    assert (_GRAFANA / "provisioning/datasources").is_dir()
    assert check_grafana(_GRAFANA, load_compose()) == []


def _with_override(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """compose's merge for what the grafana service overrides: image, environment keys, volume targets."""
    merged: dict[str, Any] = json.loads(json.dumps(base))
    grafana, extra = merged["services"]["grafana"], override["services"]["grafana"]
    grafana["image"] = extra.get("image", grafana["image"])
    grafana["environment"].update(extra.get("environment", {}))
    volumes = {v.split(":")[1]: v for v in grafana["volumes"]}
    volumes |= {v.split(":")[1]: v for v in extra.get("volumes", [])}
    grafana["volumes"] = list(volumes.values())
    return merged


def test_default_provisioning_has_no_angular_plugin() -> None:
    """Grafana 12 (compose.yaml's) cannot load Simple JSON, so the default tree does not provision it."""
    kinds = {ds.get("type") for ds in _datasources(_GRAFANA)}
    assert not kinds & _ANGULAR_ONLY
    assert re.search(r"grafana/grafana:12\.", load_compose()["services"]["grafana"]["image"])


def test_grafana11_override_provisions_simple_json_where_it_loads() -> None:
    """compose.grafana11.yaml: Grafana 11 with Angular, Simple JSON installed, its own tree wired right."""
    override = yaml.safe_load((REPO / "compose.grafana11.yaml").read_text())
    merged = _with_override(load_compose(), override)
    grafana = merged["services"]["grafana"]
    assert re.fullmatch(r"grafana/grafana:11\.\d+\.\d+", grafana["image"])
    assert grafana["environment"]["GF_SECURITY_ANGULAR_SUPPORT_ENABLED"] == "true"
    base_targets = {v.split(":")[1] for v in load_compose()["services"]["grafana"]["volumes"]}
    assert {v.split(":")[1] for v in override["services"]["grafana"]["volumes"]} <= base_targets
    root = _GRAFANA / "grafana11"
    assert {ds.get("type") for ds in _datasources(root)} >= _ANGULAR_ONLY
    assert check_grafana(root, merged) == []
