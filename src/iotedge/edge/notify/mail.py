"""The email channel: one plain-text message per notification over SMTP.

``smtplib`` runs in a worker thread (``asyncio.to_thread``) rather than adding aiosmtplib:
the standard library covers STARTTLS, implicit TLS and AUTH, and noise control keeps mail
rare, so a short-lived thread per message costs nothing worth a runtime dependency. Socket
timeouts bound each thread.
"""

import asyncio
import hashlib
import logging
import smtplib
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from iotedge.config_notify import SmtpSecurity
from iotedge.edge.notify.base import DeliveryError
from iotedge.edge.notify.message import Notification, email_subject, email_text

__all__ = ["EmailChannel", "build_email"]

logger = logging.getLogger(__name__)


def build_email(note: Notification, *, mail_from: str, mail_to: tuple[str, ...], now: float) -> EmailMessage:
    """The email for ``note``; its Message-ID derives from the idempotency key."""
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = ", ".join(mail_to)
    msg["Subject"] = email_subject(note)
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, tz=UTC))
    # The same key gives the same Message-ID, so mail systems can fold retried duplicates.
    digest = hashlib.sha256(note.idempotency_key.encode()).hexdigest()[:32]
    domain = mail_from.rpartition("@")[2].strip(" >") or "iotedge.invalid"
    msg["Message-ID"] = f"<{digest}@{domain}>"
    msg["X-Iotedge-Idempotency-Key"] = note.idempotency_key
    msg["X-Iotedge-Event"] = note.kind
    msg.set_content(email_text(note))
    return msg


class EmailChannel:
    """Sends notifications through one SMTP server.

    Args:
        host, port: the SMTP server.
        security: ``plain`` (local development only), ``starttls`` or ``tls`` (implicit).
        user, password: optional AUTH credentials (only sent over TLS or to loopback).
        mail_from, mail_to: envelope and header addresses.
        timeout_s: socket timeout of every SMTP step.
        ssl_context: verifies the server; the system's CAs by default.
        clock: epoch seconds, for the Date header.
    """

    name = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: SmtpSecurity,
        mail_from: str,
        mail_to: tuple[str, ...],
        user: str = "",
        password: str = "",
        timeout_s: float = 20.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._host = host
        self._port = port
        self._security = security
        self._from = mail_from
        self._to = mail_to
        self._user = user
        self._password = password
        self._timeout = timeout_s
        self._ssl = ssl_context or ssl.create_default_context()
        self._clock = clock

    async def send(self, note: Notification) -> None:
        """Hand ``note`` to the SMTP server; returns once the server accepted it."""
        msg = build_email(note, mail_from=self._from, mail_to=self._to, now=self._clock())
        await asyncio.to_thread(self._send_sync, msg)

    def _send_sync(self, msg: EmailMessage) -> None:
        try:
            with self._connect() as smtp:
                if self._user:
                    smtp.login(self._user, self._password)
                refused = smtp.send_message(msg, from_addr=self._from, to_addrs=list(self._to))
            if refused:
                # Accepted for the others; retrying would duplicate their copies.
                logger.warning("SMTP server refused some recipients: %s", sorted(refused))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                self.name, f"all recipients refused: {codes}", permanent=min(codes) >= 500
            ) from exc
        except smtplib.SMTPAuthenticationError as exc:
            # Bad credentials are fixed by an operator; keep retrying until max age.
            raise DeliveryError(self.name, f"SMTP AUTH failed ({exc.smtp_code})") from exc
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error
            if isinstance(reply, bytes):
                reply = reply.decode(errors="replace")
            raise DeliveryError(
                self.name,
                f"SMTP {exc.smtp_code} {reply or ''}".strip(),
                permanent=exc.smtp_code >= 500,
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(self.name, f"{type(exc).__name__}: {exc}") from exc

    def _connect(self) -> smtplib.SMTP:
        if self._security == "tls":
            return smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout, context=self._ssl)
        smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        try:
            if self._security == "starttls":
                smtp.starttls(context=self._ssl)
        except BaseException:
            smtp.close()
            raise
        return smtp
