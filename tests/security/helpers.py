"""Shared pieces of the security tests: the keys CLI as a subprocess, an edge with a keys file."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

__all__ = ["UNAUTHORIZED", "cli", "create_key", "get", "keys_list"]

UNAUTHORIZED = {"error": "Unauthorized"}
"""The course's 401 body."""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m iotedge ARGS``; fails the test when it exits non-zero."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTEDGE_")}
    result = subprocess.run(
        [sys.executable, "-m", "iotedge", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result


def create_key(keys_file: Path, client: str, *extra: str) -> tuple[str, str]:
    """``iotedge keys create``: returns (key id, key) as printed."""
    out = cli("keys", "create", "--client", client, "--keys-file", str(keys_file), *extra).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return fields["key id"].strip(), fields["key"].strip()


def keys_list(keys_file: Path) -> dict[str, dict[str, Any]]:
    """``iotedge keys list --json`` by key id."""
    out = cli("keys", "list", "--json", "--keys-file", str(keys_file)).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {row["id"]: row for row in rows}


def get(url: str, key: str | None, path: str = "/objects", **kwargs: Any) -> httpx.Response:
    """GET ``path`` with ``key`` in x-api-key (no header when None)."""
    headers = {} if key is None else {"x-api-key": key}
    return httpx.get(url + path, headers=headers, timeout=10, **kwargs)
