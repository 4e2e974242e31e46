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


@dataclass(frozen=True)
class DriverConfig:
    ping_interval_s: float = 30.0
    gps_noise_m: float = 6.0
    eta_poll_s: float = 300.0
    speed_kmh: float = 26.0


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
        self.done: set[str] = set()
        self.upcoming: list[dict[str, Any]] = []

    # ---- the day
    async def run(self, until: datetime) -> None:
        await self._sleep_until(self.shift[0] - timedelta(minutes=10))
        tasks = [asyncio.create_task(self._pings(until)), asyncio.create_task(self._watch_etas(until))]
        try:
            await self._work(until)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self, until: datetime) -> None:
        day = self.shift[0].date().isoformat()
        while self.clock.now() < until:
            route = await self.platform.driver_route(self.device, day)
            stops = self._remaining(route)
            self.upcoming = stops
            if not stops:
                if self.position != self.depot:
                    await self._drive(self.depot)
                    continue
                if self.clock.now() > self.shift[1]:
                    return
                await self.clock.sleep(300)
                continue
            if self.position == self.depot and route and route.get("start_at"):
                await self._sleep_until(datetime.fromisoformat(route["start_at"]))  # leave when the plan says
            stop = stops[0]
            await self._drive((stop["location"]["lat"], stop["location"]["lon"]))
            await self._wait_for_window(stop)
            await self._serve(stop)

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
                    seen.promised = (datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"]))
        return [s for s in stops if s["order_id"] not in self.done and s.get("status") not in ("delivered", "failed")]

    async def _wait_for_window(self, stop: dict[str, Any]) -> None:
        """Early drivers wait around the corner: the customer was promised a window, not a surprise."""
        window = stop.get("promised_window")
        if window:
            await self._sleep_until(datetime.fromisoformat(window["start"]))

    async def _serve(self, stop: dict[str, Any]) -> None:
        order_id = stop["order_id"]
        seen = self.obs.by_order_id.get(order_id)
        arrived = self.clock.now()
        dwell = stop.get("service_s", 180) * self.rng.lognormvariate(0, 0.35)
        await self.clock.sleep(dwell)
        self.seen.busy_s += (self.clock.now() - arrived).total_seconds()
        at_home = seen.plan.at_home if seen else True
        body: dict[str, Any] = {"lat": stop["location"]["lat"], "lon": stop["location"]["lon"]}
        if at_home:
            body.update(outcome="delivered", recipient_name=seen.plan.body["recipient"]["name"] if seen else "Resident")
        else:
            body.update(outcome="failed", reason="not_at_home")
        status = await self.platform.complete(self.device, order_id, body)
        self.done.add(order_id)
        if status < 300 and seen is not None:
            seen.arrived_at = seen.arrived_at or arrived
            seen.outcome = body["outcome"]
            seen.attempts += 1
            self.seen.stops += 1

    # ---- moving
    async def _drive(self, target: tuple[float, float]) -> None:
        start = self.position
        metres = path_m(start, target)
        hour = self._local_hour()
        mps = self.config.speed_kmh / 3.6 * self.traffic.hour_factor(hour) * self.traffic.leg_factor(self.rng)
        seconds = metres / max(mps, 0.5) + 30  # parking and walking to the door
        self._leg = (start, target, self.clock.now(), seconds)
        self.seen.moving = True
        try:
            await self.clock.sleep(seconds)
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
        while self.clock.now() < until:
            point, speed, heading = self._where()
            lat, lon = noisy(point, self.rng, self.config.gps_noise_m)
            fix = {
                "lat": round(lat, 6),
                "lon": round(lon, 6),
                "recorded_at": self.clock.now().isoformat(),
                "speed_mps": round(speed, 1),
                "heading": round(heading),
                "accuracy_m": round(abs(self.rng.gauss(self.config.gps_noise_m, 2)) + 3),
                "battery": 80,
            }
            with contextlib.suppress(Exception):
                await self.platform.ping(self.device, fix)
            await self.clock.sleep(self.config.ping_interval_s)

    async def _watch_etas(self, until: datetime) -> None:
        """Read the live ETA of the next few stops as their customers would, to measure it afterwards."""
        while self.clock.now() < until:
            for stop in self.upcoming[:4]:
                seen = self.obs.by_order_id.get(stop["order_id"])
                if seen is None or not seen.tracking_url or seen.outcome:
                    continue
                with contextlib.suppress(Exception):
                    view = await self.platform.track(seen.tracking_url)
                    eta = (view or {}).get("eta")
                    if eta:
                        seen.etas.append((self.clock.now(), datetime.fromisoformat(eta)))
            await self.clock.sleep(self.config.eta_poll_s)

    async def _sleep_until(self, when: datetime) -> None:
        await self.clock.sleep((when - self.clock.now()).total_seconds())

    def _local_hour(self) -> float:
        local = self.clock.now().astimezone(self.shift[0].tzinfo)
        return local.hour + local.minute / 60
