"""Builds the configured channels from settings, and sends a test message on each."""

import logging
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from iotedge.config_notify import NotifySettings
from iotedge.edge.notify.base import Channel, DeliveryError
from iotedge.edge.notify.mail import EmailChannel
from iotedge.edge.notify.message import Notification
from iotedge.edge.notify.webhook import WebhookChannel

__all__ = ["ChannelResult", "build_channels", "send_test"]

logger = logging.getLogger(__name__)


def build_channels(
    settings: NotifySettings,
    *,
    http_client: httpx.AsyncClient,
    clock: Callable[[], float] = time.time,
    mqtt: Channel | None = None,
) -> dict[str, Channel]:
    """One channel object per configured channel, keyed by name (``mqtt``: the edge's MQTT channel)."""
    channels: dict[str, Channel] = {}
    if "webhook" in settings.enabled_channels():
        channels["webhook"] = WebhookChannel(
            url=settings.webhook_url,
            secret=settings.webhook_secret,
            client=http_client,
            timeout_s=settings.webhook_timeout_s,
            clock=clock,
        )
    if "email" in settings.enabled_channels():
        context = ssl.create_default_context(cafile=settings.smtp_ca_file or None)
        channels["email"] = EmailChannel(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            user=settings.smtp_user,
            password=settings.smtp_password,
            mail_from=settings.mail_from,
            mail_to=settings.mail_to,
            timeout_s=settings.smtp_timeout_s,
            ssl_context=context,
            clock=clock,
        )
    if "mqtt" in settings.enabled_channels() and mqtt is not None:
        channels["mqtt"] = mqtt
    return channels


@dataclass(frozen=True)
class ChannelResult:
    """How a test send went on one channel."""

    ok: bool
    detail: str


async def send_test(
    settings: NotifySettings,
    *,
    http_client: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, ChannelResult]:
    """Send one ``test`` notification on every configured channel; never raises."""
    own_client = http_client is None
    client = http_client or httpx.AsyncClient()
    results: dict[str, ChannelResult] = {}
    try:
        now = clock()
        note = Notification(
            kind="test",
            idempotency_key=f"{settings.edge_id}:test:{uuid.uuid4().hex}",
            event={"message": "test notification"},
            recorded_at=now,
            edge_id=settings.edge_id,
        )
        for name, channel in build_channels(settings, http_client=client, clock=clock).items():
            try:
                await channel.send(note)
            except DeliveryError as exc:
                results[name] = ChannelResult(False, exc.detail)
            else:
                results[name] = ChannelResult(True, "accepted")
            logger.info("test notification on %s: %s", name, results[name].detail)
    finally:
        if own_client:
            await client.aclose()
    return results
