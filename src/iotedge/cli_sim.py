"""``iotedge inject``: start an anomaly now on a running simulator (for live demos)."""

import json

import click
import httpx

from iotedge.config import parse_duration

__all__ = ["inject"]


@click.command()
@click.option("--sim-url", default="http://127.0.0.1:8000", show_default=True, help="The running simulator.")
@click.option("--object", "object_id", required=True, help="The object, e.g. device_1.")
@click.option(
    "--kind",
    type=click.Choice(["spike", "stuck", "missing", "battery_low"]),
    default="spike",
    show_default=True,
    help="What goes wrong.",
)
@click.option("--metric", help="One of the object's metrics. [default: its primary metric]")
@click.option("--duration", default="2m", show_default=True, help="How long it lasts, e.g. 90s, 5m.")
def inject(sim_url: str, object_id: str, kind: str, metric: str | None, duration: str) -> None:
    """Start an anomaly now on one object of a running `iotedge sim` (or `iotedge run`)."""
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from exc
    order = {"object_id": object_id, "kind": kind, "metric": metric, "duration_s": seconds}
    url = sim_url.rstrip("/") + "/_sim/anomalies/inject"
    try:
        response = httpx.post(url, json=order, timeout=5.0)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the simulator at {sim_url}: {exc}") from exc
    if response.status_code != httpx.codes.CREATED:
        raise click.ClickException(f"the simulator refused ({response.status_code}): {response.text}")
    event = json.loads(response.content)
    click.echo(
        f"injected {event['kind']} on {event['object_id']} {event['metric']} "
        f"from {event['started_at']} to {event['ended_at']}"
    )
