"""The ``iotedge`` command line; the only place that configures logging."""

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

import click
import uvicorn

from iotedge import __version__
from iotedge.config import SIM_ENV_PREFIX, load_sim_settings
from iotedge.errors import ConfigError

__all__ = ["main"]

_log = logging.getLogger("iotedge")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request at INFO


def _fail_on_config_error(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            raise click.ClickException(f"invalid configuration: {exc}") from exc

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def uvicorn_server(app: Any, host: str, port: int, **extra: Any) -> uvicorn.Server:
    """A uvicorn server for ``app`` that leaves logging to us and serves no access log."""
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="on", **extra
    )
    return uvicorn.Server(config)


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
    iotedge sim    serve the simulated device API (the course's endpoints)
    Each flag also reads an IOTEDGE_* environment variable; a flag wins over it.
    """
    _setup_logging(log_level)


_SIM_HELP_ENV = (
    f"Every flag has an environment twin {SIM_ENV_PREFIX}<FLAG> (e.g. {SIM_ENV_PREFIX}SEED)."
)


@main.command(epilog=_SIM_HELP_ENV)
@click.option("--host", help="Address to listen on. [default: 127.0.0.1]")
@click.option("--port", type=int, help="TCP port. [default: 8000]")
@click.option("--seed", type=int, help="Seed of every value and anomaly. [default: 42]")
@click.option("--clients", type=int, help="Number of clients. [default: 3]")
@click.option("--objects-per-client", type=int, help="Objects per client. [default: 2]")
@click.option("--interval", help="Time between new readings, e.g. 5s. [default: 5s]")
@click.option(
    "--anomaly-rate", type=float, help="Chance of an anomaly per object and slot. [default: 0.05]"
)
@click.option(
    "--anomaly-slot", help="Length of an anomaly-schedule slot, e.g. 15m. [default: 900s]"
)
@click.option(
    "--timestamp-offset/--no-timestamp-offset", default=None, help="Add +00:00 to timestamps."
)
@click.option("--latency-ms", type=float, help="Added latency per device request. [default: 0]")
@click.option("--jitter-ms", type=float, help="Random extra latency up to N ms. [default: 0]")
@click.option("--error-rate", type=float, help="Share of requests answered 500/503. [default: 0]")
@click.option(
    "--garbage-rate", type=float, help="Share of requests answered with garbage. [default: 0]"
)
@click.option("--garbage-kinds", help="Comma list of truncated,malformed,html,wrong_types,partial.")
@click.option("--hang-rate", type=float, help="Share of requests that hang. [default: 0]")
@click.option("--hang-seconds", help="How long a hang lasts. [default: 30s]")
@_fail_on_config_error
def sim(**options: Any) -> None:
    """Serve the simulated device API (GET /iot_objects, /iot_data/{id}, ...)."""
    from iotedge.sim.app import create_app

    settings = load_sim_settings(**options)
    app = create_app(settings)
    fleet = app.state.fleet
    _log.info(
        "simulator: %d objects for %d clients, seed %d, on http://%s:%d (docs at /docs)",
        len(fleet.objects),
        len(fleet.by_client),
        settings.seed,
        settings.host,
        settings.port,
    )
    server = uvicorn_server(app, settings.host, settings.port)
    asyncio.run(server.serve())
