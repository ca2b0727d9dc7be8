"""Typed settings for each role, read from flags and ``IOTEDGE_*`` environment variables.

Precedence: command-line flag, then environment variable, then default. Both loaders take
the environment as an argument so tests pass a dict instead of touching ``os.environ``.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from iotedge.config_notify import DERIVED, NotifySettingError, NotifySettings
from iotedge.durations import parse_duration
from iotedge.errors import ConfigError

__all__ = [
    "EDGE_ENV_PREFIX",
    "SIM_ENV_PREFIX",
    "EdgeSettings",
    "GarbageKind",
    "SimSettings",
    "check_tls_pair",
    "env_name",
    "load_edge_settings",
    "load_sim_settings",
    "parse_duration",
    "setting_fields",
]

SIM_ENV_PREFIX = "IOTEDGE_SIM_"
EDGE_ENV_PREFIX = "IOTEDGE_"

GarbageKind = Literal["truncated", "malformed", "html", "wrong_types", "partial"]


def check_tls_pair(certfile: Path | None, keyfile: Path | None, client_ca: Path | None) -> None:
    """Certificate and key come together; a client CA needs both (raises ValueError)."""
    if (certfile is None) != (keyfile is None):
        raise ValueError("certfile and keyfile must be given together")
    if client_ca is not None and certfile is None:
        raise ValueError("client_ca (mTLS) needs certfile and keyfile")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class SimSettings(_Settings):
    """Settings of ``iotedge sim``: the fleet, the clock and the injected faults."""

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on (0 picks one).")
    seed: int = Field(42, description="Seed of every value and of the anomaly schedule.")
    clients: int = Field(3, ge=1, le=10_000, description="Number of clients (client_1..).")
    objects_per_client: int = Field(2, ge=1, le=10_000, description="Objects per client.")
    interval: float = Field(5.0, gt=0, description="Seconds between new readings of an object.")
    anomaly_rate: float = Field(
        0.05, ge=0, le=1, description="Chance that an object has an anomaly in one slot."
    )
    anomaly_slot: float = Field(900.0, gt=0, description="Seconds per anomaly-schedule slot.")
    timestamp_offset: bool = Field(
        False, description="Write '+00:00' on timestamps (the course writes none)."
    )
    latency_ms: float = Field(0.0, ge=0, description="Added latency per device request (ms).")
    jitter_ms: float = Field(0.0, ge=0, description="Random extra latency, 0..N ms.")
    error_rate: float = Field(0.0, ge=0, le=1, description="Share of requests answered 500/503.")
    garbage_rate: float = Field(0.0, ge=0, le=1, description="Share of requests answered with garbage.")
    garbage_kinds: tuple[GarbageKind, ...] = Field(
        ("truncated", "malformed", "html", "wrong_types", "partial"),
        description="Which kinds of garbage to send (comma-separated).",
    )
    hang_rate: float = Field(0.0, ge=0, le=1, description="Share of requests that hang.")
    hang_seconds: float = Field(30.0, ge=0, description="How long a hanging request hangs.")
    certfile: Path | None = Field(None, description="Serve HTTPS with this certificate (PEM, chain).")
    keyfile: Path | None = Field(None, description="Private key of --certfile (PEM).")
    client_ca: Path | None = Field(None, description="Require client certificates signed by this CA.")
    mqtt_broker: str = Field("", description="Also push readings to this MQTT broker (mqtt:// or mqtts://).")
    mqtt_topic_prefix: str = Field("iotedge", description="First level of every MQTT topic.")
    mqtt_objects: str = Field(
        "*", description="Objects pushed over MQTT (comma-separated globs); they leave /iot_objects."
    )
    mqtt_ca: Path | None = Field(None, description="CA bundle that verifies an mqtts:// broker.")
    mqtt_username: str = Field("", description="MQTT user name (optional).")
    mqtt_password: str = Field("", repr=False, description="MQTT password (optional).")

    @field_validator("interval", "anomaly_slot", "hang_seconds", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("garbage_kinds", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _tls_pairs(self) -> "SimSettings":
        check_tls_pair(self.certfile, self.keyfile, self.client_ca)
        return self


class EdgeSettings(_Settings):
    """Settings of ``iotedge edge``."""

    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(5000, ge=0, le=65535, description="TCP port of the API.")
    metrics_port: int = Field(
        8001, ge=0, le=65535, description="TCP port of the Prometheus metrics server (0 = off)."
    )
    upstream: str = Field("http://127.0.0.1:8000", description="Base URL of the device API.")
    data_dir: Path = Field(Path("data"), description="Directory of the SQLite store and state.")
    store: str = Field(
        "",
        description="The store: a postgresql:// (or postgres://) URL, or a SQLite file path "
        "(default: <data-dir>/iotedge.sqlite3).",
    )
    store_buffer_readings: int = Field(
        200_000,
        ge=0,
        description="Polled readings kept in memory while the store does not answer (oldest dropped beyond).",
    )
    role: Literal["all", "api", "collector"] = Field(
        "all",
        description="all: API and collector; api: the API only; collector: the collector "
        "(MQTT ingest, notifications) with only /healthz and /readyz over HTTP.",
    )
    shards: int = Field(
        64,
        ge=1,
        le=4096,
        description="Shards the fleet is split into among collectors on a PostgreSQL store "
        "(the same on every collector).",
    )
    keys_file: Path | None = Field(
        None, description="API keys file (hashes only); default <data-dir>/keys.json."
    )
    api_keys: str = Field(
        "",
        description="Extra keys as 'client=KEY,client=KEY' (scope '*' = read all clients).",
    )
    rules_file: Path | None = Field(
        None, description="Anomaly rules file (JSON); built-in defaults otherwise."
    )
    poll_interval: float = Field(5.0, gt=0, description="Seconds between polls of every object.")
    poll_concurrency: int = Field(32, ge=1, le=1000, description="Device requests in flight at once.")
    upstream_timeout: float = Field(3.0, gt=0, description="Timeout of one device request (seconds).")
    retention: float = Field(7 * 86400.0, gt=0, description="How long readings are kept (seconds).")
    rollup_retention: float = Field(
        400 * 86400.0,
        gt=0,
        description="How long per-minute and per-hour rollups are kept (seconds); at least the retention.",
    )
    stale_after: float = Field(
        30.0, gt=0, description="Data older than this many seconds is reported as stale."
    )
    edge_id: str = Field("", description="Name of this edge in metrics and responses (default: host name).")
    clients: tuple[str, ...] = Field(
        (), description="Poll only these clients' objects (comma-separated; empty = all): one edge per group."
    )
    notify: NotifySettings = Field(
        default_factory=NotifySettings, description="Anomaly notifications: channels, routes, noise control."
    )
    certfile: Path | None = Field(None, description="Serve HTTPS with this certificate (PEM, chain).")
    keyfile: Path | None = Field(None, description="Private key of --certfile (PEM).")
    client_ca: Path | None = Field(
        None, description="Require client certificates signed by this CA (mTLS); needs --certfile."
    )
    upstream_ca: Path | None = Field(
        None, description="CA bundle that verifies an https device API (default: the system's)."
    )
    rate_limit: float = Field(
        50.0, ge=0, description="Requests per second each key may make on average (0 = no limit)."
    )
    rate_burst: int = Field(100, ge=1, description="Requests a key may make at once before the rate applies.")
    auth_failures: int = Field(
        20, ge=0, description="Failed authentications per minute per address before 429 (0 = no cap)."
    )
    max_body: int = Field(64 * 1024, ge=0, description="Largest request body in bytes (413 beyond).")
    max_url: int = Field(4096, ge=64, description="Longest path plus query string in bytes (414 beyond).")
    fast_lane: bool = Field(
        True,
        description="Answer plain GET /processed_data and /client_statistics without FastAPI's routing "
        "(same bytes; off only to compare).",
    )
    answer_cache: bool = Field(
        True,
        description="Keep the statistics answers in memory until a write or the sliding window "
        "changes them (same bytes; off only to compare). Only with SQLite in the all role: "
        "never on PostgreSQL or in the api role, where other processes write.",
    )
    max_header: int = Field(
        16 * 1024, ge=1024, description="Largest request head (URL plus headers) in bytes (431 beyond)."
    )
    header_timeout: float = Field(
        10.0, gt=0, description="Seconds a client has to send a request head (408 and close beyond)."
    )
    body_timeout: float = Field(
        20.0, gt=0, description="Seconds a client has to send a request body once its head arrived."
    )
    max_connections: int = Field(
        512, ge=1, description="Open connections to the API; at the cap the oldest idle one is closed."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address the metrics server listens on (its own: not the API's --host)."
    )
    metrics_certfile: Path | None = Field(
        None, description="Serve metrics over HTTPS with this certificate (default: the API's, if any)."
    )
    metrics_keyfile: Path | None = Field(None, description="Private key of --metrics-certfile (PEM).")
    metrics_token: str = Field(
        "", repr=False, description="Token scrapers must send (bearer, or basic-auth password); empty = none."
    )
    metrics_token_file: Path | None = Field(
        None, description="File holding the metrics token (read at start; wins over IOTEDGE_METRICS_TOKEN)."
    )
    metrics_user: str = Field("prometheus", description="User name that goes with the token in basic auth.")
    metrics_per_object: bool = Field(
        False,
        description="Export iotedge_object_last_value: one series per object, naming every client's devices.",
    )
    mqtt_broker: str = Field(
        "", description="Take telemetry from and publish anomalies to this MQTT broker (mqtt:// or mqtts://)."
    )
    mqtt_topic_prefix: str = Field("iotedge", description="First level of every MQTT topic.")
    mqtt_client_id: str = Field(
        "", description="MQTT client id of the persistent session (default: iotedge-EDGE_ID)."
    )
    mqtt_ca: Path | None = Field(None, description="CA bundle that verifies an mqtts:// broker.")
    mqtt_certfile: Path | None = Field(None, description="Client certificate for the broker (PEM, optional).")
    mqtt_keyfile: Path | None = Field(None, description="Private key of --mqtt-certfile (PEM).")
    mqtt_username: str = Field("", description="MQTT user name (optional).")
    mqtt_password: str = Field("", repr=False, description="MQTT password (optional).")
    mqtt_session_expiry: float = Field(
        86400.0, ge=0, description="Seconds the broker keeps the session (and queued messages) while away."
    )
    mqtt_max_payload: int = Field(64 * 1024, ge=64, description="Largest telemetry payload in bytes.")
    mqtt_object_rate: float = Field(
        20.0, ge=0, description="Telemetry messages per second each object may send (0 = no limit)."
    )
    mqtt_object_burst: int = Field(100, ge=1, description="Messages an object may send at once.")
    mqtt_statistics_interval: float = Field(
        0.0, ge=0, description="Publish retained per-object statistics every N seconds (0 = off)."
    )

    @model_validator(mode="before")
    @classmethod
    def _notify_from_edge(cls, data: Any) -> Any:
        """The notification settings the edge's own decide: its name, and whether MQTT is on."""
        if isinstance(data, dict) and isinstance(data.get("notify", {}), dict):
            derived = {
                "edge_id": data.get("edge_id") or os.uname().nodename,
                "mqtt": bool(data.get("mqtt_broker")),
            }
            data = {**data, "notify": {**data.get("notify", {}), **derived}}
        return data

    @field_validator("clients", mode="before")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator(
        "poll_interval",
        "upstream_timeout",
        "retention",
        "rollup_retention",
        "stale_after",
        "header_timeout",
        "body_timeout",
        "mqtt_session_expiry",
        "mqtt_statistics_interval",
        mode="before",
    )
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("upstream")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("mqtt_broker")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        if value and not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return value

    @model_validator(mode="after")
    def _tls_pairs(self) -> "EdgeSettings":
        check_tls_pair(self.certfile, self.keyfile, self.client_ca)
        if (self.metrics_certfile is None) != (self.metrics_keyfile is None):
            raise ValueError("metrics_certfile and metrics_keyfile must be given together")
        if (self.mqtt_certfile is None) != (self.mqtt_keyfile is None):
            raise ValueError("mqtt_certfile and mqtt_keyfile must be given together")
        if self.rollup_retention < self.retention:
            raise ValueError("rollup_retention must be at least retention (rollups outlive the raw readings)")
        return self

    @property
    def store_is_postgres(self) -> bool:
        """Whether ``store`` names a PostgreSQL database."""
        return self.store.startswith(("postgresql://", "postgres://"))

    @property
    def store_path(self) -> Path:
        """The SQLite store file (when ``store`` is not a PostgreSQL URL)."""
        return Path(self.store) if self.store else self.data_dir / "iotedge.sqlite3"

    @property
    def resolved_keys_file(self) -> Path:
        """The keys file in use."""
        return self.keys_file if self.keys_file is not None else self.data_dir / "keys.json"

    @property
    def resolved_edge_id(self) -> str:
        """The edge id in use."""
        return self.edge_id or os.uname().nodename


_S = TypeVar("_S", bound=_Settings)

_SECRET_FIELDS = frozenset({"api_keys", "metrics_token", "mqtt_password", "webhook_secret", "smtp_password"})
"""Fields whose values never appear in error messages."""


def env_name(prefix: str, field: str) -> str:
    """The environment variable of a settings field, e.g. ``IOTEDGE_POLL_INTERVAL``."""
    return prefix + field.upper()


def setting_fields(model: type[BaseModel]) -> dict[str, tuple[tuple[str, ...], FieldInfo]]:
    """Every setting by its flat name (its variable and flag), with its path in the tree.

    A nested model's fields are settings of their own, named by their alias or name
    (``notify.cooldown_s`` is ``notify_cooldown``); the ones the edge derives are not.
    """
    found: dict[str, tuple[tuple[str, ...], FieldInfo]] = {}
    for name, info in model.model_fields.items():
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            for sub, sub_info in nested.model_fields.items():
                if sub not in DERIVED:
                    found[sub_info.alias or sub] = ((name, sub), sub_info)
        else:
            found[name] = ((name,), info)
    return found


def _flat_name(loc: tuple[int | str, ...], fields: Mapping[str, tuple[tuple[str, ...], FieldInfo]]) -> str:
    """The setting an error's location points at (a nested field's location may use its alias)."""
    if len(loc) > 1:
        head, sub = str(loc[0]), str(loc[1])
        for flat, (path, _) in fields.items():
            if path[0] == head and sub in (flat, path[-1]):
                return flat
    return str(loc[0])


def _load(
    model: type[_S], prefix: str, environ: Mapping[str, str] | None, overrides: Mapping[str, Any]
) -> _S:
    environ = os.environ if environ is None else environ
    fields = setting_fields(model)
    given: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for flat in fields:
        name = env_name(prefix, flat)
        if name in environ:
            given[flat] = environ[name]
            sources[flat] = f"environment variable {name}"
    for flat, value in overrides.items():
        if value is not None:
            given[flat] = value
            sources[flat] = f"option --{flat.replace('_', '-')}"
    data: dict[str, Any] = {}
    for flat, value in given.items():
        path = fields[flat][0] if flat in fields else (flat,)
        if len(path) == 1:
            data[flat] = value
        else:
            data.setdefault(path[0], {})[flat] = value
    try:
        return model.model_validate(data)
    except NotifySettingError as exc:
        where = sources.get(exc.setting, exc.setting)
        shown = "<hidden>" if exc.setting in _SECRET_FIELDS else repr(exc.value)
        raise ConfigError(f"{where}: {exc.reason} (got {shown})") from exc
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if not error["loc"]:  # a check across fields: its input is every setting, keys too
                problems.append(error["msg"].removeprefix("Value error, "))
                continue
            field = _flat_name(error["loc"], fields)
            where = sources.get(field, field)
            shown = "<hidden>" if field in _SECRET_FIELDS else repr(_redacted(field, error.get("input")))
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')} (got {shown})")
        raise ConfigError("; ".join(problems)) from exc


def _redacted(field: str, value: Any) -> Any:
    """A setting's value as shown in an error: a store URL without its password."""
    if field == "store" and isinstance(value, str) and "@" in value and "://" in value:
        scheme, _, rest = value.partition("://")
        credentials, _, host = rest.rpartition("@")
        user = credentials.partition(":")[0]
        return f"{scheme}://{user}@{host}" if user else f"{scheme}://{host}"
    return value


def load_sim_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> SimSettings:
    """Simulator settings from ``IOTEDGE_SIM_*`` variables and explicit overrides."""
    return _load(SimSettings, SIM_ENV_PREFIX, environ, overrides)


def load_edge_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> EdgeSettings:
    """Edge settings from ``IOTEDGE_*`` variables and explicit overrides."""
    return _load(EdgeSettings, EDGE_ENV_PREFIX, environ, overrides)
