"""Notification settings: channels, routing and noise control, validated at construction."""

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from iotedge.errors import ConfigError

__all__ = ["CHANNELS", "SEVERITIES", "NotifySettings", "Route", "SmtpSecurity", "parse_routes"]

CHANNELS = ("webhook", "email", "mqtt")
SEVERITIES = ("warning", "critical")

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

SmtpSecurity = Literal["plain", "starttls", "tls"]


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


@dataclass(frozen=True, kw_only=True)
class NotifySettings:
    """Everything the notifiers and the outbox drainer need; all times are in seconds.

    A channel is enabled when configured: the webhook when ``webhook_url`` is set, email
    when ``smtp_host`` and ``mail_to`` are, MQTT when ``mqtt`` is (a broker is set).
    Without ``routes`` every enabled channel fires for every client and severity.
    """

    edge_id: str = "edge"
    webhook_url: str = ""
    webhook_secret: str = field(default="", repr=False)
    webhook_timeout_s: float = 10.0
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: SmtpSecurity = "starttls"
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_timeout_s: float = 20.0
    smtp_ca_file: str = ""
    mail_from: str = "iotedge@localhost"
    mail_to: tuple[str, ...] = ()
    mqtt: bool = False
    routes: tuple[Route, ...] = ()
    cooldown_s: float = 300.0
    flap_window_s: float = 600.0
    flap_max: int = 6
    max_age_s: float = 86400.0
    poll_interval_s: float = 2.0
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    batch_size: int = 200

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_s") and not (isinstance(value, int | float) and value >= 0):
                raise ConfigError(f"notify setting {f.name} must be a number >= 0, got {value!r}")
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
