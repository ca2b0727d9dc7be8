"""Triage: routing, cooldown and flapping decide which outbox rows become messages.

Runs inside one write transaction per drainer pass. For each new outbox row, in id order,
it creates ``outbox_delivery`` rows (one per routed channel) that are either pending (to
send now or, when held by the cooldown, later) or suppressed with a reason. See
``docs/notifications.md`` for the rules and the bounds they give.
"""

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from iotedge.config_notify import NotifySettings
from iotedge.edge.notify.backend import CursorFeed, OutboxFeed, Sql

__all__ = ["HELD", "TriageResult", "release_held", "series_key", "settle_flapping", "triage"]

logger = logging.getLogger(__name__)

HELD = "held"


def series_key(payload: dict[str, Any]) -> str:
    """The noise-control key of an event: object, metric and rule."""
    return "|".join(str(payload.get(k)) for k in ("object_id", "metric", "rule"))


@dataclass
class _Series:
    key: str
    client: str
    severity: str
    recent: list[float] = field(default_factory=list)
    flapping: bool = False
    last_outbox_id: int | None = None
    last_transition: str | None = None
    last_at: float | None = None
    opened_notified_at: float | None = None
    grouped: int = 0


def _load_series(conn: Sql, key: str, client: str, severity: str) -> _Series:
    row = conn.execute("SELECT * FROM notify_series WHERE series = ?", (key,)).fetchone()
    if row is None:
        return _Series(key=key, client=client, severity=severity)
    return _Series(
        key=key,
        client=row["client"],
        severity=row["severity"],
        recent=[float(x) for x in json.loads(row["recent"])],
        flapping=bool(row["flapping"]),
        last_outbox_id=row["last_outbox_id"],
        last_transition=row["last_transition"],
        last_at=row["last_at"],
        opened_notified_at=row["opened_notified_at"],
        grouped=row["grouped"],
    )


def _save_series(conn: Sql, s: _Series) -> None:
    conn.execute(
        "INSERT INTO notify_series (series, client, severity, recent, flapping,"
        " last_outbox_id, last_transition, last_at, opened_notified_at, grouped)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (series) DO UPDATE SET"
        " client = excluded.client, severity = excluded.severity, recent = excluded.recent,"
        " flapping = excluded.flapping, last_outbox_id = excluded.last_outbox_id,"
        " last_transition = excluded.last_transition, last_at = excluded.last_at,"
        " opened_notified_at = excluded.opened_notified_at, grouped = excluded.grouped",
        (
            s.key,
            s.client,
            s.severity,
            json.dumps(s.recent),
            int(s.flapping),
            s.last_outbox_id,
            s.last_transition,
            s.last_at,
            s.opened_notified_at,
            s.grouped,
        ),
    )


def _opened_dependency(conn: Sql, event_id: int, before_id: int, channel: str) -> Any:
    """The message that announced this event's opening on ``channel``, if any."""
    return conn.execute(
        "SELECT d.* FROM outbox_delivery d JOIN outbox o ON o.id = d.outbox_id"
        " WHERE o.event_id = ? AND o.transition = 'opened' AND o.id < ? AND d.channel = ?"
        " AND d.kind IN ('event', 'stable')"
        " ORDER BY d.status = 'sent' DESC, d.status = 'pending' DESC, d.outbox_id DESC LIMIT 1",
        (event_id, before_id, channel),
    ).fetchone()


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class TriageResult:
    """What one triage did: rows read, messages queued, held and suppressed per channel."""

    triaged: int = 0
    queued: int = 0
    held: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)


def triage(
    conn: Sql, settings: NotifySettings, now: float, *, feed: OutboxFeed | None = None
) -> TriageResult:
    """Turn new outbox rows into delivery rows, in id order, and mark them triaged.

    Must run inside a write transaction (on PostgreSQL, the exclusive one). ``feed`` finds
    the new rows: a cursor over ids (SQLite, the default) or per-row flags.
    """
    feed = feed or CursorFeed()
    rows = feed.new_rows(conn, settings.batch_size)
    run = _Triage(conn, settings, now)
    for r in rows:
        run.one(r)
    feed.mark(conn, rows)
    run.result.triaged = len(rows)
    return run.result


class _Triage:
    """One triage run: the connection, the settings, the time and the tally."""

    def __init__(self, conn: Sql, settings: NotifySettings, now: float) -> None:
        self.conn = conn
        self.settings = settings
        self.now = now
        self.result = TriageResult()

    def add(
        self,
        r: Any,
        series: str,
        channels: tuple[str, ...],
        *,
        kind: str = "event",
        status: str = "pending",
        reason: str = "",
        due: float | None = None,
        n_grouped: int = 0,
    ) -> None:
        for channel in channels:
            self.conn.execute(
                "INSERT INTO outbox_delivery (outbox_id, channel, kind, series,"
                " status, reason, next_attempt_at, n_grouped, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    r["id"],
                    channel,
                    kind,
                    series,
                    status,
                    reason,
                    self.now if due is None else due,
                    n_grouped,
                    self.now,
                    self.now,
                ),
            )
            if status == "suppressed":
                self.result.suppressed[channel] += 1
            elif reason == HELD:
                self.result.held += 1
            else:
                self.result.queued += 1

    def suppress_held(self, series: str, reason: str) -> None:
        """Suppress the series' held (never attempted) messages."""
        for (channel,) in self.conn.execute(
            "SELECT channel FROM outbox_delivery"
            " WHERE series = ? AND status = 'pending' AND reason = ? AND attempts = 0",
            (series, HELD),
        ).fetchall():
            self.result.suppressed[channel] += 1
        self.conn.execute(
            "UPDATE outbox_delivery SET status = 'suppressed', reason = ?, updated_at = ?"
            " WHERE series = ? AND status = 'pending' AND reason = ? AND attempts = 0",
            (reason, self.now, series, HELD),
        )

    def one(self, r: Any) -> None:
        """Triage one outbox row."""
        settings = self.settings
        payload = _payload(r["payload"])
        key = series_key(payload) if payload else f"event:{r['event_id']}"
        s = _load_series(self.conn, key, r["client"], r["severity"])
        t = float(r["created_at"])
        s.recent = [x for x in s.recent if x > t - settings.flap_window_s] + [t]
        s.client, s.severity = r["client"], r["severity"]
        s.last_outbox_id, s.last_transition, s.last_at = r["id"], r["transition"], t
        channels = settings.channels_for(r["client"], r["severity"])
        if s.flapping:
            self.add(r, key, channels, status="suppressed", reason="flapping")
            s.grouped += 1
        elif len(s.recent) > settings.flap_max:
            s.flapping = True
            # The flapping message reports every change in the window, held ones included.
            self.suppress_held(key, "flapping")
            s.grouped = 0
            self.add(r, key, channels, status="suppressed", reason="flapping")
            self.add(r, key, channels, kind="flapping", n_grouped=len(s.recent))
            logger.info("series %s is flapping (%s changes); going quiet", key, len(s.recent))
        elif r["transition"] == "opened":
            ref = s.opened_notified_at
            if ref is not None and t - ref < settings.cooldown_s:
                self.add(r, key, channels, reason=HELD, due=ref + settings.cooldown_s)
            else:
                self.add(r, key, channels, n_grouped=s.grouped)
                s.grouped = 0
                s.opened_notified_at = t
        else:
            self.resolved(r, key, channels, s)
        _save_series(self.conn, s)

    def resolved(self, r: Any, key: str, channels: tuple[str, ...], s: _Series) -> None:
        """Triage a ``resolved`` row: it follows its ``opened`` message, per channel."""
        folded = False
        for channel in channels:
            dep = _opened_dependency(self.conn, r["event_id"], r["id"], channel)
            if dep is not None and dep["status"] == "pending" and dep["reason"] == HELD:
                # Opened and resolved within the cooldown: neither is worth a message.
                self.conn.execute(
                    "UPDATE outbox_delivery SET status = 'suppressed', reason = 'cooldown',"
                    " updated_at = ? WHERE outbox_id = ? AND channel = ? AND kind = ?",
                    (self.now, dep["outbox_id"], channel, dep["kind"]),
                )
                self.result.suppressed[channel] += 1
                self.add(r, key, (channel,), status="suppressed", reason="cooldown")
                folded = True
            elif dep is not None and dep["status"] in ("pending", "sent"):
                self.add(r, key, (channel,))
            else:
                self.add(r, key, (channel,), status="suppressed", reason="opened_not_sent")
        if folded:
            s.grouped += 2


def release_held(conn: Sql, outbox_id: int, series: str, channel: str, now: float) -> int | None:
    """Release a held opened message whose cooldown ended; returns its grouped count.

    Must run inside a write transaction (on PostgreSQL, the exclusive one). The first channel
    to get there releases the row on every channel: its messages then count as the series'
    latest opened notification and carry the transitions grouped since the previous one.
    Returns None, releasing nothing, when the message is no longer pending: another
    drainer's triage suppressed it (flapping, cooldown) after this one claimed it.
    """
    status = conn.execute(
        "SELECT status FROM outbox_delivery WHERE outbox_id = ? AND channel = ? AND kind = 'event'",
        (outbox_id, channel),
    ).fetchone()
    if status is None or status[0] != "pending":
        return None
    still_held = conn.execute(
        "SELECT 1 FROM outbox_delivery WHERE outbox_id = ? AND kind = 'event' AND reason = ?",
        (outbox_id, HELD),
    ).fetchone()
    if still_held:
        row = conn.execute("SELECT grouped FROM notify_series WHERE series = ?", (series,)).fetchone()
        conn.execute(
            "UPDATE outbox_delivery SET reason = 'released', n_grouped = ?, updated_at = ?"
            " WHERE outbox_id = ? AND kind = 'event' AND reason = ?",
            (int(row[0]) if row else 0, now, outbox_id, HELD),
        )
        conn.execute(
            "UPDATE notify_series SET grouped = 0, opened_notified_at = ? WHERE series = ?",
            (now, series),
        )
    mine = conn.execute(
        "SELECT n_grouped FROM outbox_delivery WHERE outbox_id = ? AND channel = ? AND kind = 'event'",
        (outbox_id, channel),
    ).fetchone()
    return int(mine[0]) if mine else 0


def settle_flapping(conn: Sql, settings: NotifySettings, now: float) -> int:
    """End flapping for series quiet for a whole window: one ``stable`` message each.

    Must run inside a write transaction; returns how many series settled.
    """
    settled = conn.execute(
        "SELECT series FROM notify_series WHERE flapping = 1 AND last_at <= ?",
        (now - settings.flap_window_s,),
    ).fetchall()
    for (key,) in settled:
        s = _load_series(conn, key, "", "")
        last = conn.execute("SELECT id FROM outbox WHERE id = ?", (s.last_outbox_id or 0,)).fetchone()
        if last is not None:
            channels = settings.channels_for(s.client, s.severity)
            _Triage(conn, settings, now).add(last, key, channels, kind="stable", n_grouped=s.grouped)
        logger.info("series %s is stable again (%s)", key, s.last_transition)
        s.flapping, s.recent, s.grouped = False, [], 0
        s.opened_notified_at = now
        _save_series(conn, s)
    return len(settled)
