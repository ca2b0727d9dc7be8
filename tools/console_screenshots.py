"""Screenshots of the web console's views from a seeded run (``make screenshots``).

Starts a simulator (fixed seed) and an edge on free loopback ports, signs in with the cloud
key in headless Debian chromium, and writes ``docs/images/console-<view>.png``. It also
prints the page weight (bytes the console page loads) and the time to first data on
loopback (navigation start to the first fleet row drawn).
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
KEY = "screenshot-cloud-key-0123456789"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout} s")


def _shoot(base: str) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 760}, locale="en-GB")
        loaded: list[int] = []
        page.on("response", lambda r: loaded.append(len(r.body())) if "/ui/" in r.url else None)
        page.goto(base + "/ui/")
        page.fill("#key-input", KEY)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#fleet-results tbody tr")
        print(f"page weight: {sum(loaded) / 1024:.1f} KiB in {len(loaded)} files")  # noqa: T201
        started = time.monotonic()
        page.reload()
        page.wait_for_selector("#fleet-results tbody tr")
        print(f"time to first data (reload, key in session): {1000 * (time.monotonic() - started):.0f} ms")  # noqa: T201
        views = {"fleet": "#fleet-results tbody tr", "object/device_1": ".chart canvas",
                 "anomalies": "#anomaly-results table", "status": "#status-cards .card"}  # fmt: skip
        for view, ready in views.items():
            page.evaluate(f"window.location.hash = '#/{view}'")
            page.wait_for_selector(ready)
            time.sleep(1.5)  # let a live refresh settle so every chart and gauge is drawn
            name = view.split("/")[0]
            page.screenshot(path=str(IMAGES / f"console-{name}.png"), full_page=False)
            print(f"wrote docs/images/console-{name}.png")  # noqa: T201
        browser.close()


def main() -> None:
    """Run the seeded stack, take the screenshots, stop the stack."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTEDGE_")}
    sim_port, edge_port = _port(), _port()
    sim_url, edge_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{edge_port}"
    py = [sys.executable, "-m", "iotedge"]
    with tempfile.TemporaryDirectory() as data:
        sim_cmd = [*py, "sim", "--port", str(sim_port), "--seed", "42", "--interval", "2s",
                   "--anomaly-rate", "0.5", "--anomaly-slot", "300s"]  # fmt: skip
        edge_cmd = [*py, "edge", "--port", str(edge_port), "--upstream", sim_url, "--data-dir", data,
                    "--poll-interval", "2s", "--metrics-port", "0", "--edge-id", "demo-edge"]  # fmt: skip
        edge_env = {**env, "IOTEDGE_API_KEYS": f"*={KEY}"}
        quiet = subprocess.DEVNULL
        procs = [subprocess.Popen(sim_cmd, env=env, stdout=quiet, stderr=quiet)]  # noqa: S603 - our own command line
        try:
            _wait(sim_url + "/healthz")
            procs.append(subprocess.Popen(edge_cmd, env=edge_env, stdout=quiet, stderr=quiet))  # noqa: S603
            _wait(edge_url + "/readyz")
            _shoot(edge_url)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
