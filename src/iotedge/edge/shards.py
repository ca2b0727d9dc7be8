"""Which clients' objects this collector polls, when several collectors share one store.

The collector asks a :class:`ShardOwnership` whether it owns each catalogue entry's client
and polls only those; :meth:`ShardOwnership.refresh` runs at the start of every cycle (a
lease-based implementation renews or takes its shards there). Clients are spread over
shards by :func:`shard_of`, a hash every process computes alike. :class:`AllShards`, the
default, owns everything: one collector polls the whole fleet, as before.
"""

import hashlib
from typing import Protocol

__all__ = ["AllShards", "ShardOwnership", "shard_of"]


class ShardOwnership(Protocol):
    """Which clients this process polls now."""

    def owns(self, client: str) -> bool:
        """Whether this process polls ``client``'s objects in the current cycle."""
        ...

    async def refresh(self) -> None:
        """Renew or re-balance ownership; called at the start of each collector cycle."""
        ...


def shard_of(client: str, shards: int) -> int:
    """The shard (0 .. ``shards`` - 1) of ``client``: the first 8 bytes of its SHA-256, modulo ``shards``.

    Stable across processes, restarts and Python versions (unlike ``hash()``).

    Raises:
        ValueError: ``shards`` is not positive.
    """
    if shards < 1:
        raise ValueError(f"shards must be positive, not {shards}")
    digest = hashlib.sha256(client.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


class AllShards:
    """Owns every client (a single collector)."""

    def owns(self, client: str) -> bool:
        """Always true."""
        return True

    async def refresh(self) -> None:
        """Nothing to renew."""
