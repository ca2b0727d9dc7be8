"""The shipped Prometheus config and alert rules pass promtool and match the edge's metrics."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from iotedge.edge.metrics import EdgeMetrics
from tests.conftest import require
from tests.unit.test_metrics import SAMPLE

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
CONFIGS = ("prometheus.yml", "prometheus.local.yml", "prometheus.tls.yml")
_FILE_KEYS = ("credentials_file", "ca_file", "cert_file", "key_file", "password_file")
# Functions, keywords and labels that look like names in PromQL but are not metrics.
_NOT_METRICS = {"edge_id"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool in the Prometheus directory (rule paths are relative to it)."""
    require(shutil.which("promtool") is not None, "promtool missing (Debian package prometheus)")
    return subprocess.run(
        ["promtool", *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _with_stub_secrets(config: str, workdir: Path) -> Path:
    """A copy of ``config`` and its rules in ``workdir``, every secret file it names stubbed.

    promtool checks that token and CA files exist; they are made at deploy time (compose
    secrets, `iotedge certs`), so the check runs on a copy that points at stand-ins.
    """
    for path in PROMETHEUS_DIR.iterdir():
        shutil.copy(path, workdir / path.name)
    lines = []
    for line in (PROMETHEUS_DIR / config).read_text().splitlines():
        key, _, value = line.strip().partition(":")
        if key in _FILE_KEYS and value.strip():
            stub = workdir / ("stub-" + Path(value.strip()).name)
            stub.write_text("stand-in\n")
            line = line.replace(value.strip(), str(stub))
        lines.append(line)
    checked = workdir / config
    checked.write_text("\n".join(lines) + "\n")
    return checked


@pytest.mark.parametrize("config", CONFIGS)
def test_config_is_valid(config: str, tmp_path: Path) -> None:
    """promtool check config accepts each shipped configuration and its rule files."""
    result = promtool("check", "config", str(_with_stub_secrets(config, tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_edge_scrapes_carry_the_token() -> None:
    """The compose and TLS configs send the metrics token; the TLS one verifies the edge."""
    for config in ("prometheus.yml", "prometheus.tls.yml"):
        job = next(
            job
            for job in yaml.safe_load((PROMETHEUS_DIR / config).read_text())["scrape_configs"]
            if job["job_name"] == "iotedge-edge"
        )
        assert job["authorization"]["credentials_file"], config
    tls_job = yaml.safe_load((PROMETHEUS_DIR / "prometheus.tls.yml").read_text())["scrape_configs"][0]
    assert tls_job["scheme"] == "https" and tls_job["tls_config"]["ca_file"]


def test_rules_are_valid() -> None:
    """promtool check rules accepts the alert rules."""
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    """The alert rules fire and stay quiet as alerts_test.yml expects."""
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_edge_is_scraped_every_five_seconds() -> None:
    """Both configs scrape the iotedge-edge job every 5 s at the edge's metrics port."""
    for config, target in zip(CONFIGS, ("edge:8001", "127.0.0.1:8001", "127.0.0.1:8001"), strict=True):
        text = (PROMETHEUS_DIR / config).read_text()
        job = text[text.index("job_name: iotedge-edge") :]
        assert "scrape_interval: 5s" in job.split("job_name:")[1]
        assert f'"{target}"' in job


def test_rules_only_use_metrics_the_edge_exports() -> None:
    """Every metric an alert rule names exists in a scrape of EdgeMetrics (no typos)."""
    registry = CollectorRegistry()
    EdgeMetrics(registry=registry, edge_id="edge-a", container=lambda: SAMPLE)
    exported = {family.name for family in text_string_to_metric_families(generate_latest(registry).decode())}
    exported |= {name + "_total" for name in exported}  # the parser strips _total off counters
    rules = (PROMETHEUS_DIR / "alerts.yml").read_text()
    expressions = "\n".join(re.findall(r"expr: (\|\n(?:\s{10}.*\n)+|.*)", rules))
    named = set(re.findall(r"\b((?:edge|iotedge|process)_[a-z_]+)\b", expressions)) - _NOT_METRICS
    assert named  # the pattern found the rules' metrics at all
    assert sorted(named - exported) == []
