"""Pings from every door, through one validation path: judged, stored and published in group commits.

Each door (the batch route, the OsmAnd listener) submits its pings and awaits the outcome; the ingestor takes
everything submitted meanwhile into one transaction (positions, vehicles' live state, `LocationReported` in the
outbox), so a thousand phones pinging at once cost a few transactions a second, not a thousand. A ping is
acknowledged only once that transaction committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter as Tally
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.clock import Clock
from lastmile.common.db import Database, is_transient
from lastmile.common.errors import LastmileError, ServiceUnavailable
from lastmile.common.metrics import LATENCY_BUCKETS
from lastmile.common.runtime import BackgroundTask
from lastmile.tracker import domain
from lastmile.tracker.deps import SOURCE, Changes, Device
from lastmile.tracker.domain import Fix, Limits, Outcome, PingIn, Track
from lastmile.tracker.settings import TrackerSettings
from lastmile.tracker.store import TrackerStore, TrackRow

log = logging.getLogger(__name__)

PINGS = Counter(
    "lastmile_tracker_pings_total", "Pings received, by outcome (see domain.ACCEPTED, REJECTED)", ["outcome"]
)
PINGS_ACCEPTED = Counter("lastmile_tracker_pings_accepted_total", "Pings stored and published", ["door"])
PINGS_FLAGGED = Counter(
    "lastmile_tracker_pings_flagged_total",
    "Accepted pings that are late or suspect (kept out of ETAs)",
    ["flag"],
)
PINGS_REJECTED = Counter("lastmile_tracker_pings_rejected_total", "Pings refused, by reason", ["reason"])
INGEST_LATENCY = Histogram(
    "lastmile_tracker_ingest_duration_seconds",
    "From a request's arrival to its pings being stored (committed)",
    ["door"],
    buckets=LATENCY_BUCKETS,
)
VEHICLES_ACTIVE = Gauge("lastmile_tracker_vehicles_active", "Vehicles that reported in the last few minutes")
ROUTES_ACTIVE = Gauge("lastmile_tracker_routes_active", "Routes being driven (started, not finished)")
POSITIONS_PURGED = Counter("lastmile_tracker_positions_purged_total", "Positions deleted after retention")

Item = PingIn | Outcome  # a parsed ping, or why it could not be parsed
Row = dict[str, Any]


def count_rejected(reason: str, n: int = 1) -> None:
    PINGS_REJECTED.labels(reason).inc(n)


@dataclass
class _Job:
    device: Device
    items: list[Item]
    door: str
    received_at: datetime
    started: float
    future: asyncio.Future[dict[str, int]]
    outcomes: list[Outcome | None] = field(default_factory=list)


class Ingestor:
    """Group commit of every door's pings (one flush at a time, each as large as what waited)."""

    def __init__(self, db: Database, clock: Clock, settings: TrackerSettings, changes: Changes) -> None:
        self.db, self.clock, self.changes = db, clock, changes
        self.limits = settings.limits()
        self.flush_pings = settings.ingest_flush_pings
        self.linger_s = settings.ingest_linger_ms / 1000
        self._queue: list[_Job] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tracker-ingestor")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for job in self._queue:
            if not job.future.done():
                job.future.set_exception(ServiceUnavailable("The tracker is stopping; retry"))
        self._queue.clear()

    async def submit(self, device: Device, items: list[Item], door: str) -> dict[str, int]:
        """Store the pings; returns how many had each outcome once they are committed."""
        if self._task is None:
            raise ServiceUnavailable("The tracker is not ready to take pings")
        loop = asyncio.get_running_loop()
        job = _Job(device, items, door, self.clock.now(), time.perf_counter(), loop.create_future())
        self._queue.append(job)
        self._wake.set()
        return await job.future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._linger()
                jobs: list[_Job] = []
                size = 0
                while self._queue and (not jobs or size + len(self._queue[0].items) <= self.flush_pings):
                    job = self._queue.pop(0)
                    jobs.append(job)
                    size += len(job.items)
                await self._flush_safely(jobs)

    async def _linger(self) -> None:
        """Give a flush that would be small a few milliseconds to grow: phones' single pings arrive one by one,
        and each transaction costs far more than each ping in it."""
        if self.linger_s <= 0 or sum(len(j.items) for j in self._queue) >= self.flush_pings:
            return
        wait = self.linger_s - (time.perf_counter() - self._queue[0].started)
        if wait > 0:
            await asyncio.sleep(wait)

    async def _flush_safely(self, jobs: list[_Job]) -> None:
        try:
            await self._flush(jobs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(jobs) > 1 and not is_transient(exc):
                for job in jobs:  # one request's fault must not fail the others
                    await self._flush_safely([job])
                return
            if not is_transient(exc):
                log.exception("storing pings failed")
            error = (
                exc
                if isinstance(exc, LastmileError)
                else ServiceUnavailable("Pings could not be stored; nothing was kept. Retry shortly.")
            )
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        for job in jobs:
            tally: Tally[str] = Tally(o for o in job.outcomes if o is not None)
            _count(job.door, tally)
            INGEST_LATENCY.labels(job.door).observe(time.perf_counter() - job.started)
            if not job.future.done():
                job.future.set_result(dict(tally))

    async def _flush(self, jobs: list[_Job]) -> None:
        async with self.db.transaction() as session:
            store = TrackerStore(session)
            vehicles = sorted({j.device.vehicle_id for j in jobs})
            states = await store.vehicle_tracks(vehicles)
            batch = _Batch({v: _track(states.get(v)) for v in vehicles}, self.limits)
            for job in jobs:
                batch.judge(job)
            inserted = await store.add_positions(batch.rows)
            published = []
            for job, index, ping in batch.accepted:
                if (job.device.id, ping.recorded_at) not in inserted:
                    job.outcomes[index] = "duplicate"  # stored by an earlier request (a retry)
                    continue
                published.append(_location(job, ping, job.outcomes[index] == "suspect"))
            at = outbox.event_time(session)
            for location in published:
                outbox.stage(session, ev.LOCATIONS, location.vehicle_id, location.serialised(SOURCE, time=at))
            rows, raw = batch.states(states, self.clock.now())
            await store.save_vehicle_states(rows, raw)
            moved = [r["vehicle_id"] for r in rows]
            session.info.setdefault("after_commit", []).append(lambda: self.changes.notify(moved))


class _Batch:
    """One flush's judgement: each ping's outcome, the rows to insert and how each vehicle's track moves."""

    def __init__(self, tracks: dict[str, Track], limits: Limits) -> None:
        self.tracks, self.limits = tracks, limits
        self.initial = dict(tracks)
        self.rows: list[dict[str, Any]] = []
        self.accepted: list[tuple[_Job, int, PingIn]] = []
        self.newest_ok: dict[str, tuple[PingIn, str]] = {}
        self._seen: set[tuple[str, datetime]] = set()

    def judge(self, job: _Job) -> None:
        job.outcomes = [item if isinstance(item, str) else None for item in job.items]
        pings = [(i, p) for i, p in enumerate(job.items) if isinstance(p, PingIn)]
        vehicle = job.device.vehicle_id
        window = domain.TimeWindow.around(job.received_at, self.limits)
        for index, ping in sorted(pings, key=lambda ip: ip[1].recorded_at):
            outcome = window.judge(ping)
            key = (job.device.id, ping.recorded_at)
            if outcome is None and key in self._seen:
                outcome = "duplicate"
            if outcome is None:
                self._seen.add(key)
                outcome, self.tracks[vehicle] = domain.classify(self.tracks[vehicle], ping, self.limits)
                self.rows.append(_row(job, ping, outcome == "suspect"))
                self.accepted.append((job, index, ping))
                if outcome == "ok":
                    self.newest_ok[vehicle] = (ping, job.device.id)
            job.outcomes[index] = outcome

    def states(self, existing: dict[str, TrackRow], now: datetime) -> tuple[list[Row], list[Row]]:
        """Each vehicle's new state: whole rows for those whose live position moved (inserted or replaced),
        the latest fix and suspect streak only for those whose did not."""
        moved: list[Row] = []
        raw: list[Row] = []
        for vehicle, track in self.tracks.items():
            if track is self.initial[vehicle] or track.latest is None:
                continue
            latest = {
                "vehicle_id": vehicle,
                "raw_lat": track.latest.lat,
                "raw_lon": track.latest.lon,
                "raw_at": track.latest.at,
                "raw_accuracy_m": track.latest.accuracy_m,
                "suspect_streak": track.streak,
            }
            if vehicle in self.newest_ok:
                ping, device_id = self.newest_ok[vehicle]
                latest.update(
                    device_id=device_id,
                    lat=ping.lat,
                    lon=ping.lon,
                    recorded_at=ping.recorded_at,
                    accuracy_m=ping.accuracy_m,
                    speed_mps=ping.speed_mps,
                    heading=ping.heading,
                    battery=ping.battery,
                    updated_at=now,
                )
                moved.append(latest)
            elif vehicle in existing:
                raw.append(latest)
            # else: a first ping that is suspect: nothing to show yet
        return moved, raw


def _track(row: TrackRow | None) -> Track:
    if row is None:
        return Track()
    good = Fix(row.lat, row.lon, row.recorded_at, row.accuracy_m)
    latest = Fix(row.raw_lat, row.raw_lon, row.raw_at, row.raw_accuracy_m)
    same_fix = latest.at == good.at and latest.lat == good.lat and latest.lon == good.lon
    return Track(latest=good if same_fix else latest, good=good, streak=row.suspect_streak)


def _row(job: _Job, ping: PingIn, suspect: bool) -> dict[str, Any]:
    return {
        "device_id": job.device.id,
        "recorded_at": ping.recorded_at,
        "vehicle_id": job.device.vehicle_id,
        "lat": ping.lat,
        "lon": ping.lon,
        "received_at": job.received_at,
        "speed_mps": ping.speed_mps,
        "heading": ping.heading,
        "accuracy_m": ping.accuracy_m,
        "altitude_m": ping.altitude_m,
        "battery": ping.battery,
        "suspect": suspect,
    }


def _location(job: _Job, ping: PingIn, suspect: bool) -> ev.LocationReported:
    return ev.LocationReported(
        vehicle_id=job.device.vehicle_id,
        device_id=job.device.id,
        lat=ping.lat,
        lon=ping.lon,
        recorded_at=ping.recorded_at,
        received_at=job.received_at,
        speed_mps=ping.speed_mps,
        heading=ping.heading,
        accuracy_m=ping.accuracy_m,
        battery=ping.battery,
        suspect=suspect,
        altitude_m=ping.altitude_m,
    )


def _count(door: str, tally: Tally[str]) -> None:
    for outcome, n in tally.items():
        PINGS.labels(outcome).inc(n)
    accepted = sum(tally[o] for o in domain.ACCEPTED)
    if accepted:
        PINGS_ACCEPTED.labels(door).inc(accepted)
    for flag in ("late", "suspect"):
        if tally[flag]:
            PINGS_FLAGGED.labels(flag).inc(tally[flag])
    for reason in domain.REJECTED:
        if tally[reason]:
            PINGS_REJECTED.labels(reason).inc(tally[reason])


class Housekeeper(BackgroundTask):
    """Deletes positions older than the retention period, and keeps the active vehicles and routes gauges
    current."""

    name = "tracker-housekeeper"

    def __init__(self, db: Database, clock: Clock, settings: TrackerSettings) -> None:
        self.db, self.clock, self.settings = db, clock, settings

    async def run(self) -> None:
        last_purge = 0.0
        while True:
            try:
                await self.count_active()
                if time.monotonic() - last_purge >= self.settings.purge_interval_s:
                    await self.purge()
                    last_purge = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("housekeeping failed: %s", exc)
            await asyncio.sleep(min(30.0, self.settings.purge_interval_s))

    async def purge(self, batch: int = 10_000) -> int:
        before = self.clock.now() - timedelta(seconds=self.settings.position_retention_s)
        total = 0
        while True:
            async with self.db.transaction() as session:
                deleted = await TrackerStore(session).purge_positions(before, batch)
            total += deleted
            POSITIONS_PURGED.inc(deleted)
            if deleted < batch:
                return total

    async def count_active(self) -> tuple[int, int]:
        since = self.clock.now() - timedelta(seconds=self.settings.active_vehicle_s)
        async with self.db.read() as session:
            store = TrackerStore(session)
            vehicles, routes = await store.active_vehicles(since), await store.routes_started()
        VEHICLES_ACTIVE.set(vehicles)
        ROUTES_ACTIVE.set(routes)
        return vehicles, routes
