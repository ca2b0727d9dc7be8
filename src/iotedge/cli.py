"""The ``iotedge`` command line; the only place that configures logging."""

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import click

from iotedge import __version__
from iotedge.cli_mqtt import edge_mqtt_options, sim_mqtt_options
from iotedge.cli_notify import edge_notify_options
from iotedge.cli_security import certs, edge_security_options, keys, metrics_options, tls_options
from iotedge.cli_sim import inject
from iotedge.cli_store import store
from iotedge.config import SIM_ENV_PREFIX, load_sim_settings
from iotedge.demo import ensure_port_free
from iotedge.errors import ConfigError, StoreError
from iotedge.serving import edge_limits, run_async, uvicorn_server
from iotedge.tls import server_context

__all__ = ["main"]

_log = logging.getLogger("iotedge")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request at INFO
    # uvicorn's banner says http:// for our TLS servers (TLS is iotedge.guard's, not uvicorn's);
    # each role logs its own line with the right scheme instead.
    logging.getLogger("uvicorn.error").addFilter(
        lambda record: not str(record.msg).startswith("Uvicorn running on")
    )


def _fail_on_config_error(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            raise click.ClickException(f"invalid configuration: {exc}") from exc
        except StoreError as exc:  # a bad store file: its message names the file and the way out
            raise click.ClickException(str(exc)) from exc

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def _with_options(options: list[Callable[[Any], Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="iotedge")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    envvar="IOTEDGE_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Logging verbosity (env IOTEDGE_LOG_LEVEL).",
)
def main(log_level: str) -> None:
    """iotedge: an IoT edge gateway and the device API simulator it polls.

    \b
    iotedge run      the simulator and the edge together, with demo keys (make run)
    iotedge sim      serve the simulated device API (the course's endpoints)
    iotedge edge     run the edge: poll, store, detect anomalies, serve the API
    iotedge keys     create, list and revoke the edge's API keys
    iotedge certs    development certificates for HTTPS and mTLS
    iotedge notify   test the webhook and email notifications
    iotedge inject   start an anomaly now on a running simulator
    iotedge store    check the edge's store file (stop the edge first)

    Each flag of sim and edge also reads an environment variable
    (IOTEDGE_SIM_<FLAG>, IOTEDGE_<FLAG>); a flag wins over it.
    """
    _setup_logging(log_level)


_SIM_HELP_ENV = f"Every flag has an environment twin {SIM_ENV_PREFIX}<FLAG> (e.g. {SIM_ENV_PREFIX}SEED)."


def _run_until_ctrl_c(coro: Coroutine[Any, Any, None], *, tls: bool = False) -> None:
    """Serve until stopped. Ctrl-C is how the docs say to stop, so it exits 0, not click's "Aborted!"."""
    try:
        run_async(coro, tls=tls)
    except KeyboardInterrupt:
        _log.info("stopped")


@main.command(epilog=_SIM_HELP_ENV)
@click.option("--host", help="Address to listen on. [default: 127.0.0.1]")
@click.option("--port", type=int, help="TCP port. [default: 8000]")
@click.option("--seed", type=int, help="Seed of every value and anomaly. [default: 42]")
@click.option("--clients", type=int, help="Number of clients. [default: 3]")
@click.option("--objects-per-client", type=int, help="Objects per client. [default: 2]")
@click.option("--interval", help="Time between new readings, e.g. 5s. [default: 5s]")
@click.option("--anomaly-rate", type=float, help="Chance of an anomaly per object and slot. [default: 0.05]")
@click.option("--anomaly-slot", help="Length of an anomaly-schedule slot, e.g. 15m. [default: 900s]")
@click.option("--timestamp-offset/--no-timestamp-offset", default=None, help="Add +00:00 to timestamps.")
@click.option("--latency-ms", type=float, help="Added latency per device request. [default: 0]")
@click.option("--jitter-ms", type=float, help="Random extra latency up to N ms. [default: 0]")
@click.option("--error-rate", type=float, help="Share of requests answered 500/503. [default: 0]")
@click.option("--garbage-rate", type=float, help="Share of requests answered with garbage. [default: 0]")
@click.option("--garbage-kinds", help="Comma list of truncated,malformed,html,wrong_types,partial.")
@click.option("--hang-rate", type=float, help="Share of requests that hang. [default: 0]")
@click.option("--hang-seconds", help="How long a hang lasts. [default: 30s]")
@_with_options(tls_options())
@_with_options(sim_mqtt_options())
@_fail_on_config_error
def sim(**options: Any) -> None:
    """Serve the simulated device API (GET /iot_objects, /iot_data/{id}, ...)."""
    from iotedge.sim.app import create_app

    settings = load_sim_settings(**options)
    ensure_port_free(settings.host, settings.port, "--port")
    app = create_app(settings)
    fleet = app.state.fleet
    _log.info(
        "simulator: %d objects for %d clients, seed %d, on %s://%s:%d (docs at /docs)",
        len(fleet.objects),
        len(fleet.by_client),
        settings.seed,
        "https" if settings.certfile else "http",
        settings.host,
        settings.port,
    )
    tls = server_context(settings.certfile, settings.keyfile, settings.client_ca)
    server = uvicorn_server(app, settings.host, settings.port, tls=tls)
    _run_until_ctrl_c(server.serve(), tls=tls is not None)


_EDGE_HELP_ENV = "Every flag has an environment twin IOTEDGE_<FLAG> (e.g. IOTEDGE_POLL_INTERVAL=5s)."


def _edge_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--host", help="Address the API listens on. [default: 127.0.0.1]"),
        click.option("--port", type=int, help="API port. [default: 5000]"),
        click.option("--metrics-port", type=int, help="Prometheus metrics port, 0 = off. [default: 8001]"),
        *metrics_options(),
        click.option("--upstream", help="Device API base URL. [default: http://127.0.0.1:8000]"),
        click.option("--data-dir", type=click.Path(), help="Store directory. [default: data]"),
        click.option(
            "--store",
            help="postgresql://USER:PASSWORD@HOST/DB, or a SQLite file. [default: DATA_DIR/iotedge.sqlite3]",
        ),
        click.option(
            "--store-buffer",
            "store_buffer_readings",
            type=int,
            help="Readings kept in memory while the store is down. [default: 200000]",
        ),
        click.option(
            "--role",
            type=click.Choice(["all", "api", "collector"]),
            help="all, api (HTTP API only) or collector (polling; /healthz and /readyz only). [default: all]",
        ),
        click.option(
            "--shards",
            type=int,
            help="Shards of the fleet among collectors on PostgreSQL; the same on every collector. "
            "[default: 64]",
        ),
        click.option("--keys-file", type=click.Path(), help="API keys file. [default: DATA_DIR/keys.json]"),
        click.option("--rules-file", type=click.Path(), help="Anomaly rules (JSON). [default: built-in]"),
        click.option("--poll-interval", help="Time between polls, e.g. 5s. [default: 5s]"),
        click.option("--poll-concurrency", type=int, help="Device requests in flight. [default: 32]"),
        click.option("--upstream-timeout", help="Timeout of one device request. [default: 3s]"),
        click.option("--retention", help="How long readings are kept, e.g. 7d. [default: 7d]"),
        click.option("--stale-after", help="Age after which data is flagged stale. [default: 30s]"),
        click.option("--edge-id", help="This edge's name in metrics and responses. [default: host name]"),
        click.option(
            "--clients", help="Poll only these clients (comma-separated), to split a fleet. [default: all]"
        ),
        *edge_security_options(),
        *edge_mqtt_options(),
        *edge_notify_options(),
    ]
    return _with_options(options)(func)


@main.command(epilog=_EDGE_HELP_ENV)
@_edge_options
@_fail_on_config_error
def edge(**options: Any) -> None:
    """Run the edge server: poll the device API, store, detect anomalies, serve the API."""
    from iotedge.config import load_edge_settings
    from iotedge.edge.app import create_app
    from iotedge.edge.auth import KeyRing
    from iotedge.edge.store import SqliteStore, open_store
    from iotedge.edge.store.choose import check_postgres
    from iotedge.memory import limit_arenas

    settings = load_edge_settings(**options)
    limit_arenas()  # before any worker thread exists; see iotedge.memory
    tls = server_context(settings.certfile, settings.keyfile, settings.client_ca)
    # Check the keys and the store before serving: a bad file is one clear line and exit 1,
    # never a traceback from inside the server's startup, and a corrupt store is never served.
    # In the PostgreSQL mode the keys live in the database: the app reads them at start.
    if not settings.store_is_postgres:
        KeyRing(settings.resolved_keys_file, env_keys=settings.api_keys)
    ensure_port_free(settings.host, settings.port, "--port")
    ensure_port_free(settings.metrics_host, settings.metrics_port, "--metrics-port")
    opened: SqliteStore | None = None
    if settings.store_is_postgres:
        # Reachable, and its schema accepted, before serving; the app opens its own pool.
        asyncio.run(check_postgres(settings.store))
    else:
        opened = open_store(settings.store_path)
    app = create_app(settings, store=opened)
    scheme = "https" if tls else "http"
    mtls = " with client certificates required" if settings.client_ca else ""
    _log.info("edge API on %s://%s:%d%s (docs at /docs)", scheme, settings.host, settings.port, mtls)
    server = uvicorn_server(
        app,
        settings.host,
        settings.port,
        limits=edge_limits(settings),
        tls=tls,
        on_event=app.state.metrics.record_connection_event,
    )
    _run_until_ctrl_c(server.serve(), tls=tls is not None or settings.metrics_certfile is not None)


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the edge API and metrics (0.0.0.0: reachable from containers and other hosts).",
)
@click.option("--sim-port", type=int, default=8000, show_default=True, help="Simulator port.")
@click.option("--port", type=int, default=5000, show_default=True, help="Edge API port.")
@click.option("--metrics-port", type=int, default=8001, show_default=True, help="Edge metrics port.")
@click.option(
    "--data-dir", type=click.Path(), default="data", show_default=True, help="Edge store directory."
)
@click.option("--poll-interval", default="5s", show_default=True, help="Time between polls.")
@click.option(
    "--store",
    envvar="IOTEDGE_STORE",
    default="",
    help="postgresql://USER:PASSWORD@HOST/DB, or a SQLite file (env IOTEDGE_STORE). "
    "[default: DATA_DIR/iotedge.sqlite3]",
)
@_fail_on_config_error
def run(
    host: str, sim_port: int, port: int, metrics_port: int, data_dir: str, poll_interval: str, store: str
) -> None:
    """Start the simulator and the edge together, with demo keys printed (what `make run` does)."""
    from iotedge.demo import run_demo

    _run_until_ctrl_c(
        run_demo(
            host=host,
            sim_port=sim_port,
            port=port,
            metrics_port=metrics_port,
            data_dir=data_dir,
            poll_interval=poll_interval,
            store=store,
        )
    )


@main.group()
def notify() -> None:
    """Anomaly notifications (webhook, email)."""


@notify.command("test")
@_edge_options
@_fail_on_config_error
def notify_test(**options: Any) -> None:
    """Send a test message on every configured channel and report each outcome."""
    from iotedge.config import load_edge_settings
    from iotedge.edge.notify import send_test

    settings = load_edge_settings(**options)
    notifying = settings.notify
    if not notifying.enabled_channels():
        raise click.ClickException(
            "no channel configured: set IOTEDGE_WEBHOOK_URL (+ IOTEDGE_WEBHOOK_SECRET) "
            "or IOTEDGE_SMTP_HOST (+ IOTEDGE_MAIL_TO)"
        )
    results = asyncio.run(send_test(notifying))
    for channel, result in results.items():
        click.echo(f"{channel:<8} {'ok' if result.ok else 'FAILED'}  {result.detail}")
    if not all(result.ok for result in results.values()):
        sys.exit(1)


main.add_command(keys)
main.add_command(certs)
main.add_command(inject)
main.add_command(store)
