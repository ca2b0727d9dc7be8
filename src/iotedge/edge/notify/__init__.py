"""Anomaly notifications: outbox drainer, webhook and email channels, noise control."""

from iotedge.config_notify import CHANNELS, NotifySettings, Route, parse_routes
from iotedge.edge.notify.backend import OutboxBackend, PgOutbox, SqliteOutbox
from iotedge.edge.notify.base import Channel, DeliveryError
from iotedge.edge.notify.channels import ChannelResult, build_channels, send_test
from iotedge.edge.notify.drainer import Drainer, DrainReport, backoff_delay
from iotedge.edge.notify.mail import EmailChannel, build_email
from iotedge.edge.notify.message import (
    SCHEMA_VERSION,
    Notification,
    email_subject,
    email_text,
    webhook_body,
)
from iotedge.edge.notify.mqtt import MqttChannel
from iotedge.edge.notify.state import (
    NotificationRow,
    notification_rows,
    pending_count,
    pg_notification_rows,
    pg_pending_count,
)
from iotedge.edge.notify.webhook import WebhookChannel, sign, verify_signature

__all__ = [
    "CHANNELS",
    "SCHEMA_VERSION",
    "Channel",
    "ChannelResult",
    "DeliveryError",
    "DrainReport",
    "Drainer",
    "EmailChannel",
    "MqttChannel",
    "Notification",
    "NotificationRow",
    "NotifySettings",
    "OutboxBackend",
    "PgOutbox",
    "Route",
    "SqliteOutbox",
    "WebhookChannel",
    "backoff_delay",
    "build_channels",
    "build_email",
    "email_subject",
    "email_text",
    "notification_rows",
    "parse_routes",
    "pending_count",
    "pg_notification_rows",
    "pg_pending_count",
    "send_test",
    "sign",
    "verify_signature",
    "webhook_body",
]
