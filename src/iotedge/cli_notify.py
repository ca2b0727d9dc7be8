"""The notification flags of ``iotedge edge`` and ``iotedge notify test`` (each has an IOTEDGE_* twin).

The two secrets, ``IOTEDGE_WEBHOOK_SECRET`` and ``IOTEDGE_SMTP_PASSWORD``, have no flag, like the
API keys and the metrics token: a flag shows in ``ps`` listings and shell history.
"""

from collections.abc import Callable
from typing import Any

import click

__all__ = ["edge_notify_options"]

_Option = Callable[[Any], Any]


def edge_notify_options() -> list[_Option]:
    """Flags of the notification channels, routes, noise control and outbox pacing."""
    return [
        click.option("--webhook-url", help="Notify anomalies by webhook to this URL. [default: off]"),
        click.option("--webhook-timeout", help="Timeout of one webhook POST, e.g. 10s. [default: 10s]"),
        click.option(
            "--smtp-host", help="Notify anomalies by email through this SMTP server. [default: off]"
        ),
        click.option("--smtp-port", type=int, help="SMTP port. [default: 587]"),
        click.option(
            "--smtp-security", type=click.Choice(["plain", "starttls", "tls"]), help="[default: starttls]"
        ),
        click.option("--smtp-user", help="SMTP user name."),
        click.option("--smtp-timeout", help="Socket timeout of each SMTP step. [default: 20s]"),
        click.option("--smtp-ca-file", type=click.Path(), help="CA bundle that verifies the SMTP server."),
        click.option("--mail-from", help="Sender of notification mails. [default: iotedge@localhost]"),
        click.option("--mail-to", help="Recipients of notification mails, comma-separated."),
        click.option(
            "--notify-routes", help="Channels per client and severity, e.g. 'client_1:critical=email'."
        ),
        click.option(
            "--notify-cooldown", help="Quiet time before a re-opened anomaly notifies. [default: 5m]"
        ),
        click.option("--notify-flap-window", help="Window in which flapping is counted. [default: 10m]"),
        click.option(
            "--notify-flap-max", type=int, help="Changes in the window that mean flapping. [default: 6]"
        ),
        click.option("--notify-max-age", help="Give up delivering a message after this long. [default: 1d]"),
        click.option("--notify-poll-interval", help="Time between two passes over the outbox. [default: 2s]"),
        click.option("--notify-backoff-base", help="First retry delay bound. [default: 2s]"),
        click.option("--notify-backoff-max", help="Largest retry delay bound. [default: 5m]"),
        click.option("--notify-batch-size", type=int, help="Messages sent per pass at most. [default: 200]"),
    ]
