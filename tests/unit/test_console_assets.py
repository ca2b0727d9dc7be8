"""The console's language choice, and its vendored files against their manifest."""

import subprocess
import sys
from pathlib import Path

import pytest

from iotedge.edge.ui import STATIC_DIR
from iotedge.edge.ui.lang import pick_language

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, "en", id="no-header"),
        pytest.param("fr-FR,fr;q=0.9,en;q=0.8", "fr", id="french-first"),
        pytest.param("en-US,fr;q=0.5", "en", id="english-first"),
        pytest.param("de-DE,fr;q=0.4", "fr", id="unsupported-then-french"),
        pytest.param("fr;q=0.2,en;q=0.9", "en", id="q-wins-over-order"),
        pytest.param("fr;q=0,en;q=bad", "en", id="zero-and-bad-q"),
        pytest.param("*", "en", id="wildcard"),
    ],
)
def test_pick_language(header: str | None, expected: str) -> None:
    """Accept-Language picks fr or en, honouring q values; anything else falls back to en."""
    assert pick_language(header) == expected


def test_vendored_files_match_their_manifest() -> None:
    """Every vendored file has the sha256 its MANIFEST.json records."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "vendor_assets.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_console_scripts_never_use_inner_html() -> None:
    """The page builds its DOM with textContent only: no innerHTML, outerHTML or document.write."""
    for script in (STATIC_DIR / "js").glob("*.js"):
        text = script.read_text()
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert banned not in text, f"{script.name} uses {banned}"
