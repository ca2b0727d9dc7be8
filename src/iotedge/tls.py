"""TLS at run time: the servers' TLS context and the client context of an https upstream."""

import ssl
from pathlib import Path
from typing import Any

from iotedge.errors import ConfigError

__all__ = ["client_context", "server_context", "server_options"]


def _readable(path: Path, what: str) -> str:
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist or is not a file")
    return str(path)


def server_options(certfile: Path | None, keyfile: Path | None, client_ca: Path | None) -> dict[str, Any]:
    """uvicorn ``Config`` keywords serving TLS (empty when ``certfile`` is None).

    With ``client_ca``, clients must present a certificate that CA signed (mTLS).

    Raises:
        ConfigError: a file is missing, or the certificate and key do not match.
    """
    if certfile is None or keyfile is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": _readable(certfile, "certificate"),
        "ssl_keyfile": _readable(keyfile, "private key"),
    }
    if client_ca is not None:
        options["ssl_ca_certs"] = _readable(client_ca, "client CA")
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    # Fail here, with a clear message, rather than inside uvicorn with a traceback.
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.load_cert_chain(options["ssl_certfile"], options["ssl_keyfile"])
        if client_ca is not None:
            probe.load_verify_locations(options["ssl_ca_certs"])
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"cannot use certificate {certfile} with key {keyfile}: {exc}") from exc
    return options


def server_context(
    certfile: Path | None, keyfile: Path | None, client_ca: Path | None
) -> ssl.SSLContext | None:
    """The server-side TLS context of ``certfile`` and ``keyfile`` (None without them).

    With ``client_ca``, clients must present a certificate that CA signed (mTLS).

    Raises:
        ConfigError: a file is missing, or the certificate and key do not match.
    """
    options = server_options(certfile, keyfile, client_ca)
    if not options:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(options["ssl_certfile"], options["ssl_keyfile"])
    if client_ca is not None:
        context.load_verify_locations(options["ssl_ca_certs"])
        context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])
    return context


def client_context(
    ca: Path | None = None, *, certfile: Path | None = None, keyfile: Path | None = None
) -> ssl.SSLContext:
    """A verifying client context trusting ``ca`` (the system's CAs when None), with an optional client cert.

    Raises:
        ConfigError: a file is missing or unusable.
    """
    try:
        context = ssl.create_default_context(cafile=_readable(ca, "CA bundle") if ca else None)
        if certfile is not None:
            context.load_cert_chain(
                _readable(certfile, "client certificate"),
                _readable(keyfile, "client key") if keyfile else None,
            )
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"cannot build a TLS client context: {exc}") from exc
    return context
