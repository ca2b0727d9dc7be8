"""The MQTT topic layout: ``<prefix>/<client>/<object_id>/telemetry`` in, anomalies and statistics out.

- ``<prefix>/<client>/<object_id>/telemetry``: a device's readings (devices publish).
- ``<prefix>/<client>/<object_id>/statistics``: the edge's retained per-object statistics.
- ``<prefix>/<client>/anomalies``: the edge's anomaly notifications for one client.

Client and object ids are single topic levels: no ``/``, ``+``, ``#`` or NUL.
"""

import re
from dataclasses import dataclass

__all__ = ["ANOMALIES", "STATISTICS", "TELEMETRY", "TopicLayout", "TopicMatch"]

TELEMETRY = "telemetry"
STATISTICS = "statistics"
ANOMALIES = "anomalies"

_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
_PREFIX = re.compile(r"[A-Za-z0-9_.:@-]{1,64}(/[A-Za-z0-9_.:@-]{1,64}){0,3}")


@dataclass(frozen=True, slots=True)
class TopicMatch:
    """What a topic under the prefix is: ``kind`` is telemetry, statistics, anomalies or None."""

    kind: str | None
    client: str = ""
    object_id: str = ""


class TopicLayout:
    """Builds and parses the topics under one prefix (tests use their own prefix)."""

    def __init__(self, prefix: str = "iotedge") -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"MQTT topic prefix {prefix!r}: 1-4 levels of letters, digits and _.:@-")
        self.prefix = prefix
        self._depth = prefix.count("/") + 1

    def subscriptions(self, clients: tuple[str, ...] = ()) -> list[str]:
        """Topic filters the edge subscribes to: every client, or only ``clients``."""
        if not clients:
            return [f"{self.prefix}/#"]
        return [f"{self.prefix}/{client}/#" for client in clients]

    def telemetry(self, client: str, object_id: str) -> str:
        """Where a device publishes its readings."""
        return f"{self.prefix}/{client}/{object_id}/{TELEMETRY}"

    def statistics(self, client: str, object_id: str) -> str:
        """Where the edge publishes an object's retained statistics."""
        return f"{self.prefix}/{client}/{object_id}/{STATISTICS}"

    def anomalies(self, client: str) -> str:
        """Where the edge publishes a client's anomaly notifications."""
        return f"{self.prefix}/{client}/{ANOMALIES}"

    def parse(self, topic: str) -> TopicMatch:
        """What ``topic`` is; ``kind`` None means it is outside the layout."""
        levels = topic.split("/")
        if "/".join(levels[: self._depth]) != self.prefix:
            return TopicMatch(None)
        rest = levels[self._depth :]
        if len(rest) == 3 and rest[2] in (TELEMETRY, STATISTICS) and _valid(rest[0], rest[1]):
            return TopicMatch(rest[2], rest[0], rest[1])
        if len(rest) == 2 and rest[1] == ANOMALIES and _valid(rest[0]):
            return TopicMatch(ANOMALIES, rest[0])
        return TopicMatch(None)


def _valid(*ids: str) -> bool:
    return all(_ID.fullmatch(part) for part in ids)
