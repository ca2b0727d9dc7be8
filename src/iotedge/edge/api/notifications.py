"""Notification deliveries: what was sent, held back, retried or given up, per channel."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from iotedge.edge.deps import ContextDep, PrincipalDep
from iotedge.edge.notify import NotificationRow

router = APIRouter(tags=["notifications"])


class NotificationsOut(BaseModel):
    """Deliveries visible to the key, newest first."""

    notifications: list[NotificationRow]
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
    rows = await ctx.notification_rows(None if scope is None else set(scope), limit)
    channels = list(ctx.drainer.settings.enabled_channels()) if ctx.drainer is not None else []
    return {
        "notifications": rows,
        "count": len(rows),
        "channels": channels,
        "pending": await ctx.notifications_pending() if scope is None else None,
        "edge_id": ctx.edge_id,
    }
