"""``iotedge certs``: a development CA and the server and client certificates it signs.

For development and tests only: the CA's private key sits next to the certificates, with
no passphrase. Keys are ECDSA P-256, written readable by their owner only. An existing
CA in the output directory is reused, so certificates issued later chain to the CA that
clients already trust.
"""

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotedge.errors import ConfigError

__all__ = ["DevPki", "create_dev_pki"]

CA_DAYS = 3650
_SKEW = dt.timedelta(minutes=5)  # certificates are valid a little in the past: clocks differ


@dataclass(frozen=True, slots=True)
class DevPki:
    """Where the files of a development PKI are."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    ca_reused: bool


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iotedge development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _new_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("iotedge development CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot reuse the CA in {cert_path.parent}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"the CA key {key_path} is not an EC key made by `iotedge certs`")
    return cert, key


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    usage: x509.ObjectIdentifier,
    hosts: Sequence[str],
    now: dt.datetime,
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(min(now + dt.timedelta(days=days), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def create_dev_pki(
    out: Path,
    *,
    hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    client: str = "cloud",
    days: int = 365,
    now: dt.datetime | None = None,
) -> DevPki:
    """Write (or reuse) a CA in ``out`` and issue a server and a client certificate.

    Args:
        out: the output directory (created; private keys are mode 0600).
        hosts: DNS names and IP addresses the server certificate is valid for.
        client: the client certificate's common name.
        days: validity of the server and client certificates.
        now: the issue time (tests).

    Raises:
        ConfigError: no hosts, a bad number of days, or an unusable existing CA.
    """
    if not hosts:
        raise ConfigError("give at least one host name or address for the server certificate")
    if days < 1:
        raise ConfigError("certificates must be valid for at least one day")
    now = now or dt.datetime.now(dt.UTC)
    out.mkdir(parents=True, exist_ok=True)
    pki = DevPki(
        ca_cert=out / "ca.pem",
        ca_key=out / "ca-key.pem",
        server_cert=out / "server.pem",
        server_key=out / "server-key.pem",
        client_cert=out / "client.pem",
        client_key=out / "client-key.pem",
        ca_reused=(out / "ca.pem").exists() and (out / "ca-key.pem").exists(),
    )
    if pki.ca_reused:
        ca, ca_key = _load_ca(pki.ca_cert, pki.ca_key)
    else:
        ca, ca_key = _new_ca(now)
        _write_key(pki.ca_key, ca_key)
        _write_cert(pki.ca_cert, ca)
    server, server_key = _leaf(ca, ca_key, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, hosts, now, days)
    _write_key(pki.server_key, server_key)
    _write_cert(pki.server_cert, server)
    # Verifiers want a subject alternative name on client certificates too: the client's name.
    client_cert, client_key = _leaf(ca, ca_key, client, ExtendedKeyUsageOID.CLIENT_AUTH, (client,), now, days)
    _write_key(pki.client_key, client_key)
    _write_cert(pki.client_cert, client_cert)
    return pki
