"""What every channel implements, and the error a failed delivery raises."""

from typing import Protocol

from iotedge.edge.notify.message import Notification
from iotedge.errors import IotedgeError

__all__ = ["Channel", "DeliveryError"]


class DeliveryError(IotedgeError):
    """A channel could not deliver a notification.

    Attributes:
        channel: ``webhook`` or ``email``.
        permanent: retrying the same message cannot succeed (e.g. HTTP 400, SMTP 550).
        detail: what the receiver or the network said, safe to log and to show.
    """

    def __init__(self, channel: str, detail: str, *, permanent: bool = False) -> None:
        self.channel = channel
        self.detail = detail
        self.permanent = permanent
        kind = "permanent" if permanent else "temporary"
        super().__init__(f"{channel} delivery failed ({kind}): {detail}")


class Channel(Protocol):
    """A way to deliver a notification; ``send`` returns once the receiver accepted it."""

    @property
    def name(self) -> str:
        """The channel's name in routes, state and metrics."""
        ...

    async def send(self, note: Notification) -> None:
        """Deliver ``note`` or raise :class:`DeliveryError`."""
        ...
