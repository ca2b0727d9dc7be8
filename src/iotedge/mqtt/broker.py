"""Where the broker is and how to reach it: ``mqtt://`` or ``mqtts://`` URL, TLS, credentials."""

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from paho.mqtt.properties import Properties

from iotedge.errors import ConfigError

__all__ = ["BrokerAddress", "client_kwargs", "parse_broker", "properties"]

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, kw_only=True)
class BrokerAddress:
    """A broker URL taken apart, plus what a TLS connection needs.

    Attributes:
        host: broker host name or address.
        port: broker port (1883 for mqtt://, 8883 for mqtts:// unless given).
        tls: connect with TLS (``mqtts://``).
        ca: CA bundle that verifies the broker (default: the system's).
        certfile: client certificate, for brokers that require one.
        keyfile: the client certificate's key.
        username: MQTT user name (may come from the URL's user part).
        password: MQTT password (may come from the URL).
    """

    host: str
    port: int
    tls: bool = False
    ca: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def url(self) -> str:
        """The URL without credentials, safe to log."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker(
    url: str,
    *,
    ca: Path | None = None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    username: str = "",
    password: str = "",
) -> BrokerAddress:
    """A :class:`BrokerAddress` from ``mqtt[s]://[user:password@]host[:port]``; raises ConfigError."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"MQTT broker {url!r}: use mqtt://host[:port] or mqtts://host[:port]")
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"MQTT broker {url!r}: no path or query expected")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ConfigError(f"MQTT broker {url!r}: {exc}") from exc
    tls = parts.scheme == "mqtts"
    if not tls and (ca or certfile):
        raise ConfigError("MQTT CA and client certificate need an mqtts:// broker")
    for path in (ca, certfile, keyfile):
        if path is not None and not path.is_file():
            raise ConfigError(f"MQTT TLS file not found: {path}")
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=tls,
        ca=ca,
        certfile=certfile,
        keyfile=keyfile,
        username=username or (parts.username or ""),
        password=password or (parts.password or ""),
    )


def properties(packet_type: int) -> Properties:
    """An empty MQTT v5 property set for one packet type (``PacketTypes.CONNECT``, ...)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho has no annotations here


def _tls_context(broker: BrokerAddress) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(broker.ca) if broker.ca else None)
    if broker.certfile is not None:
        context.load_cert_chain(broker.certfile, broker.keyfile)
    return context


def client_kwargs(broker: BrokerAddress) -> dict[str, Any]:
    """Keyword arguments of ``aiomqtt.Client`` for this broker (host, port, TLS, credentials)."""
    kwargs: dict[str, Any] = {"hostname": broker.host, "port": broker.port}
    if broker.tls:
        kwargs["tls_context"] = _tls_context(broker)
    if broker.username:
        kwargs["username"] = broker.username
        kwargs["password"] = broker.password or None
    return kwargs
