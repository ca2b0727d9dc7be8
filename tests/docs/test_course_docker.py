"""The guide's `docker run` set-ups of the course (Grafana and Prometheus against an edge on the host).

Docker cannot run here, so these checks are static: the published ports, the host name the
containers use to reach the host, the scrape target, and the data source URLs the guide tells
students to type, all against the edge's real defaults.
"""

import re
from pathlib import Path

import pytest
import yaml
from tools.docs_gen.examples import find_blocks

from iotedge.config import load_edge_settings

ROOT = Path(__file__).resolve().parents[2]
GUIDES = [ROOT / "docs" / "guide.md", ROOT / "docs" / "fr" / "guide.md"]
COURSE_YML = ROOT / "deploy" / "prometheus" / "prometheus.course.yml"
HOST = "host.docker.internal"
DEFAULTS = load_edge_settings({})


def _commands(guide: Path) -> list[str]:
    blocks = [b for b in find_blocks(guide) if b.info.split()[:2] == ["sh", "course-docker"]]
    return [re.sub(r"\\\n\s*", "", block.code) for block in blocks]


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_edge_listens_where_containers_reach_it(guide: Path) -> None:
    """The edge is started on every interface, so `host.docker.internal` reaches both its servers."""
    assert any(c.split() == [".venv/bin/iotedge", "run", "--host", "0.0.0.0"] for c in _commands(guide))


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: str(p.relative_to(ROOT)))
def test_grafana_containers_publish_3000_and_know_the_host(guide: Path) -> None:
    """Both Grafana commands publish 3000, add host.docker.internal (Linux), and pin a version."""
    grafana = [c for c in _commands(guide) if "grafana/grafana" in c]
    assert len(grafana) == 2
    for command in grafana:
        assert "-p 3000:3000" in command and f"--add-host {HOST}:host-gateway" in command
    latest, angular = grafana
    # Grafana 12 cannot load the Angular Simple JSON plugin: the default set-up uses simPod JSON.
    assert re.search(r"grafana/grafana:12\.\d+\.\d+", latest) and "simpod-json-datasource" in latest
    assert "simple-json" not in latest
    assert re.search(r"grafana/grafana:11\.\d+\.\d+", angular)
    assert (
        "GF_SECURITY_ANGULAR_SUPPORT_ENABLED=true" in angular and "grafana-simple-json-datasource" in angular
    )


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: str(p.relative_to(ROOT)))
def test_prometheus_container_scrapes_the_edge_on_the_host(guide: Path) -> None:
    """Prometheus publishes 9090 and mounts the course's prometheus.yml, aimed at the edge's metrics port."""
    (prometheus,) = [c for c in _commands(guide) if "prom/prometheus" in c]
    assert "-p 9090:9090" in prometheus and f"--add-host {HOST}:host-gateway" in prometheus
    mount = re.search(r'-v "\$\(pwd\)/([^:]+):/etc/prometheus/prometheus\.yml"', prometheus)
    assert mount is not None and (ROOT / mount.group(1)) == COURSE_YML
    config = yaml.safe_load(COURSE_YML.read_text())
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"{HOST}:{DEFAULTS.metrics_port}"]


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: str(p.relative_to(ROOT)))
def test_data_source_urls_name_the_host_and_the_right_ports(guide: Path) -> None:
    """Grafana's URLs: the edge API and Prometheus through host.docker.internal, never localhost."""
    text = guide.read_text()
    assert f"`http://{HOST}:{DEFAULTS.port}`" in text
    assert f"`http://{HOST}:9090`" in text
