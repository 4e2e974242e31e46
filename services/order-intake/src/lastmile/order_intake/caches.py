"""In-process caches on the request path: merchants by API key hash, and the depot list.

Both are read on every request; both are refreshed at once on the replica that changes them and within their
time-to-live on the others (the settings say how long).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Merchant:
    id: str
    name: str


class AuthCache:
    """key hash → merchant, for `ttl_s` seconds. Only known keys are kept: an unknown key always asks the
    database, so a key just issued works at once."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._entries: dict[str, tuple[Merchant, float]] = {}
        self._loading: dict[str, asyncio.Future[Merchant | None]] = {}

    async def get_or_load(
        self, key_hash: str, load: Callable[[str], Awaitable[Merchant | None]]
    ) -> Merchant | None:
        """The cached merchant, else one load per key however many requests ask at once (when an entry
        expires under load, every request in flight would otherwise query the database together)."""
        merchant = self.get(key_hash)
        if merchant is not None:
            return merchant
        loading = self._loading.get(key_hash)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[Merchant | None] = asyncio.get_running_loop().create_future()
        self._loading[key_hash] = future
        try:
            merchant = await load(key_hash)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it; nobody else need
            raise
        finally:
            del self._loading[key_hash]
        if merchant is not None:
            self.put(key_hash, merchant)
        future.set_result(merchant)
        return merchant

    def get(self, key_hash: str) -> Merchant | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, key_hash: str, merchant: Merchant) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key_hash] = (merchant, time.monotonic() + self.ttl_s)

    def clear(self) -> None:
        self._entries.clear()


class Snapshot(Generic[T]):
    """A value loaded by `load`, reloaded when older than `ttl_s` or invalidated; one load at a time."""

    def __init__(self, load: Callable[[], Awaitable[T]], ttl_s: float) -> None:
        self._load, self.ttl_s = load, ttl_s
        self._value: T | None = None
        self._loaded_at = -float("inf")
        self._lock = asyncio.Lock()
        self._generation = 0

    async def get(self) -> T:
        if self._value is not None and time.monotonic() - self._loaded_at < self.ttl_s:
            return self._value
        async with self._lock:
            if self._value is None or time.monotonic() - self._loaded_at >= self.ttl_s:
                started, generation = time.monotonic(), self._generation
                self._value = await self._load()
                # invalidated while loading: what was read may predate the change, so it is not fresh
                self._loaded_at = started if generation == self._generation else -float("inf")
            return self._value

    def invalidate(self) -> None:
        self._generation += 1
        self._loaded_at = -float("inf")
