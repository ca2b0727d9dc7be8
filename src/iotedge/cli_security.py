"""``iotedge keys`` and ``iotedge certs``, and the security flags of the servers."""

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from iotedge.config import parse_duration
from iotedge.errors import ConfigError, StoreError

__all__ = ["certs", "edge_security_options", "keys", "metrics_options", "tls_options"]


def tls_options() -> list[Callable[[Any], Any]]:
    """The TLS flags both servers take."""
    return [
        click.option("--certfile", type=click.Path(), help="Serve HTTPS with this certificate (PEM)."),
        click.option("--keyfile", type=click.Path(), help="Private key of --certfile (PEM)."),
        click.option(
            "--client-ca", type=click.Path(), help="Require client certificates from this CA (mTLS)."
        ),
    ]


def edge_security_options() -> list[Callable[[Any], Any]]:
    """The edge's TLS, rate-limit and size-limit flags."""
    return [
        *tls_options(),
        click.option(
            "--upstream-ca", type=click.Path(), help="CA verifying an https device API. [default: system]"
        ),
        click.option("--rate-limit", type=float, help="Requests per second per key, 0 = off. [default: 50]"),
        click.option("--rate-burst", type=int, help="Requests a key may make at once. [default: 100]"),
        click.option(
            "--auth-failures", type=int, help="Failed logins per minute per address, 0 = off. [default: 20]"
        ),
        click.option("--max-body", type=int, help="Largest request body in bytes. [default: 65536]"),
        click.option("--max-url", type=int, help="Longest URL (path and query) in bytes. [default: 4096]"),
        click.option("--max-header", type=int, help="Largest request head in bytes. [default: 16384]"),
        click.option("--header-timeout", help="Time to send a request head, e.g. 10s. [default: 10s]"),
        click.option("--body-timeout", help="Time to send a request body, e.g. 20s. [default: 20s]"),
        click.option("--max-connections", type=int, help="Open API connections at most. [default: 512]"),
    ]


def metrics_options() -> list[Callable[[Any], Any]]:
    """Where the edge's metrics server listens and who may scrape it."""
    return [
        click.option("--metrics-host", help="Address of the metrics server. [default: 127.0.0.1]"),
        click.option(
            "--metrics-certfile", type=click.Path(), help="Metrics over HTTPS. [default: --certfile]"
        ),
        click.option("--metrics-keyfile", type=click.Path(), help="Private key of --metrics-certfile (PEM)."),
        click.option(
            "--metrics-token-file",
            type=click.Path(),
            help="File with the token scrapers must send (or env IOTEDGE_METRICS_TOKEN). [default: none]",
        ),
        click.option(
            "--metrics-user", help="Basic-auth user that goes with the token. [default: prometheus]"
        ),
        click.option(
            "--metrics-per-object/--no-metrics-per-object",
            default=None,
            help="Export iotedge_object_last_value per object (names every client's devices). [default: off]",
        ),
    ]


def _fail_on_config_error(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ConfigError, StoreError) as exc:
            raise click.ClickException(str(exc)) from exc

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def _default_keys_file() -> str:
    return os.environ.get("IOTEDGE_KEYS_FILE") or str(
        Path(os.environ.get("IOTEDGE_DATA_DIR", "data")) / "keys.json"
    )


_keys_file_option = click.option(
    "--keys-file",
    type=click.Path(),
    default=_default_keys_file,
    show_default="IOTEDGE_KEYS_FILE, else IOTEDGE_DATA_DIR/keys.json, else data/keys.json",
    help="The edge's keys file.",
)


_PG_SCHEMES = ("postgresql://", "postgres://")

_store_option = click.option(
    "--store",
    help="Keep keys in this PostgreSQL store (postgresql://...) instead of the keys file. "
    "[default: IOTEDGE_STORE when it is a postgresql:// URL, else the keys file]",
)


def _pg_url(store: str | None) -> str | None:
    """The PostgreSQL URL the keys live in, or None for the keys file."""
    if store:
        if not store.startswith(_PG_SCHEMES):
            raise click.BadParameter(
                "give a postgresql:// URL (keys of SQLite edges live in --keys-file)", param_hint="--store"
            )
        return store
    env = os.environ.get("IOTEDGE_STORE", "")
    return env if env.startswith(_PG_SCHEMES) else None


def _in_store(url: str, action: "Callable[[Any], Awaitable[Any]]") -> Any:
    """Run ``action(connection)`` on the PostgreSQL store at ``url`` (migrated first)."""
    from iotedge.edge.store.postgres.keys import open_keys_connection

    async def main() -> Any:
        conn = await open_keys_connection(url)
        try:
            return await action(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


def _shown(url: str) -> str:
    from iotedge.edge.store.postgres import redact_url

    return redact_url(url)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%MZ")


@click.group()
def keys() -> None:
    """Manage the edge's API keys (only hashes are stored; a running edge sees changes at once)."""


@keys.command("create")
@click.option("--client", required=True, help="The client the key reads; '*' = every client, read-only.")
@click.option("--expires", help="Lifetime, e.g. 90d or 12h. [default: never]")
@_keys_file_option
@_store_option
@_fail_on_config_error
def keys_create(client: str, expires: str | None, keys_file: str, store: str | None) -> None:
    """Create a key for CLIENT; the key is printed once and never stored."""
    from iotedge.edge.auth import create_key
    from iotedge.edge.store.postgres import keys as pg_keys

    expires_at = None
    if expires:
        try:
            expires_at = time.time() + parse_duration(expires)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--expires") from None
    url = _pg_url(store)
    if url is None:
        record, key = create_key(Path(keys_file), client, expires_at=expires_at)
        written_to = keys_file
    else:
        record, key = _in_store(url, lambda conn: pg_keys.create_key(conn, client, expires_at=expires_at))
        written_to = _shown(url)
    click.echo(
        f"key id:  {record.id}\nclient:  {record.client}\nexpires: {_when(expires_at)}\nkey:     {key}"
    )
    click.echo("Store the key now: only its hash was written to " + written_to, err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key.")
@_keys_file_option
@_store_option
@_fail_on_config_error
def keys_list(as_json: bool, keys_file: str, store: str | None) -> None:
    """List keys: id, client, scope, created, expiry, revocation, last use (never the key)."""
    from iotedge.edge.auth import ALL_CLIENTS, list_keys, read_usage
    from iotedge.edge.store.postgres import keys as pg_keys

    url = _pg_url(store)
    if url is None:
        path = Path(keys_file)
        used = read_usage(path)
        records = list_keys(path)
        where = str(path)
    else:
        listed = _in_store(url, pg_keys.list_keys)
        records = [record for record, _ in listed]
        used = {record.id: last for record, last in listed if last is not None}
        where = _shown(url)
    now = time.time()
    rows: list[dict[str, Any]] = []
    for record in records:
        if record.revoked_at is not None and record.revoked_at <= now:
            status = "revoked"
        elif record.expires_at is not None and record.expires_at <= now:
            status = "expired"
        else:
            status = "active"
        rows.append(
            {
                "id": record.id,
                "client": record.client,
                "scope": "read:all-clients" if record.client == ALL_CLIENTS else f"read:{record.client}",
                "status": status,
                "created_at": record.created_at,
                "expires_at": record.expires_at,
                "revoked_at": record.revoked_at,
                "last_used_at": used.get(record.id),
            }
        )
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        # The usual surprise after `make run`: its demo keys live in the environment, not here.
        click.echo(f"no keys in {where} (the demo keys of iotedge run are not kept in a file)", err=True)
        return
    header = f"{'ID':<10} {'CLIENT':<14} {'SCOPE':<20} {'STATUS':<8} {'CREATED':<18} {'EXPIRES':<18} "
    click.echo(header + f"{'REVOKED':<18} LAST USED")
    for row in rows:
        click.echo(
            f"{row['id']:<10} {row['client']:<14} {row['scope']:<20} {row['status']:<8} "
            f"{_when(row['created_at']):<18} {_when(row['expires_at']):<18} "
            f"{_when(row['revoked_at']):<18} {_when(row['last_used_at'])}"
        )


@keys.command("revoke")
@click.argument("key_ids", nargs=-1)
@click.option("--client", help="Revoke every key of this client instead.")
@_keys_file_option
@_store_option
@_fail_on_config_error
def keys_revoke(key_ids: tuple[str, ...], client: str | None, keys_file: str, store: str | None) -> None:
    """Revoke keys by id (see `keys list`), or all of a client's; effective within a second."""
    from iotedge.edge.auth import revoke_keys
    from iotedge.edge.store.postgres import keys as pg_keys

    if not key_ids and client is None:
        raise click.UsageError("give key ids or --client")
    url = _pg_url(store)
    if url is None:
        revoked = revoke_keys(Path(keys_file), key_ids=key_ids, client=client)
    else:
        revoked = _in_store(url, lambda conn: pg_keys.revoke_keys(conn, key_ids=key_ids, client=client))
    for record in revoked:
        click.echo(f"revoked {record.id} ({record.client})")
    if not revoked:
        click.echo("nothing to revoke: already revoked", err=True)


@keys.command("delete-client")
@click.argument("client")
@_keys_file_option
@_store_option
@_fail_on_config_error
def keys_delete_client(client: str, keys_file: str, store: str | None) -> None:
    """Remove every key of CLIENT from the file or store (the client left; no audit trail is kept)."""
    from iotedge.edge.auth import delete_client
    from iotedge.edge.store.postgres import keys as pg_keys

    url = _pg_url(store)
    if url is None:
        count = delete_client(Path(keys_file), client)
    else:
        count = _in_store(url, lambda conn: pg_keys.delete_client(conn, client))
    click.echo(f"removed {count} key(s) of {client}")


@click.command()
@click.option("--out", type=click.Path(), default="certs", show_default=True, help="Output directory.")
@click.option(
    "--hosts",
    default="localhost,127.0.0.1,::1",
    show_default=True,
    help="Comma list of names and addresses the server certificate is valid for.",
)
@click.option("--client", default="cloud", show_default=True, help="Common name of the client certificate.")
@click.option("--days", type=int, default=365, show_default=True, help="Validity of the server/client certs.")
@_fail_on_config_error
def certs(out: str, hosts: str, client: str, days: int) -> None:
    """Create a development CA and a server and a client certificate (not for production)."""
    from iotedge.certs import create_dev_pki

    names = [host.strip() for host in hosts.split(",") if host.strip()]
    pki = create_dev_pki(Path(out), hosts=names, client=client, days=days)
    click.echo(f"CA:      {pki.ca_cert} (key {pki.ca_key}){' - reused' if pki.ca_reused else ''}")
    click.echo(f"server:  {pki.server_cert} (key {pki.server_key}) for {', '.join(names)}")
    click.echo(f"client:  {pki.client_cert} (key {pki.client_key}) CN={client}")
    click.echo(
        f"Serve:   iotedge edge --certfile {pki.server_cert} --keyfile {pki.server_key} "
        f"[--client-ca {pki.ca_cert}]\nTrust:   give {pki.ca_cert} to clients (curl --cacert, Grafana, "
        "Prometheus); keep ca-key.pem secret",
        err=True,
    )
