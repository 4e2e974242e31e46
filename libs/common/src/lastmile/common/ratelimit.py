"""Token-bucket rate limits per caller (merchant, device), in process memory.

Each replica limits what it serves; with N replicas behind a balancer a caller gets up to N times the rate,
which is the usual trade against a shared store on the hot path.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from lastmile.common.errors import TooManyRequests


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate` tokens a second, bursts up to `burst`; remembers at most `max_callers` callers (LRU)."""

    def __init__(self, rate: float, burst: float, *, max_callers: int = 100_000) -> None:
        self.rate, self.burst, self.max_callers = rate, burst, max_callers
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, caller: str, cost: float = 1.0, now: float | None = None) -> float:
        """Spend `cost` tokens; returns 0 when allowed, else the seconds to wait before retrying."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(caller, None) or _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets[caller] = bucket
        if len(self._buckets) > self.max_callers:
            self._buckets.popitem(last=False)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate

    def check(self, caller: str, cost: float = 1.0) -> None:
        """Raise 429 with Retry-After when `caller` is over its rate."""
        wait = self.take(caller, cost)
        if wait > 0:
            raise TooManyRequests(max(1, math.ceil(wait)))
