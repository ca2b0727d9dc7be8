"""Shard assignment: a stable hash of the client id, spread evenly; AllShards owns everything."""

import asyncio
import hashlib

import pytest

from iotedge.edge.shards import AllShards, ShardOwnership, shard_of


def test_shard_of_is_the_first_eight_bytes_of_sha256_modulo_the_count() -> None:
    """The documented formula, so any process (or language) computes the same shard."""
    for client in ("client_1", "client_42", "é-client", ""):
        expected = int.from_bytes(hashlib.sha256(client.encode()).digest()[:8], "big") % 7
        assert shard_of(client, 7) == expected


def test_shards_are_in_range_and_spread_evenly() -> None:
    """10,000 clients over 4 shards: every shard gets a fair share (within 10 % of 2,500)."""
    counts = [0] * 4
    for index in range(10_000):
        shard = shard_of(f"client_{index}", 4)
        assert 0 <= shard < 4
        counts[shard] += 1
    assert all(2250 <= count <= 2750 for count in counts), counts


def test_one_shard_owns_every_client_and_zero_shards_is_refused() -> None:
    """shards=1 is the single collector; a non-positive count is a programming error."""
    assert {shard_of(f"c{index}", 1) for index in range(50)} == {0}
    with pytest.raises(ValueError, match="positive"):
        shard_of("client_1", 0)


def test_all_shards_owns_everything_and_refreshes() -> None:
    """The default ownership fits the protocol and owns every client."""
    owner: ShardOwnership = AllShards()
    asyncio.run(owner.refresh())
    assert owner.owns("client_1") and owner.owns("anything")
