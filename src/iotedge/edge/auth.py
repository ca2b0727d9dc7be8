"""API keys: generation, hashed storage, lookup, and the principal a key stands for.

A key looks like ``iek_<id>_<secret>``: the public id names it in logs and in
``iotedge keys list``; only the SHA-256 of the whole key is stored. Keys are 32 random
bytes, so a fast hash is enough (no password stretching needed), and the comparison is
constant-time. Keys given in the environment (``IOTEDGE_API_KEYS``) may have any form.
"""

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotedge.errors import AuthError, ConfigError

__all__ = ["ALL_CLIENTS", "KeyRecord", "KeyRing", "Principal", "generate_key", "hash_key"]

_log = logging.getLogger(__name__)

ALL_CLIENTS = "*"
"""The client of a cross-client, read-only key (the cloud side: Grafana)."""

_PREFIX = "iek_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: one client, or every client (read-only cloud scope)."""

    key_id: str
    client: str

    @property
    def scope(self) -> frozenset[str] | None:
        """The clients this principal may see (None = all); what every store query takes."""
        return None if self.client == ALL_CLIENTS else frozenset({self.client})

    def can_see(self, client: str) -> bool:
        """Whether data of ``client`` is visible to this principal."""
        return self.client in (ALL_CLIENTS, client)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One stored key: never the key itself, only its hash."""

    id: str
    client: str
    hash: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        """The keys-file form."""
        return {
            "id": self.id,
            "client": self.client,
            "hash": self.hash,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        }


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> tuple[str, str]:
    """A new (key id, key) pair."""
    key_id = secrets.token_hex(4)
    return key_id, f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def _read_file(path: Path) -> list[KeyRecord]:
    try:
        data = json.loads(path.read_text())
        return [KeyRecord(**item) for item in data.get("keys", [])]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"keys file {path} is unreadable: {exc}") from exc


def write_keys_file(path: Path, records: list[KeyRecord]) -> None:
    """Replace the keys file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"keys": [r.as_json() for r in records]}, indent=2) + "\n")
    tmp.chmod(0o600)
    os.replace(tmp, path)


def parse_env_keys(text: str) -> list[KeyRecord]:
    """Keys from ``client=KEY,client=KEY`` (``*=KEY`` for the cross-client read scope)."""
    records = []
    for part in text.split(","):
        if not part.strip():
            continue
        client, sep, key = part.strip().partition("=")
        if not sep or not client.strip() or len(key.strip()) < 16:
            raise ConfigError("IOTEDGE_API_KEYS: each entry must be client=KEY with a key of 16+ characters")
        digest = hash_key(key.strip())
        records.append(KeyRecord(id="env-" + digest[:8], client=client.strip(), hash=digest, created_at=0.0))
    return records


class KeyRing:
    """The valid keys, from a keys file (re-read when it changes) and the environment.

    Args:
        path: the keys file (may not exist yet).
        env_keys: the ``IOTEDGE_API_KEYS`` text.
        clock: wall clock for expiry.
        recheck_s: how often at most the file's modification time is looked at.
    """

    def __init__(
        self,
        path: Path,
        *,
        env_keys: str = "",
        clock: Callable[[], float] = time.time,
        recheck_s: float = 1.0,
    ) -> None:
        self.path = path
        self._env = parse_env_keys(env_keys)
        self._clock = clock
        self._recheck_s = recheck_s
        self._checked_at = float("-inf")
        self._mtime: float | None = None
        self._by_hash: dict[str, KeyRecord] = {}
        self.reload()

    def reload(self) -> None:
        """Read the keys file again (also done automatically when it changes)."""
        records = [*self._env, *_read_file(self.path)]
        self._by_hash = {record.hash: record for record in records}
        try:
            self._mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._mtime = None

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self._recheck_s:
            return
        self._checked_at = now
        try:
            mtime: float | None = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            try:
                self.reload()
            except ConfigError as exc:
                _log.error("keeping the previous keys: %s", exc)

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, key: str | None) -> Principal:
        """The principal of ``key``.

        Raises:
            AuthError: when the key is missing, unknown, revoked or expired.
        """
        if not key or len(key) > 256:
            raise AuthError("missing or malformed key")
        self._maybe_reload()
        digest = hash_key(key)
        record = self._by_hash.get(digest)
        if record is None or not hmac.compare_digest(record.hash, digest):
            raise AuthError("unknown key")
        now = self._clock()
        if record.revoked_at is not None and record.revoked_at <= now:
            raise AuthError(f"key {record.id} revoked")
        if record.expires_at is not None and record.expires_at <= now:
            raise AuthError(f"key {record.id} expired")
        return Principal(key_id=record.id, client=record.client)


def create_key(path: Path, client: str, *, expires_at: float | None = None) -> tuple[KeyRecord, str]:
    """Add a new key for ``client`` to the keys file; returns its record and the key itself."""
    if not client or any(ch in client for ch in ",= \t\n"):
        raise ConfigError(f"invalid client name {client!r}")
    key_id, key = generate_key()
    record = KeyRecord(
        id=key_id, client=client, hash=hash_key(key), created_at=time.time(), expires_at=expires_at
    )
    write_keys_file(path, [*_read_file(path), record])
    return record, key
