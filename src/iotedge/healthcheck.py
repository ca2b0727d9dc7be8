"""Container health probe: ``python -m iotedge.healthcheck [URL]`` exits 0 when /healthz answers.

Standard library only, so that it stays cheap to run every few seconds. Without a URL it
works out which role the container runs from the command line of process 1 (the image's
entry point) and the ``IOTEDGE_*`` variables, so one image-level HEALTHCHECK serves both
``iotedge sim`` and ``iotedge edge``.
"""

import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["health_url", "main", "probe"]

_ROLES = ("sim", "edge", "run")
_DEFAULT_PORTS = {"sim": 8000, "edge": 5000}


def _flag(argv: Sequence[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def health_url(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    """The /healthz URL of the iotedge server that ``argv`` starts, on 127.0.0.1."""
    role = next((arg for arg in argv if arg in _ROLES), "edge")
    if role == "run":
        role = "edge"  # the demo runs both; the edge is the one that matters
    prefix = "IOTEDGE_SIM_" if role == "sim" else "IOTEDGE_"
    port = _flag(argv, "--port") or environ.get(prefix + "PORT") or str(_DEFAULT_PORTS[role])
    tls = role == "edge" and bool(_flag(argv, "--certfile") or environ.get("IOTEDGE_CERTFILE"))
    scheme = "https" if tls else "http"
    return f"{scheme}://127.0.0.1:{int(port)}/healthz"


def _pid1_argv() -> list[str]:
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def probe(url: str, timeout: float = 3.0) -> str | None:
    """None when ``url`` answers 2xx within ``timeout`` seconds, else the reason it failed."""
    context = None
    if url.startswith("https://"):
        # The probe runs inside the container against its own (possibly self-signed) cert.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if 200 <= status < 300 else f"HTTP {status}"


def main(argv: Sequence[str] | None = None) -> int:
    """Probe the URL given as the only argument, or the one derived from process 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    url = args[0] if args else health_url(_pid1_argv(), os.environ)
    problem = probe(url)
    if problem is None:
        return 0
    sys.stderr.write(f"unhealthy: {url}: {problem}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
