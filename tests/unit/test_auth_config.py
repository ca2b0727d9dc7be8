"""API keys (hashing, file, environment, expiry) and settings loading."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iotedge.config import load_edge_settings, load_sim_settings, parse_duration
from iotedge.edge.auth import KeyRing, create_key, hash_key, parse_env_keys
from iotedge.errors import AuthError, ConfigError


def test_created_key_is_stored_only_as_a_hash(tmp_path: Path) -> None:
    """The keys file holds the hash and id, never the key; the key authenticates."""
    path = tmp_path / "keys.json"
    record, key = create_key(path, "client_1")
    text = path.read_text()
    assert key not in text
    assert hash_key(key) in text
    assert key.startswith(f"iek_{record.id}_")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    principal = KeyRing(path).authenticate(key)
    assert (principal.client, principal.key_id, principal.scope) == (
        "client_1",
        record.id,
        frozenset({"client_1"}),
    )


@pytest.mark.parametrize("key", [None, "", "x" * 300, "iek_nope_nope"])
def test_bad_keys_are_refused(tmp_path: Path, key: str | None) -> None:
    """Missing, oversized and unknown keys raise AuthError."""
    ring = KeyRing(tmp_path / "none.json", env_keys="client_1=0123456789abcdef")
    with pytest.raises(AuthError):
        ring.authenticate(key)


def test_env_keys_and_cloud_scope(tmp_path: Path) -> None:
    """IOTEDGE_API_KEYS entries work; '*' sees every client."""
    ring = KeyRing(tmp_path / "none.json", env_keys="client_1=aaaaaaaaaaaaaaaa, *=bbbbbbbbbbbbbbbb")
    assert ring.authenticate("aaaaaaaaaaaaaaaa").can_see("client_1")
    assert not ring.authenticate("aaaaaaaaaaaaaaaa").can_see("client_2")
    cloud = ring.authenticate("bbbbbbbbbbbbbbbb")
    assert cloud.scope is None
    assert cloud.can_see("client_2")


@pytest.mark.parametrize("text", ["client_1", "client_1=short", "=aaaaaaaaaaaaaaaaaa"])
def test_bad_env_keys_are_config_errors(text: str) -> None:
    """A malformed IOTEDGE_API_KEYS names the variable."""
    with pytest.raises(ConfigError, match="IOTEDGE_API_KEYS"):
        parse_env_keys(text)


def test_expired_and_revoked_keys_and_reload(tmp_path: Path) -> None:
    """Expiry and revocation in the file take effect without a restart."""
    path = tmp_path / "keys.json"
    now = [1000.0]
    _, key = create_key(path, "client_1")
    ring = KeyRing(path, clock=lambda: now[0], recheck_s=0)
    assert ring.authenticate(key).client == "client_1"
    data = json.loads(path.read_text())
    data["keys"][0]["revoked_at"] = 500.0
    path.write_text(json.dumps(data))
    import os

    os.utime(path, (2e9, 2e9))
    with pytest.raises(AuthError, match="revoked"):
        ring.authenticate(key)
    data["keys"][0]["revoked_at"] = None
    data["keys"][0]["expires_at"] = 999.0
    path.write_text(json.dumps(data))
    os.utime(path, (2e9 + 1, 2e9 + 1))
    with pytest.raises(AuthError, match="expired"):
        ring.authenticate(key)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5", 5.0), ("5s", 5.0), ("250ms", 0.25), ("15m", 900.0), ("2h", 7200.0), ("7d", 604800.0)],
)
def test_durations(text: str, seconds: float) -> None:
    """Durations accept plain seconds and ms/s/m/h/d suffixes."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5s", "infs", "nan"])
def test_bad_durations(text: str) -> None:
    """Anything else is a ValueError."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_settings_precedence_and_errors() -> None:
    """Flags beat the environment, which beats defaults; errors name the variable."""
    env = {"IOTEDGE_PORT": "6000", "IOTEDGE_POLL_INTERVAL": "2s", "IOTEDGE_SIM_SEED": "7"}
    assert load_edge_settings(env).port == 6000
    assert load_edge_settings(env, port=7000).port == 7000
    assert load_edge_settings(env).poll_interval == 2.0
    assert load_sim_settings(env).seed == 7
    assert load_edge_settings({}).port == 5000
    with pytest.raises(ConfigError, match="IOTEDGE_PORT"):
        load_edge_settings({"IOTEDGE_PORT": "eighty"})
    with pytest.raises(ConfigError, match="--upstream"):
        load_edge_settings({}, upstream="ftp://x")
    with pytest.raises(ConfigError) as caught:
        load_edge_settings({}, poll_interval="5x")
    assert str(caught.value).startswith("option --poll-interval: not a duration: '5x'")  # no pydantic prefix


def test_rollups_are_kept_at_least_as_long_as_readings() -> None:
    """Rollups default to 400 days beside 7 of readings; a shorter rollup retention is refused."""
    settings = load_edge_settings({"IOTEDGE_ROLLUP_RETENTION": "30d"}, retention="2d")
    assert (settings.retention, settings.rollup_retention) == (2 * 86400, 30 * 86400)
    assert load_edge_settings({}).rollup_retention == 400 * 86400
    with pytest.raises(ConfigError, match="rollup_retention must be at least retention"):
        load_edge_settings({}, retention="30d", rollup_retention="7d")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(
            lambda d: d["keys"][0].update(expires_at="2027-01-01"), "keys[0].expires_at", id="string-date"
        ),
        pytest.param(lambda d: d["keys"][0].update(created_at=None), "keys[0].created_at", id="null-created"),
        pytest.param(lambda d: d["keys"][0].update(hash="abc"), "keys[0].hash", id="short-hash"),
        pytest.param(lambda d: d["keys"][0].update(expire_at=1.0), "keys[0].expire_at", id="typo"),
        pytest.param(lambda d: d["keys"].append(dict(d["keys"][0])), "appears twice", id="duplicate-id"),
        pytest.param(lambda d: d.update(keys={}), "keys", id="not-a-list"),
    ],
)
def test_keys_file_is_validated_whole_and_last_good_keys_stay(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], named: str
) -> None:
    """A bad entry rejects the file with one error naming the field; a running ring keeps its keys."""
    path = tmp_path / "keys.json"
    _, key = create_key(path, "client_1")
    ring = KeyRing(path, recheck_s=0)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    import os

    os.utime(path, (2e9, 2e9))
    with pytest.raises(ConfigError, match="is invalid") as caught:
        KeyRing(path)
    assert named in str(caught.value) and "\n" not in str(caught.value)
    assert ring.authenticate(key).client == "client_1"  # the reload failed: last good keys kept
    with pytest.raises(ConfigError):
        ring.reload()
    assert ring.authenticate(key).client == "client_1"


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe\x00", b"[]"])
def test_unreadable_keys_files_are_one_config_error(tmp_path: Path, raw: bytes) -> None:
    """Malformed JSON or bytes that are not UTF-8 give a ConfigError, never another exception."""
    path = tmp_path / "keys.json"
    path.write_bytes(raw)
    with pytest.raises(ConfigError, match="keys file"):
        KeyRing(path)


@pytest.mark.parametrize("padding", [" ", "\t", "  \t "])
def test_whitespace_around_a_key_is_ignored(tmp_path: Path, padding: str) -> None:
    """A key pasted with surrounding blanks still authenticates."""
    ring = KeyRing(tmp_path / "none.json", env_keys="client_1=0123456789abcdef")
    assert ring.authenticate(f"{padding}0123456789abcdef{padding}").client == "client_1"
