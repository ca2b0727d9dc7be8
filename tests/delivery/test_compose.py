"""compose.yaml: valid against the compose specification, and wired the way the stack needs."""

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import require
from tests.delivery.compose_env import (
    REPO,
    fill_placeholders,
    interpolate,
    load_compose,
    parse_env_file,
    referenced_variables,
)

_COMPOSE = REPO / "compose.yaml"
_ENV_EXAMPLE = REPO / ".env.example"
_OWN_SERVICES = ("sim", "edge", "api", "collector")


def _check_jsonschema() -> str:
    exe = Path(sys.executable).with_name("check-jsonschema")
    found = str(exe) if exe.exists() else shutil.which("check-jsonschema")
    require(found is not None, "check-jsonschema (pip install -e '.[dev]')")
    assert found is not None
    return found


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """compose.yaml, not interpolated."""
    return load_compose()


@pytest.fixture(scope="module")
def variables() -> dict[str, str]:
    """The variables of .env.example with its placeholders filled, as `make env` writes .env."""
    return parse_env_file(fill_placeholders(_ENV_EXAMPLE.read_text()))


def _env(service: dict[str, Any], variables: dict[str, str]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "use the mapping form of environment"
    return {key: interpolate(str(value), variables) for key, value in environment.items()}


def test_compose_matches_the_specification() -> None:
    """check-jsonschema accepts compose.yaml against the compose specification schema."""
    result = _validate(_COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    """The same check fails on a compose file with an invalid restart policy and unknown key."""
    broken = load_compose()
    broken["services"]["sim"]["restart"] = ["sometimes"]
    broken["services"]["sim"]["helthcheck"] = {}
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = _validate(path)
    assert result.returncode != 0, result.stdout


def test_every_service_is_hardened_and_observable(compose: dict[str, Any]) -> None:
    """Each service: pinned image, restart policy, health check, the named network."""
    networks = compose["networks"]
    assert "iotedge" in networks
    for name, service in compose["services"].items():
        image = str(service.get("image", ""))
        assert image and not image.endswith(":latest"), f"{name}: pin the image tag"
        assert ":" in image.rsplit("/", 1)[-1] or image.startswith("${"), f"{name}: no tag"
        assert service.get("restart") in ("unless-stopped", "always"), name
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] == "CMD", f"{name}: health check in exec form"
        assert service.get("networks") == ["iotedge"], name


def test_our_containers_are_locked_down(compose: dict[str, Any]) -> None:
    """sim, edge, api and collector: built from our Dockerfile, read-only root, no capabilities."""
    for name in _OWN_SERVICES:
        service = compose["services"][name]
        assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert (REPO / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]


def test_start_order_waits_for_health(compose: dict[str, Any]) -> None:
    """The edge starts after a healthy simulator; Grafana after a healthy edge and Prometheus."""
    services = compose["services"]
    assert services["edge"]["depends_on"]["sim"]["condition"] == "service_healthy"
    assert services["prometheus"]["depends_on"]["edge"]["condition"] == "service_healthy"
    grafana = services["grafana"]["depends_on"]
    assert grafana["edge"]["condition"] == grafana["prometheus"]["condition"] == "service_healthy"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    """Every volume that is not a bind mount is a declared named volume; state is kept."""
    declared = set(compose["volumes"])
    used: set[str] = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared
    assert {"edge-data", "grafana-data", "prometheus-data"} <= declared


def test_bind_mounts_point_into_the_repository(compose: dict[str, Any]) -> None:
    """Bind-mounted config comes from deploy/ and is mounted read-only."""
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if volume.startswith("."):
                source, _target, mode = volume.split(":")
                assert source.startswith("./deploy/"), f"{name}: {volume}"
                assert mode == "ro", f"{name}: {volume}"


def test_published_ports_stay_on_loopback_by_default(compose: dict[str, Any]) -> None:
    """Every published port binds to BIND_ADDRESS, which defaults to 127.0.0.1."""
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert interpolate(str(port), {}).startswith("127.0.0.1:"), f"{name}: {port}"


def test_required_variables_come_from_env_example(compose: dict[str, Any]) -> None:
    """Each variable compose.yaml needs is in .env.example; each optional one is documented."""
    text = _COMPOSE.read_text()
    example_text = _ENV_EXAMPLE.read_text()
    example = parse_env_file(example_text)
    for name, op in referenced_variables(text).items():
        if op in (None, ":?", "?"):
            assert name in example, f"{name} is required by compose.yaml but not in .env.example"
        else:
            assert name in example_text, f"{name} is not documented in .env.example"


def test_secrets_are_placeholders_and_env_is_ignored() -> None:
    """.env.example holds no real secret, and .env (the real one) is git-ignored."""
    example = parse_env_file(_ENV_EXAMPLE.read_text())
    for key, value in example.items():
        if key.endswith(("_KEY", "_PASSWORD")):
            assert value == "change-me", f"{key} must be a placeholder in .env.example"
    git = shutil.which("git")
    require(git is not None and (REPO / ".git").exists(), "git and a git checkout")
    assert git is not None
    wanted = [".env", "deploy/k8s/secrets.env", "deploy/k8s-scale/postgres.env"]
    ignored = subprocess.run(
        [git, "check-ignore", "--no-index", *wanted],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert ignored.stdout.split() == wanted


def test_compose_refuses_to_start_without_secrets(compose: dict[str, Any]) -> None:
    """With no .env, interpolating the edge's and Grafana's environment fails loudly."""
    for name in ("edge", "grafana"):
        with pytest.raises(KeyError, match="make env"):
            _env(compose["services"][name], {})


def test_grafana_uses_the_cross_client_key(compose: dict[str, Any], variables: dict[str, str]) -> None:
    """Grafana's EDGE_API_KEY is the edge's '*' (read-all) key, and its admin is not admin/admin."""
    edge = _env(compose["services"]["edge"], variables)
    grafana = _env(compose["services"]["grafana"], variables)
    keys = dict(item.split("=", 1) for item in edge["IOTEDGE_API_KEYS"].split(","))
    assert set(keys) == {"client_1", "client_2", "client_3", "*"}
    assert len(set(keys.values())) == 4
    assert grafana["EDGE_API_KEY"] == keys["*"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] not in ("", "admin", "change-me")
    assert "yesoreyeram-infinity-datasource" in grafana["GF_PLUGINS_PREINSTALL_SYNC"]


def test_service_addresses_match_what_they_serve(compose: dict[str, Any], variables: dict[str, str]) -> None:
    """The edge's upstream and sinks name real services on ports those services expose."""
    services = compose["services"]
    edge = _env(services["edge"], variables)
    sim = _env(services["sim"], variables)
    assert sim["IOTEDGE_SIM_HOST"] == edge["IOTEDGE_HOST"] == "0.0.0.0"
    assert edge["IOTEDGE_UPSTREAM"] == f"http://sim:{sim['IOTEDGE_SIM_PORT']}"
    assert sim["IOTEDGE_SIM_PORT"] in services["sim"]["expose"]
    assert {edge["IOTEDGE_PORT"], edge["IOTEDGE_METRICS_PORT"]} <= set(services["edge"]["expose"])
    assert edge["IOTEDGE_SMTP_PORT"] in services[edge["IOTEDGE_SMTP_HOST"]]["expose"]
    assert edge["IOTEDGE_WEBHOOK_URL"].startswith("http://webhook:8080/")
    assert "8080" in services["webhook"]["expose"]
    assert edge["IOTEDGE_DATA_DIR"] == "/data"
    assert "edge-data:/data" in services["edge"]["volumes"]


def test_prometheus_scrapes_the_edge_metrics_port(compose: dict[str, Any]) -> None:
    """The shipped Prometheus config scrapes edge:<IOTEDGE_METRICS_PORT>."""
    services = compose["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    metrics_port = services["edge"]["environment"]["IOTEDGE_METRICS_PORT"]
    assert f"edge:{metrics_port}" in targets


def test_metrics_stay_on_the_compose_network_behind_a_token(
    compose: dict[str, Any], variables: dict[str, str]
) -> None:
    """The metrics port is not published; the edge wants a token that only Prometheus holds."""
    services = compose["services"]
    edge = _env(services["edge"], variables)
    published = [port.rsplit(":", 1)[-1] for port in services["edge"].get("ports", [])]
    assert edge["IOTEDGE_METRICS_PORT"] not in published
    assert edge["IOTEDGE_METRICS_TOKEN"] == variables["METRICS_TOKEN"] != ""
    assert "IOTEDGE_METRICS_PER_OBJECT" not in edge  # per-object series stay off
    assert compose["secrets"]["metrics_token"] == {"environment": "METRICS_TOKEN"}
    assert services["prometheus"]["secrets"] == ["metrics_token"]
    assert not [
        name
        for name, service in services.items()
        if "metrics_token" in service.get("secrets", []) and name != "prometheus"
    ]
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "iotedge-edge")
    assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"


# ---- The scale profile ----

_DEFAULT_SERVICES = {"sim", "edge", "prometheus", "grafana", "mosquitto", "mailpit", "webhook"}
_SCALE_SERVICES = {"postgres", "api", "collector", "lb"}


def _profiles(compose: dict[str, Any]) -> dict[str, list[str]]:
    return {name: service.get("profiles", []) for name, service in compose["services"].items()}


def test_the_default_stack_is_unchanged_by_the_scale_profile(compose: dict[str, Any]) -> None:
    """Without a profile compose runs today's services; the scale ones need --profile scale."""
    profiles = _profiles(compose)
    assert {name for name, names in profiles.items() if not names} == _DEFAULT_SERVICES
    assert {name for name, names in profiles.items() if names} == _SCALE_SERVICES
    assert all(profiles[name] == ["scale"] for name in _SCALE_SERVICES)
    # No default service waits for a scale one (compose would refuse to start without the profile).
    for name in _DEFAULT_SERVICES:
        assert not set(compose["services"][name].get("depends_on", {})) & _SCALE_SERVICES, name


def test_scale_roles_share_the_edge_settings(compose: dict[str, Any], variables: dict[str, str]) -> None:
    """api and collector: the edge's environment, plus their role and the PostgreSQL store."""
    services = compose["services"]
    edge = _env(services["edge"], variables)
    for name in ("api", "collector"):
        env = _env(services[name], variables)
        assert env["IOTEDGE_ROLE"] == name
        assert env["IOTEDGE_EDGE_ID"] == ""  # each replica is named after its host name
        assert set(env) - set(edge) == {"IOTEDGE_ROLE", "IOTEDGE_STORE"}
        same = set(edge) - {"IOTEDGE_EDGE_ID"}
        assert {key: env[key] for key in same} == {key: edge[key] for key in same}, name
        assert services[name]["command"] == services["edge"]["command"] == ["edge"]
        assert services[name]["deploy"]["replicas"] == 2, name
        assert "ports" not in services[name], f"{name}: only lb publishes the API"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        test = services[name]["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "iotedge.healthcheck"]
        assert test[4] == f"http://127.0.0.1:{env['IOTEDGE_PORT']}/readyz"
        assert "/data" in services[name]["tmpfs"], f"{name}: a read-only root needs a scratch /data"
    collector = services["collector"]["depends_on"]
    assert collector["sim"]["condition"] == "service_healthy"


def test_scale_roles_reach_postgresql_with_its_password(
    compose: dict[str, Any], variables: dict[str, str]
) -> None:
    """IOTEDGE_STORE names the postgres service, its user, database, port and .env's password."""
    services = compose["services"]
    postgres = _env(services["postgres"], variables)
    assert postgres["POSTGRES_PASSWORD"] == variables["POSTGRES_PASSWORD"] != ""
    assert "change-me" not in postgres["POSTGRES_PASSWORD"]
    for name in ("api", "collector"):
        store = urlsplit(_env(services[name], variables)["IOTEDGE_STORE"])
        assert store.scheme == "postgresql"
        assert (store.hostname, str(store.port)) == ("postgres", "5432")
        assert str(store.port) in services["postgres"]["expose"]
        assert store.username == postgres["POSTGRES_USER"]
        assert store.password == postgres["POSTGRES_PASSWORD"]
        assert store.path == "/" + postgres["POSTGRES_DB"]


def test_postgresql_is_healthy_only_when_it_accepts_connections(compose: dict[str, Any]) -> None:
    """postgres: pinned official image, pg_isready health check, data on a named volume, not published."""
    postgres = compose["services"]["postgres"]
    image, _, tag = postgres["image"].partition(":")
    assert image == "postgres" and tag and tag != "latest"
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "-d" in postgres["healthcheck"]["test"] and "-U" in postgres["healthcheck"]["test"]
    assert "postgres-data:/var/lib/postgresql/data" in postgres["volumes"]
    assert "ports" not in postgres


def test_one_port_balances_the_api_replicas(compose: dict[str, Any], variables: dict[str, str]) -> None:
    """lb publishes one loopback port and proxies to every address of the api service."""
    services = compose["services"]
    lb = services["lb"]
    api = _env(services["api"], variables)
    (published,) = [interpolate(str(port), variables) for port in lb["ports"]]
    host, host_port, container_port = published.split(":")
    assert (host, host_port) == ("127.0.0.1", "5080")
    assert container_port in lb["expose"]
    (mount,) = lb["volumes"]
    source, target, mode = mount.split(":")
    assert (target, mode) == ("/etc/nginx/nginx.conf", "ro")
    config = (REPO / source).read_text()
    assert re.search(rf"^\s*listen {container_port};", config, re.MULTILINE)
    # Docker's DNS answers with every replica's address; `resolve` keeps following them.
    assert re.search(r"^\s*resolver 127\.0\.0\.11\b", config, re.MULTILINE)
    servers = re.findall(r"^\s*server (\S+) ([^;]*);", config, re.MULTILINE)
    assert servers == [(f"api:{api['IOTEDGE_PORT']}", servers[0][1])]
    assert "resolve" in servers[0][1].split()
    assert re.search(r"^\s*proxy_pass http://iotedge_api;", config, re.MULTILINE)
    assert "pid /tmp/" in config, "a read-only root: the pid file lives in the tmpfs"
    assert lb["user"] != "0" and not lb["user"].startswith("0:")
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"
    test = lb["healthcheck"]["test"]
    assert test[0] == "CMD" and test[-1].startswith(f"http://127.0.0.1:{container_port}/")
