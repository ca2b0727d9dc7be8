"""Sharding the fleet across collectors: a fixed number of shards, keyed by a hash of the client."""

import hashlib
from typing import Protocol

__all__ = ["ShardOwnership", "shard_of"]


def shard_of(client: str, shards: int) -> int:
    """The shard of ``client``: the first 8 bytes of its SHA-256, big-endian, modulo ``shards``."""
    digest = hashlib.sha256(client.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


class ShardOwnership(Protocol):
    """Which clients this collector polls now."""

    def owns(self, client: str) -> bool:
        """True when this collector polls ``client``'s devices."""

    async def refresh(self) -> None:
        """Renew this collector's claim on its shards (once per poll interval)."""
