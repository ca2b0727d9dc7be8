"""Notification deliveries: what was sent, held back, retried or given up, per channel."""

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from iotedge.edge.deps import ContextDep, PrincipalDep
from iotedge.edge.notify import notification_rows, pending_count

router = APIRouter(tags=["notifications"])


class NotificationOut(BaseModel):
    """One message on one channel."""

    outbox_id: int
    event_id: int
    client: str
    object_id: str | None
    metric: str | None
    rule: str | None
    severity: str
    transition: str
    kind: str
    channel: str
    status: str
    reason: str
    attempts: int
    last_error: str | None
    idempotency_key: str
    recorded_at: str | None
    next_attempt_at: str | None
    updated_at: str | None


class NotificationsOut(BaseModel):
    """Deliveries visible to the key, newest first."""

    notifications: list[NotificationOut]
    count: int
    channels: list[str]
    pending: int | None
    edge_id: str


@router.get("/notifications", response_model=NotificationsOut)
async def notifications(
    ctx: ContextDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Notification deliveries of the key's clients (``pending`` is shown to the cloud key only)."""
    scope = principal.scope
    rows = notification_rows(ctx.notifications_db, None if scope is None else set(scope), limit)
    channels = list(ctx.drainer.settings.enabled_channels()) if ctx.drainer is not None else []
    return {
        "notifications": [asdict(row) for row in rows],
        "count": len(rows),
        "channels": channels,
        "pending": pending_count(ctx.notifications_db) if scope is None else None,
        "edge_id": ctx.edge_id,
    }
