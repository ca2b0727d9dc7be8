"""deploy/prometheus: promtool accepts the configuration and every rules file."""

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require
from tests.delivery.compose_env import REPO

_DIR = REPO / "deploy/prometheus"
_CONFIG = _DIR / "prometheus.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool (Debian package prometheus)")
    assert promtool is not None
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, check=False)


def _rule_files() -> list[Path]:
    return sorted(p for p in _DIR.glob("*.y*ml") if p.name != _CONFIG.name)


def test_config_is_valid() -> None:
    """promtool check config succeeds (and checks every rules file the config names)."""
    result = _promtool("check", "config", str(_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("path", _rule_files(), ids=lambda p: p.name)
def test_rules_are_valid(path: Path) -> None:
    """promtool check rules succeeds on each rules file shipped beside the config."""
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    """promtool fails on a config with an unknown field, so a success means something."""
    broken = tmp_path / "prometheus.yml"
    broken.write_text(_CONFIG.read_text() + "\nscrape_intervall: 5s\n")
    result = _promtool("check", "config", str(broken))
    assert result.returncode != 0
