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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from iotedge.errors import AuthError, ConfigError

__all__ = [
    "ALL_CLIENTS",
    "KeyRecord",
    "KeyRing",
    "KeySource",
    "Principal",
    "create_key",
    "delete_client",
    "generate_key",
    "hash_key",
    "list_keys",
    "match_key",
    "read_usage",
    "revoke_keys",
    "usage_path",
    "validate_client",
]

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


def usage_path(path: Path) -> Path:
    """The sidecar file where the edge records when each key was last used."""
    return path.with_name(path.name + ".used")


def read_usage(path: Path) -> dict[str, float]:
    """Key id -> last use (epoch seconds) from the sidecar of keys file ``path``."""
    try:
        data = json.loads(usage_path(path).read_text())
        return {str(key_id): float(ts) for key_id, ts in data.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.chmod(0o600)
    os.replace(tmp, path)


_Epoch = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]


class _KeyEntry(BaseModel):
    """One key of the file, as :class:`KeyRecord` holds it; unknown fields are errors (typos)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=100)
    client: str = Field(min_length=1, max_length=200)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: _Epoch
    expires_at: _Epoch | None = None
    revoked_at: _Epoch | None = None


class _KeysFile(BaseModel):
    """The whole keys file: validated at once, so a bad entry rejects the file, not one request."""

    model_config = ConfigDict(extra="forbid")

    keys: list[_KeyEntry]

    @model_validator(mode="after")
    def _unique_ids(self) -> "_KeysFile":
        seen: set[str] = set()
        for entry in self.keys:
            if entry.id in seen:
                raise ValueError(f"key id {entry.id!r} appears twice")
            seen.add(entry.id)
        return self


def _first_problem(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first.get("loc", ()))
    where = where.lstrip(".") or "file"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def _read_file(path: Path) -> list[KeyRecord]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"keys file {path} is unreadable: {exc.strerror or exc}") from exc
    try:
        parsed = _KeysFile.model_validate_json(text)
    except ValidationError as exc:
        raise ConfigError(f"keys file {path} is invalid: {_first_problem(exc)}") from None
    return [KeyRecord(**entry.model_dump()) for entry in parsed.keys]


def write_keys_file(path: Path, records: list[KeyRecord]) -> None:
    """Replace the keys file atomically, readable by its owner only."""
    _write_json(path, {"keys": [r.as_json() for r in records]})


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


class KeySource(Protocol):
    """What the API needs of its keys: :class:`KeyRing` (a keys file) or the PostgreSQL store's
    ``iotedge.edge.store.postgres.keys.PgKeyRing``.

    ``authenticate`` answers from memory, never waiting on a file or a database.
    """

    def __len__(self) -> int:
        """How many keys are known (environment keys included)."""

    def authenticate(self, key: str | None) -> Principal:
        """The principal of ``key``; raises AuthError when missing, unknown, revoked or expired."""

    def reload(self) -> None:
        """Read the keys again (SIGHUP)."""

    def flush_usage(self) -> None:
        """Record the last-use times seen so far."""


def validate_client(client: str) -> None:
    """Raise ConfigError unless ``client`` can name a key's client (no separators, 1-200 chars)."""
    if not client or len(client) > 200 or any(ch in client for ch in ",= \t\n"):
        raise ConfigError(f"invalid client name {client!r}")


def match_key(
    by_hash: Mapping[str, KeyRecord], key: str | None, now: float, *, revoked_at_any_time: bool = False
) -> KeyRecord:
    """The valid record of ``key`` among ``by_hash`` (hash -> record) at ``now``.

    ``revoked_at_any_time``: a revocation counts whatever its time (keys revoked on another
    host, whose clock may run ahead of ours).

    Raises:
        AuthError: when the key is missing, malformed, unknown, revoked or expired.
    """
    key = key.strip() if key else key  # a copied key often brings a space or newline along
    if not key or len(key) > 256:
        raise AuthError("missing or malformed key")
    digest = hash_key(key)
    record = by_hash.get(digest)
    if record is None or not hmac.compare_digest(record.hash, digest):
        raise AuthError("unknown key")
    if record.revoked_at is not None and (revoked_at_any_time or record.revoked_at <= now):
        raise AuthError(f"key {record.id} revoked")
    if record.expires_at is not None and record.expires_at <= now:
        raise AuthError(f"key {record.id} expired")
    return record


class KeyRing:
    """The valid keys, from a keys file (re-read when it changes) and the environment.

    Args:
        path: the keys file (may not exist yet).
        env_keys: the ``IOTEDGE_API_KEYS`` text.
        clock: wall clock for expiry.
        recheck_s: how often at most the file's modification time is looked at.
        usage_flush_s: how often at most last-use times are written to the sidecar file.
    """

    def __init__(
        self,
        path: Path,
        *,
        env_keys: str = "",
        clock: Callable[[], float] = time.time,
        recheck_s: float = 1.0,
        usage_flush_s: float = 60.0,
    ) -> None:
        self.path = path
        self._env = parse_env_keys(env_keys)
        self._clock = clock
        self._recheck_s = recheck_s
        self._usage_flush_s = usage_flush_s
        self._checked_at = float("-inf")
        self._mtime: float | None = None
        self._by_hash: dict[str, KeyRecord] = {}
        self._used: dict[str, float] = {}
        self._flushed_at = time.monotonic()
        self.reload()

    def reload(self) -> None:
        """Read the keys file again (also done automatically when it changes, and on SIGHUP)."""
        try:  # the time first: a change racing with the read is then seen at the next check
            mtime: float | None = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        records = [*self._env, *_read_file(self.path)]
        self._by_hash = {record.hash: record for record in records}
        self._mtime = mtime

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
        if key and len(key.strip()) <= 256:  # nothing to look at the file for otherwise
            self._maybe_reload()
        now = self._clock()
        record = match_key(self._by_hash, key, now)
        self._used[record.id] = now
        if time.monotonic() - self._flushed_at >= self._usage_flush_s:
            self.flush_usage()
        return Principal(key_id=record.id, client=record.client)

    def flush_usage(self) -> None:
        """Merge the last-use times seen since the previous flush into the sidecar file."""
        self._flushed_at = time.monotonic()
        if not self._used:
            return
        merged = read_usage(self.path)
        for key_id, ts in self._used.items():
            merged[key_id] = max(ts, merged.get(key_id, 0.0))
        try:
            _write_json(usage_path(self.path), merged)
        except OSError as exc:
            _log.warning("cannot record key use in %s: %s", usage_path(self.path), exc)
            return
        self._used.clear()


def create_key(path: Path, client: str, *, expires_at: float | None = None) -> tuple[KeyRecord, str]:
    """Add a new key for ``client`` to the keys file; returns its record and the key itself."""
    validate_client(client)
    records = _read_file(path)
    key_id, key = generate_key()
    while any(r.id == key_id for r in records):  # 32 bits of id: collisions are rare, not impossible
        key_id, key = generate_key()
    record = KeyRecord(
        id=key_id, client=client, hash=hash_key(key), created_at=time.time(), expires_at=expires_at
    )
    write_keys_file(path, [*records, record])
    return record, key


def list_keys(path: Path) -> list[KeyRecord]:
    """The keys in the file, oldest first."""
    return sorted(_read_file(path), key=lambda r: r.created_at)


def revoke_keys(path: Path, *, key_ids: Iterable[str] = (), client: str | None = None) -> list[KeyRecord]:
    """Mark keys revoked now (by id, or every key of ``client``); returns the newly revoked.

    Raises:
        ConfigError: when a key id is not in the file.
    """
    wanted = set(key_ids)
    records = _read_file(path)
    missing = wanted - {r.id for r in records}
    if missing:
        raise ConfigError(f"no key with id {', '.join(sorted(missing))} in {path}")
    now = time.time()
    revoked, kept = [], []
    for record in records:
        if record.revoked_at is None and (record.id in wanted or record.client == client):
            record = replace(record, revoked_at=now)
            revoked.append(record)
        kept.append(record)
    write_keys_file(path, kept)
    return revoked


def delete_client(path: Path, client: str) -> int:
    """Remove every key of ``client`` from the file (the client is gone); returns how many."""
    records = _read_file(path)
    kept = [r for r in records if r.client != client]
    write_keys_file(path, kept)
    return len(records) - len(kept)
