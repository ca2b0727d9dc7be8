"""The webhook channel: a signed JSON POST per notification."""

import hashlib
import hmac
import logging
import time
from collections.abc import Callable

import httpx

from iotedge.edge.notify.base import DeliveryError
from iotedge.edge.notify.message import Notification, webhook_body

__all__ = [
    "EVENT_HEADER",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookChannel",
    "sign",
    "verify_signature",
]

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Iotedge-Signature"
IDEMPOTENCY_HEADER = "X-Iotedge-Idempotency-Key"
TIMESTAMP_HEADER = "X-Iotedge-Timestamp"
EVENT_HEADER = "X-Iotedge-Event"
# Worth retrying: the receiver is overloaded, rate limiting or broken for now.
_RETRY_STATUSES = frozenset({408, 425, 429})


def sign(body: bytes, secret: str) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``header`` is the right signature of ``body`` (constant-time compare)."""
    if not header:
        return False
    return hmac.compare_digest(sign(body, secret).encode(), header.strip().encode())


class WebhookChannel:
    """POSTs :func:`webhook_body` to one URL, signed with a shared secret.

    Args:
        url: the receiver's URL.
        secret: the HMAC key shared with the receiver.
        client: the HTTP client to use (its transport is the test seam).
        timeout_s: the whole request's timeout.
        clock: epoch seconds, for the timestamp header.
    """

    name = "webhook"

    def __init__(
        self,
        *,
        url: str,
        secret: str,
        client: httpx.AsyncClient,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._secret = secret
        self._client = client
        self._timeout = timeout_s
        self._clock = clock

    async def send(self, note: Notification) -> None:
        """POST ``note``; a 2xx answer means accepted, anything else raises."""
        body = webhook_body(note)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self._secret),
            IDEMPOTENCY_HEADER: note.idempotency_key,
            TIMESTAMP_HEADER: str(int(self._clock())),
            EVENT_HEADER: note.kind,
        }
        try:
            response = await self._client.post(
                self._url, content=body, headers=headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(self.name, f"{type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return
        code = response.status_code
        detail = f"HTTP {code} from receiver"
        permanent = code < 500 and code not in _RETRY_STATUSES
        raise DeliveryError(self.name, detail, permanent=permanent)
