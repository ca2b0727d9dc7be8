"""The browser tests' shared fixture: one headless Debian Chromium per module."""

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import require


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    require(
        shutil.which("chromium") is not None, "Debian chromium is not installed (apt-get install chromium)"
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package is not installed (pip install -e '.[dev]')")
        raise
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
