"""Request budgets: a token bucket per API key, and a cap on failed logins per address.

Both are token buckets. A key's bucket holds ``burst`` tokens and refills at ``rate`` per
second; each authenticated request takes one, and an empty bucket means 429 with the
seconds until the next token in ``Retry-After``. A request that turns out to cost more
(``POST /query`` over many series and points) is charged the rest once admitted: the
bucket may go into debt, down to ``-burst``, and the key's next requests wait for it to
refill. An address's failure bucket holds
``auth_failures`` tokens and refills over a minute; each failed authentication takes one,
and while it is empty every request from that address gets 429 before its key is even
looked at, so guessing keys gets nowhere and a valid key cannot be told from an invalid one.

This module only keeps the budgets; who the caller is, and in which order the checks run,
is :func:`iotedge.edge.deps.authenticate`'s job. Everything lives in memory, per edge
process; the clock is injectable for tests.
"""

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from iotedge.errors import RateLimited

__all__ = ["RateLimits", "TokenBucket"]

_log = logging.getLogger(__name__)

MAX_TRACKED = 10_000
"""Buckets kept per kind; the least recently used goes first (a full bucket loses nothing)."""


class TokenBucket:
    """``capacity`` tokens, refilled continuously at ``rate`` tokens per second."""

    __slots__ = ("_at", "_tokens", "capacity", "rate")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self._tokens = capacity
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = max(self._at, now)

    def wait(self, now: float) -> float:
        """Seconds until one token is there (0 when one is there now)."""
        self._refill(now)
        if self._tokens >= 1:
            return 0.0
        return (1 - self._tokens) / self.rate if self.rate > 0 else float("inf")

    def take(self, now: float) -> float:
        """Take a token if there is one; returns 0, or the seconds until one is there."""
        waiting = self.wait(now)
        if waiting == 0.0:
            self._tokens -= 1
        return waiting

    def debit(self, amount: float, now: float) -> None:
        """Take ``amount`` tokens whatever is left, going into debt down to ``-capacity``."""
        self._refill(now)
        self._tokens = max(-self.capacity, self._tokens - amount)


class _Buckets:
    """Token buckets by name, at most ``MAX_TRACKED`` of them."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def get(self, name: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = TokenBucket(self.capacity, self.rate, now)
            if len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(name)
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimits:
    """The edge's request budgets.

    Args:
        rate: average requests per second per key (0 = unlimited).
        burst: requests a key may make at once.
        auth_failures: failed authentications per minute per address (0 = unlimited).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        rate: float = 50.0,
        burst: int = 100,
        auth_failures: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._keys = _Buckets(burst, rate) if rate > 0 else None
        self._failures = _Buckets(auth_failures, auth_failures / 60.0) if auth_failures > 0 else None

    def check_address(self, address: str) -> None:
        """Refuse an address that used up its failed authentications.

        Raises:
            RateLimited: with the seconds until its next attempt.
        """
        if self._failures is None:
            return
        now = self._clock()
        waiting = self._failures.get(address, now).wait(now)
        if waiting > 0:
            raise RateLimited(waiting)

    def auth_failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        if self._failures is None:
            return
        now = self._clock()
        bucket = self._failures.get(address, now)
        if bucket.take(now) == 0.0 and bucket.wait(now) > 0:
            _log.warning("address %s reached the failed-authentication cap; refusing it for now", address)

    def check_key(self, key_id: str) -> None:
        """Take one request from the key's budget.

        Raises:
            RateLimited: when the budget is spent, with the seconds until the next token.
        """
        if self._keys is None:
            return
        now = self._clock()
        waiting = self._keys.get(key_id, now).take(now)
        if waiting > 0:
            _log.info("key %s is over its rate limit", key_id)
            raise RateLimited(waiting)

    def charge(self, key_id: str, cost: float) -> None:
        """Charge an admitted request's extra ``cost`` (in requests) to the key's budget."""
        if self._keys is None or cost <= 0:
            return
        now = self._clock()
        self._keys.get(key_id, now).debit(cost, now)
