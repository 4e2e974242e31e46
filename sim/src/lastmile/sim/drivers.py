"""Drivers and their phones: drive the planned route in the city's traffic, report positions with GPS noise,
serve stops (some customers are not at home), and follow re-plans."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lastmile.common.clock import Clock
from lastmile.sim.client import Device, Platform
from lastmile.sim.geo import along, bearing_deg, noisy, path_m
from lastmile.sim.observe import Observations, VehicleSeen
from lastmile.sim.traffic import Traffic

log = logging.getLogger(__name__)

DETOUR = 1.06  # streets bend more than the L-shaped path `along` draws (1.27 of the straight line on average)


NOT_YET_TRIES, NOT_YET_WAIT_S = 30, 1.0  # real seconds: a stop the tracker does not know on this route yet


@dataclass(frozen=True)
class DriverConfig:
    ping_interval_s: float = 30.0  # while moving; phones report less often when they stand still
    idle_ping_s: float = 300.0
    route_sync_s: float = 300.0
    idle_check_s: float = 120.0  # how often a driver without stops looks at the phone
    overtime: timedelta = timedelta(
        hours=1
    )  # past the shift's end, the driver finishes the route and goes home
    gps_noise_m: float = 6.0
    # a customer's look at the live ETA: every 10 minutes is enough for the report, which takes the look closest
    # to 30 (and 10) minutes before the arrival within 5 minutes of it (at 300 times real time, every 5 minutes
    # was 120 tracking reads a real second, a tenth of the embedded platform's time)
    eta_poll_s: float = 600.0
    speed_kmh: float = 26.0
    parking_s: float = 0.0  # finding a place to stop: part of the stop's service time


class Driver:
    def __init__(
        self,
        *,
        platform: Platform,
        clock: Clock,
        device: Device,
        depot: tuple[float, float],
        depot_id: str,
        shift: tuple[datetime, datetime],
        traffic: Traffic,
        config: DriverConfig,
        observations: Observations,
        seen: VehicleSeen,
        rng: random.Random,
    ) -> None:
        self.platform, self.clock, self.device = platform, clock, device
        self.depot, self.depot_id, self.shift = depot, depot_id, shift
        self.traffic, self.config, self.obs, self.seen, self.rng = traffic, config, observations, seen, rng
        self.position = depot
        self._leg: tuple[tuple[float, float], tuple[float, float], datetime, float] | None = None
        # Stops this phone has served: a route's snapshot keeps done stops as they were (with no status of
        # their own), so the phone never serves one twice. (The planner does not re-attempt a failed delivery.)
        self.done: set[str] = set()
        self.upcoming: list[dict[str, Any]] = []
        self.t = clock.now()  # the driver's own timeline
        self.route: dict[str, Any] | None = None  # as the phone last synced it
        self.route_id: str | None = None  # the last route the phone had (closed at the day's end)
        self.finished = False
        self._sending: set[asyncio.Task[None]] = set()  # stop results on their way to the platform

    # ---- the day
    async def run(self, until: datetime) -> None:
        await self._sleep_until(self.shift[0] - timedelta(minutes=10))
        self.t = max(self.clock.now(), self.shift[0] - timedelta(minutes=10))
        tasks = [
            asyncio.create_task(self._pings(until)),
            asyncio.create_task(self._watch_etas(until)),
            asyncio.create_task(self._sync_route(until)),
        ]
        try:
            await self._work(until)
            await self._sent()  # every result reported before the day ends
        finally:
            tasks += self._sending
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self, until: datetime) -> None:
        """The driver keeps a timeline of their own (`self.t`) and follows the route the phone last synced: the
        platform's response times do not make the simulated driver late, as the phone syncs in the background
        and reports results from a queue, stamped with the time they happened."""
        while True:
            stops = self._remaining(self.route)
            self.upcoming = stops
            if stops and (self.t >= until or self.t > self.shift[1] + self.config.overtime):
                await self._finish()  # the driver goes home; what is left is failed, not attempted
                stops = []
            if self.t >= until:
                if not self.finished and self.route_id is not None:
                    # the day is over: the route is closed whatever the phone last saw of it (the platform fails
                    # what it still holds open, rather than leaving it out for delivery overnight)
                    await self._finish()
                return
            if not stops:
                if self.position != self.depot:
                    self._note("to depot", None)
                    await self._drive(self.depot)
                    continue
                # Off shift, the phone stays on until the day's end: a re-plan may still ask for a stop (served
                # within the overtime, else the route is finished and the stop failed as not attempted).
                self.t = max(self.t, self.clock.now()) + timedelta(seconds=self.config.idle_check_s)
                await self._sleep_until(self.t)
                continue
            start_at = (self.route or {}).get("start_at")
            if self.position == self.depot and start_at and datetime.fromisoformat(start_at) > self.t:
                # Leave when the plan says, looking at the phone meanwhile: a re-plan may bring the start
                # forward (a van that slept until its first route's 15:00 start missed a full day's re-plan).
                glance = max(self.t, self.clock.now()) + timedelta(seconds=self.config.idle_check_s)
                self.t = min(datetime.fromisoformat(start_at), glance)
                await self._sleep_until(self.t)
                continue  # the route may have changed meanwhile
            if self.position == self.depot:
                for entry in stops:
                    if seen := self.obs.by_order_id.get(entry["order_id"]):
                        seen.out = True
            stop = stops[0]
            self._note("leave", stop["order_id"], planned=stop.get("planned_arrival"))
            await self._drive((stop["location"]["lat"], stop["location"]["lon"]))
            self._note("arrive", stop["order_id"])
            window = stop.get("promised_window")
            if window:  # early drivers wait around the corner: the customer was promised a window
                self.t = max(self.t, datetime.fromisoformat(window["start"]))
                await self._sleep_until(self.t)
            await self._serve(stop)
            self._note("served", stop["order_id"])

    async def _finish(self) -> None:
        await self._sent()  # the results the phone still holds go first
        route_id = (self.route or {}).get("route_id") or self.route_id
        if route_id:
            status = await self.platform.finish_route(self.device, route_id)
            self._note("finished route", None, status=status, left=len(self._remaining(self.route)))
        self.route = None
        self.finished = True

    def _note(self, what: str, order_id: str | None, **detail: Any) -> None:
        """The driver's log (var/report/drivers.jsonl): to see why a stop was late."""
        self.seen.log.append({"t": self.t.isoformat(), "what": what, "order_id": order_id, **detail})

    async def _sync_route(self, until: datetime) -> None:
        """The phone fetches the vehicle's route every `route_sync_s` (a real app would be pushed a change)."""
        day = self.shift[0].date().isoformat()
        while self.clock.now() < until:
            try:
                if not self.finished:
                    route = await self.platform.driver_route(self.device, day)
                    if route is None and self.route is not None:
                        self._note("route gone", None)
                    elif route is not None and route.get("version") != (self.route or {}).get("version"):
                        self._note(
                            "route",
                            None,
                            version=route.get("version"),
                            start_at=route.get("start_at"),
                            stops=len(route.get("stops", [])),
                            synced_at=self.clock.now().isoformat(),
                        )
                    self.route = route
                    if route is not None:
                        self.route_id = route.get("route_id")
            except Exception as error:  # the phone keeps the route it has and tries again later
                self._note("sync failed", None, error=str(error)[:200])
            await self.clock.sleep(self.config.route_sync_s)

    async def _sent(self) -> None:
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _report(self, stop: dict[str, Any], body: dict[str, Any], arrived: datetime) -> None:
        """A stop result leaves the phone as it happens (stamped with that time), retried until the platform
        takes it; it does not wait for the answer to the one before (a platform slow to answer one result held
        back every later one: at 300 times real time, half of a day's results were still on the phones)."""
        try:
            status = await self.platform.complete(self.device, stop["order_id"], body)
            for _ in range(NOT_YET_TRIES):
                if status != 404:
                    break
                # The route the phone synced from the planner may be ahead of the tracker's (a stop moved to this
                # vehicle a moment ago): the phone keeps the result and tries again, as an app does.
                await asyncio.sleep(NOT_YET_WAIT_S)
                status = await self.platform.complete(self.device, stop["order_id"], body)
            seen = self.obs.by_order_id.get(stop["order_id"])
            if status < 300 and seen is not None:
                seen.arrived_at = seen.arrived_at or arrived
                seen.outcome = body["outcome"]
                seen.attempts += 1
                self.seen.stops += 1
            elif seen is not None:
                seen.refused = status
        except Exception:
            log.warning("a stop result could not be reported", exc_info=True)

    def _remaining(self, route: dict[str, Any] | None) -> list[dict[str, Any]]:
        if not route or route.get("status") == "cancelled":
            return []
        stops = sorted(route.get("stops", []), key=lambda s: s["sequence"])
        for stop in stops:
            seen = self.obs.by_order_id.get(stop["order_id"])
            if seen is not None and seen.vehicle_id is None:
                seen.vehicle_id = self.device.vehicle_id
                seen.planned_arrival = datetime.fromisoformat(stop["planned_arrival"])
                window = stop.get("promised_window")
                if window:
                    seen.promised = (
                        datetime.fromisoformat(window["start"]),
                        datetime.fromisoformat(window["end"]),
                    )
        return [
            s
            for s in stops
            if s["order_id"] not in self.done and s.get("status") not in ("delivered", "failed", "cancelled")
        ]

    async def _serve(self, stop: dict[str, Any]) -> None:
        seen = self.obs.by_order_id.get(stop["order_id"])
        arrived = self.t
        dwell = stop.get("service_s", 180) * self.rng.lognormvariate(-0.06, 0.35)  # mean: the planned time
        self.t += timedelta(seconds=dwell)
        await self._sleep_until(self.t)
        self.seen.busy_s += dwell
        at_home = seen.plan.at_home if seen else True
        body: dict[str, Any] = {
            "lat": stop["location"]["lat"],
            "lon": stop["location"]["lon"],
            "completed_at": self.t.isoformat(),
        }
        if at_home:
            name = seen.plan.body["recipient"]["name"] if seen else "Resident"
            body.update(outcome="delivered", recipient_name=name)
        else:
            body.update(outcome="failed", reason="not_at_home")
        self.done.add(stop["order_id"])
        task = asyncio.create_task(self._report(stop, body, arrived))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    # ---- moving
    async def _drive(self, target: tuple[float, float]) -> None:
        start = self.position
        metres = path_m(start, target) * DETOUR
        hour = self._local_hour()
        mps = (
            self.config.speed_kmh
            / 3.6
            * self.traffic.hour_factor(hour, self.seen.profile)
            * self.traffic.leg_factor(self.rng)
        )
        seconds = metres / max(mps, 0.5) + self.config.parking_s
        self._leg = (start, target, self.t, seconds)
        self.seen.moving = True
        self.t += timedelta(seconds=seconds)
        try:
            await self._sleep_until(self.t)
        finally:
            self._leg = None
            self.seen.moving = False
        self.position = target
        self.seen.metres += metres
        self.seen.driving_s += seconds
        self.seen.busy_s += seconds
        self.seen.track.append(target)

    def _where(self) -> tuple[tuple[float, float], float, float]:
        """Position now, speed (m/s) and heading."""
        if self._leg is None:
            return self.position, 0.0, 0.0
        a, b, t0, seconds = self._leg
        fraction = (self.clock.now() - t0).total_seconds() / seconds
        here = along(a, b, fraction)
        return here, path_m(a, b) / seconds, bearing_deg(here, b)

    async def _pings(self, until: datetime) -> None:
        """A fix every `ping_interval_s` while moving, every `idle_ping_s` standing still (as Traccar Client's
        distance filter does)."""
        last: datetime | None = None
        while self.clock.now() < until:
            now = self.clock.now()
            point, speed, heading = self._where()
            if speed or last is None or (now - last).total_seconds() >= self.config.idle_ping_s:
                last = now
                lat, lon = noisy(point, self.rng, self.config.gps_noise_m)
                fix = {
                    "lat": round(lat, 6),
                    "lon": round(lon, 6),
                    "recorded_at": now.isoformat(),
                    "speed_mps": round(speed, 1),
                    "heading": round(heading),
                    "accuracy_m": round(abs(self.rng.gauss(self.config.gps_noise_m, 2)) + 3),
                    "battery": 80,
                }
                try:
                    await self.platform.ping(self.device, fix)
                    self.obs.pings["sent"] += 1
                except Exception:  # counted: a day whose pings fail shows it in its KPIs
                    self.obs.pings["failed"] += 1
            await self.clock.sleep(self.config.ping_interval_s)

    async def _watch_etas(self, until: datetime) -> None:
        """Read the live ETA of the next few stops as their customers would, to measure it afterwards."""
        while self.clock.now() < until:
            soon = self.clock.now() + timedelta(minutes=40)
            for stop in self.upcoming[:3]:
                seen = self.obs.by_order_id.get(stop["order_id"])
                if seen is None or not seen.tracking_url or seen.outcome:
                    continue
                if datetime.fromisoformat(stop["planned_arrival"]) > soon:
                    continue
                with contextlib.suppress(Exception):
                    view = await self.platform.track(seen.tracking_url)
                    eta = (view or {}).get("eta")
                    if eta:
                        seen.etas.append((self.clock.now(), datetime.fromisoformat(eta)))
            await self.clock.sleep(self.config.eta_poll_s)

    async def _sleep_until(self, when: datetime) -> None:
        wait = (when - self.clock.now()).total_seconds()
        if wait > 0:
            await self.clock.sleep(wait)

    def _local_hour(self) -> float:
        local = self.t.astimezone(self.shift[0].tzinfo)
        return local.hour + local.minute / 60
