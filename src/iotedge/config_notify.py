"""Notification settings: channels, routing and noise control, validated at construction."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from iotedge.durations import parse_duration
from iotedge.errors import ConfigError

__all__ = [
    "CHANNELS",
    "DERIVED",
    "SEVERITIES",
    "NotifySettingError",
    "NotifySettings",
    "Route",
    "SmtpSecurity",
    "parse_routes",
]

CHANNELS = ("webhook", "email", "mqtt")
SEVERITIES = ("warning", "critical")

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

SmtpSecurity = Literal["plain", "starttls", "tls"]

DERIVED = frozenset({"edge_id", "mqtt"})
"""Notification settings the edge derives from its own (not variables or flags of their own)."""


@dataclass(frozen=True, kw_only=True)
class Route:
    """Which channels fire for one client (or ``*``) and a set of severities.

    Routes are tried in order; the first whose client and severity match decides. An empty
    ``channels`` tuple mutes the match.
    """

    client: str = "*"
    severities: tuple[str, ...] = SEVERITIES
    channels: tuple[str, ...] = CHANNELS

    def matches(self, client: str, severity: str) -> bool:
        """Whether this route applies to an event of ``client`` with ``severity``."""
        return self.client in ("*", client) and severity in self.severities


def parse_routes(text: str) -> tuple[Route, ...]:
    """Routes from ``client:severity=channel+channel;...``.

    ``*`` matches any client or severity, severities may be joined with ``+``, and an empty
    channel list (``client_3:*=``) mutes. Example:
    ``client_1:critical=webhook+email;*:*=webhook``.
    """
    routes = []
    for raw in text.split(";"):
        part = raw.strip()
        if not part:
            continue
        head, eq, tail = part.partition("=")
        client, colon, sev = head.partition(":")
        if not eq or not colon or not client.strip():
            raise ConfigError(f"notification route {part!r}: use client:severity=channel+channel")
        severities = SEVERITIES if sev.strip() in ("*", "") else _split(sev)
        channels = CHANNELS if tail.strip() == "*" else _split(tail)
        routes.append(Route(client=client.strip(), severities=severities, channels=channels))
    return tuple(routes)


def _split(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.replace(",", "+").split("+") if item.strip())


class NotifySettingError(ConfigError):
    """A notification setting has a bad value.

    Attributes:
        setting: its flat name (``notify_cooldown``, ``smtp_port``...).
        reason: what is wrong with it.
        value: the value given.
    """

    def __init__(self, setting: str, reason: str, value: object) -> None:
        self.setting, self.reason, self.value = setting, reason, value
        field = _FIELD_OF.get(setting, setting)
        super().__init__(f"notify setting {field}: {reason}")


class NotifySettings(BaseModel):
    """Everything the notifiers and the outbox drainer need; all times are in seconds.

    Nested in the edge settings as ``notify``. Each field is also a flat setting, an
    ``IOTEDGE_*`` variable and an ``iotedge edge`` flag, named by its alias (or its name):
    ``cooldown_s`` is ``IOTEDGE_NOTIFY_COOLDOWN`` and ``--notify-cooldown``. ``edge_id`` and
    ``mqtt`` are not: the edge sets them from its own ``edge_id`` and ``mqtt_broker``.

    A channel is enabled when configured: the webhook when ``webhook_url`` is set, email
    when ``smtp_host`` and ``mail_to`` are, MQTT when ``mqtt`` is (a broker is set).
    Without ``routes`` every enabled channel fires for every client and severity.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True)

    edge_id: str = "edge"
    webhook_url: str = Field("", description="Anomaly notifications by webhook: the receiver's URL.")
    webhook_secret: str = Field("", repr=False, description="Shared secret of the webhook's HMAC signature.")
    webhook_timeout_s: float = Field(
        10.0, gt=0, alias="webhook_timeout", description="Timeout of one webhook POST (seconds)."
    )
    smtp_host: str = Field("", description="Anomaly notifications by email: the SMTP server.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_security: SmtpSecurity = Field("starttls", description="SMTP transport security.")
    smtp_user: str = Field("", description="SMTP user name (optional).")
    smtp_password: str = Field("", repr=False, description="SMTP password (optional).")
    smtp_timeout_s: float = Field(
        20.0, gt=0, alias="smtp_timeout", description="Socket timeout of each SMTP step (seconds)."
    )
    smtp_ca_file: str = Field(
        "", description="Extra CA bundle that verifies the SMTP server (default: the system's)."
    )
    mail_from: str = Field("iotedge@localhost", description="Sender address of notification mails.")
    mail_to: tuple[str, ...] = Field((), description="Recipients of notification mails (comma-separated).")
    mqtt: bool = False
    routes: tuple[Route, ...] = Field(
        (),
        alias="notify_routes",
        description="Which channels fire per client and severity, e.g. 'client_1:critical=email+webhook'.",
    )
    cooldown_s: float = Field(
        300.0, ge=0, alias="notify_cooldown", description="Seconds before a re-opened anomaly notifies again."
    )
    flap_window_s: float = Field(
        600.0, ge=0, alias="notify_flap_window", description="Window (s) in which flapping is counted."
    )
    flap_max: int = Field(
        6,
        ge=1,
        alias="notify_flap_max",
        description="Transitions in the window that make a series 'flapping'.",
    )
    max_age_s: float = Field(
        86400.0,
        ge=0,
        alias="notify_max_age",
        description="Give up delivering a message after this many seconds.",
    )
    poll_interval_s: float = Field(
        2.0, ge=0, alias="notify_poll_interval", description="Seconds between two passes over the outbox."
    )
    backoff_base_s: float = Field(
        2.0,
        ge=0,
        alias="notify_backoff_base",
        description="First retry delay bound (seconds); doubles per attempt.",
    )
    backoff_max_s: float = Field(
        300.0, ge=0, alias="notify_backoff_max", description="Largest retry delay bound (seconds)."
    )
    batch_size: int = Field(
        200,
        ge=1,
        alias="notify_batch_size",
        description="Outbox rows triaged, and messages sent, per pass at most.",
    )

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            # Pydantic calls an overridden __init__ for the nested model too, so this is the one
            # place its field errors surface; the loader names the variable or flag they came from.
            error = exc.errors()[0]
            flat = str(error["loc"][0]) if error["loc"] else "notify"
            raise NotifySettingError(
                flat, error["msg"].removeprefix("Value error, "), error.get("input")
            ) from exc

    @field_validator("mail_to", mode="before")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("routes", mode="before")
    @classmethod
    def _routes(cls, value: Any) -> Any:
        return parse_routes(value) if isinstance(value, str) else value

    @field_validator(
        "webhook_timeout_s",
        "smtp_timeout_s",
        "cooldown_s",
        "flap_window_s",
        "max_age_s",
        "poll_interval_s",
        "backoff_base_s",
        "backoff_max_s",
        mode="before",
    )
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> "NotifySettings":
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name.endswith("_s") and not (isinstance(value, int | float) and value >= 0):
                raise ConfigError(f"notify setting {name} must be a number >= 0, got {value!r}")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            raise ConfigError(f"notify setting webhook_url must be http(s)://, got {self.webhook_url!r}")
        if self.webhook_url and not self.webhook_secret:
            raise ConfigError("notify setting webhook_secret is empty but webhook_url is set")
        if self.smtp_security not in ("plain", "starttls", "tls"):
            raise ConfigError(
                f"notify setting smtp_security must be plain, starttls or tls, got {self.smtp_security!r}"
            )
        if not 0 < self.smtp_port < 65536:
            raise ConfigError(f"notify setting smtp_port out of range: {self.smtp_port}")
        if self.smtp_host and not self.mail_to:
            raise ConfigError("notify setting mail_to is empty but smtp_host is set")
        if bool(self.smtp_user) != bool(self.smtp_password):
            raise ConfigError("notify settings smtp_user and smtp_password go together")
        if self.smtp_user and self.smtp_security == "plain" and self.smtp_host not in _LOOPBACK:
            raise ConfigError(
                "notify setting smtp_security is plain: refusing to send the SMTP password "
                f"in clear text to {self.smtp_host!r} (use starttls or tls)"
            )
        if self.smtp_ca_file and not Path(self.smtp_ca_file).is_file():
            raise ConfigError(f"notify setting smtp_ca_file: no such file {self.smtp_ca_file!r}")
        if self.flap_max < 1 or self.batch_size < 1:
            raise ConfigError("notify settings flap_max and batch_size must be >= 1")
        if self.webhook_timeout_s <= 0 or self.smtp_timeout_s <= 0:
            raise ConfigError("notify timeouts must be > 0")
        enabled = self.enabled_channels()
        for route in self.routes:
            for channel in route.channels:
                if channel not in enabled:
                    raise ConfigError(
                        f"notification route for {route.client!r} names channel {channel!r}, "
                        f"which is not configured (configured: {', '.join(enabled) or 'none'})"
                    )
            for severity in route.severities:
                if severity not in SEVERITIES:
                    raise ConfigError(f"notification route severity {severity!r} is unknown")
        return self

    @classmethod
    def flat_names(cls) -> dict[str, str]:
        """Each field's flat setting name (its alias, or its name) to the field's name."""
        return {info.alias or name: name for name, info in cls.model_fields.items()}

    def enabled_channels(self) -> tuple[str, ...]:
        """The configured channels, in a fixed order."""
        enabled = []
        if self.webhook_url:
            enabled.append("webhook")
        if self.smtp_host and self.mail_to:
            enabled.append("email")
        if self.mqtt:
            enabled.append("mqtt")
        return tuple(enabled)

    def channels_for(self, client: str, severity: str) -> tuple[str, ...]:
        """The channels that fire for an event of ``client`` with ``severity``."""
        if not self.routes:
            return self.enabled_channels()
        for route in self.routes:
            if route.matches(client, severity):
                return route.channels
        return ()


_FIELD_OF = NotifySettings.flat_names()
