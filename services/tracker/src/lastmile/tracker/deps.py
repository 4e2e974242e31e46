"""What every use case of the tracker is given (Deps), and the small in-process helpers it holds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lastmile.common.clock import Clock
from lastmile.common.db import Database
from lastmile.common.ratelimit import RateLimiter
from lastmile.tracker.domain import Limits
from lastmile.tracker.domain_eta import EtaConfig, Plan, Progress
from lastmile.tracker.settings import TrackerSettings

if TYPE_CHECKING:
    from lastmile.tracker.handlers_pings import Ingestor

SOURCE = "tracker"


@dataclass(frozen=True)
class Device:
    id: str
    vehicle_id: str


class DeviceCache:
    """Device keys seen recently, so that a phone reporting every few seconds costs no query per request.

    An entry older than `ttl_s` still answers, but is due for a check: `DeviceKeys` checks every due key in one
    query a second and forgets the revoked. So a key revoked on another replica stops working within about
    `ttl_s` + 1 s; one revoked here stops at once; an entry not checked for `max_age_s` is not trusted at all.
    """

    def __init__(self, ttl_s: float, max_age_s: float = 300.0) -> None:
        self.ttl_s, self.max_age_s = ttl_s, max_age_s
        self._entries: dict[str, tuple[Device, float]] = {}
        self.due: set[str] = set()

    def get(self, key_hash: str) -> Device | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        age = time.monotonic() - entry[1]
        if age > self.max_age_s:
            return None
        if age > self.ttl_s:
            self.due.add(key_hash)
        return entry[0]

    def put(self, key_hash: str, device: Device) -> None:
        if self.ttl_s > 0:
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[key_hash] = (device, time.monotonic())

    def confirm(self, active: set[str], checked: set[str]) -> None:
        """The outcome of a check of `checked`: those in `active` are good for another `ttl_s`, others go."""
        now = time.monotonic()
        for key_hash in checked:
            entry = self._entries.get(key_hash)
            if entry is not None:
                if key_hash in active:
                    self._entries[key_hash] = (entry[0], now)
                else:
                    del self._entries[key_hash]

    def forget(self, device_id: str) -> None:
        for key, (device, _) in list(self._entries.items()):
            if device.id == device_id:
                del self._entries[key]


class Changes:
    """In-process wake-ups for live streams (tracking pages, the ops feed): which vehicles changed. Streams
    also poll the database on a timer, which shows them what other replicas changed."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Event]] = defaultdict(set)

    def notify(self, keys: Iterable[str]) -> None:
        for key in (*keys, "*"):
            for event in self._watchers.get(key, ()):
                event.set()

    @contextlib.contextmanager
    def watch(self, keys: Iterable[str]) -> Iterator[asyncio.Event]:
        """An event set whenever one of `keys` changes ('*': any)."""
        event = asyncio.Event()
        watched = list(keys)
        for key in watched:
            self._watchers[key].add(event)
        try:
            yield event
        finally:
            for key in watched:
                self._watchers[key].discard(event)
                if not self._watchers[key]:
                    del self._watchers[key]


class PlanCache:
    """Parsed route snapshots by (route, version): a version never changes, so entries never go stale."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._plans: dict[tuple[str, int], Plan] = {}

    def get(self, route_id: str, version: int) -> Plan | None:
        return self._plans.get((route_id, version))

    def put(self, route_id: str, version: int, plan: Plan) -> Plan:
        if len(self._plans) >= self.size:
            self._plans.clear()
        self._plans[(route_id, version)] = plan
        return plan


class ProgressCache:
    """The ETA engine's progress of the routes this process drives, so that a batch of positions does not parse
    it back from the database. An entry is taken out while a transaction works on it and put back, with the
    route's new `progress_seq`, once that transaction committed: a rolled-back change never stays here, and an
    entry whose seq is not the row's (another writer, another replica) is not used."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._entries: dict[str, tuple[int, Progress]] = {}

    def take(self, route_id: str, seq: int) -> Progress | None:
        entry = self._entries.pop(route_id, None)
        return entry[1] if entry is not None and entry[0] == seq else None

    def put(self, route_id: str, seq: int, progress: Progress) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[route_id] = (seq, progress)


@dataclass(frozen=True)
class Deps:
    db: Database
    clock: Clock
    settings: TrackerSettings
    limits: Limits
    eta: EtaConfig
    devices: DeviceCache
    changes: Changes
    plans: PlanCache
    progress: ProgressCache
    rates: RateLimiter
    ingestor: Ingestor
