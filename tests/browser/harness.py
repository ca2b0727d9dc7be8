"""Headless Debian Chromium driven by Playwright, and helpers for the console's pages.

Playwright never downloads a browser here: it drives the system ``chromium``. Every page
records its console errors and its CSP violations so tests can assert there are none.
"""

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"

# Runs before the page's own scripts; CSP does not apply to it (it comes through the DevTools protocol).
_WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


@dataclass
class Watched:
    """A page and what went wrong on it."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        """CSP violations the page reported so far."""
        return list(self.page.evaluate("window.__csp || []"))

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and CSP violations."""
        return [*self.errors, *(f"CSP: {v}" for v in self.csp_violations())]


def open_page(browser: Any, *, locale: str = "en-GB", ignore: tuple[str, ...] = ()) -> Watched:
    """A fresh context and page that records console errors (except those matching ``ignore``)."""
    context = browser.new_context(locale=locale, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.add_init_script(_WATCH_CSP)
    watched = Watched(page)

    def on_console(message: Any) -> None:
        if message.type == "error" and not any(text in message.text for text in ignore):
            watched.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.errors.append(f"uncaught: {exc}"))
    return watched


def login(watched: Watched, base_url: str, key: str) -> None:
    """Open the console and sign in with ``key``."""
    page = watched.page
    page.goto(base_url + "/ui/")
    page.fill("#key-input", key)
    page.click("#login-form button[type=submit]")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def dump(items: Any) -> str:
    """Readable assertion text."""
    return json.dumps(items, indent=1, default=str)[:3000]
