"""A simulated day, start to end: the tenant set up through ops APIs, merchants posting orders, drivers driving,
customers reading messages; then the platform's final word on every order."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from lastmile.common.clock import Clock
from lastmile.sim.city import BERLIN, City
from lastmile.sim.client import Device, Platform, PlatformError
from lastmile.sim.day import MERCHANTS, DayConfig, OrderPlan, plan_day
from lastmile.sim.drivers import Driver, DriverConfig
from lastmile.sim.observe import Observations, OrderSeen, VehicleSeen
from lastmile.sim.traffic import Traffic

log = logging.getLogger(__name__)

END_STATES = frozenset({"delivered", "failed", "cancelled", "unassigned"})


@dataclass(frozen=True)
class SimConfig:
    day: date
    seed: int = 7
    orders: int = 2000
    vehicles: int = 40
    speed: float = 180.0
    start: str = "05:45"
    end: str = "22:30"
    traffic: bool = True
    max_ping_rate: float = 80.0  # pings per real second across the fleet: compressed time cannot keep 30 s
    driver: DriverConfig = field(default_factory=DriverConfig)
    city: City = BERLIN

    def at(self, hhmm: str) -> datetime:
        hours, minutes = (int(x) for x in hhmm.split(":"))
        return datetime(
            self.day.year, self.day.month, self.day.day, hours, minutes, tzinfo=ZoneInfo(self.city.timezone)
        )


@dataclass
class Tenant:
    depot_ids: list[str]
    merchant_keys: list[str]
    devices: list[tuple[Device, int, datetime, datetime, str]]  # device, depot index, shift, profile


async def set_up(platform: Platform, config: SimConfig) -> Tenant:
    """Depots, vehicles with their phones, merchants: what ops and merchants would do before the day."""
    city = config.city
    depot_ids = []
    for site in city.depots:
        depot = await platform.create_depot(
            {
                "name": site.name,
                "lat": site.lat,
                "lon": site.lon,
                "timezone": city.timezone,
                "service_radius_km": site.service_radius_km,
            }
        )
        depot_ids.append(depot["id"])
    devices = []
    for depot_index, kind in city.fleet(config.vehicles):
        vehicle = await platform.create_vehicle(
            {
                "depot_id": depot_ids[depot_index],
                "profile": kind.profile,
                "capacity_parcels": kind.capacity_parcels,
                "capacity_kg": kind.capacity_kg,
                "skills": list(kind.skills),
                "shift_start": kind.shift_start,
                "shift_end": kind.shift_end,
            }
        )
        device = await platform.register_device(vehicle["id"])
        devices.append(
            (device, depot_index, config.at(kind.shift_start), config.at(kind.shift_end), kind.profile)
        )
    keys = [(await platform.create_merchant(m.name))["api_key"] for m in MERCHANTS]
    return Tenant(depot_ids, keys, devices)


class Day:
    def __init__(self, platform: Platform, clock: Clock, config: SimConfig, outbox: Path | None) -> None:
        self.platform, self.clock, self.config, self.outbox = platform, clock, config, outbox
        self.obs = Observations()
        self.plans = plan_day(config.city, DayConfig(day=config.day, orders=config.orders), config.seed)
        self.traffic = Traffic(enabled=config.traffic)

    async def run(
        self, tenant: Tenant, on_status: Callable[[dict[str, Any]], None] | None = None
    ) -> Observations:
        end = self.config.at(self.config.end)
        self.obs.keys = [*tenant.merchant_keys, *(device.key for device, *_ in tenant.devices)]
        for plan in self.plans:
            self.obs.attach(OrderSeen(plan=plan, merchant_key=tenant.merchant_keys[plan.merchant]))
        drivers = [self._driver(i, entry, tenant) for i, entry in enumerate(tenant.devices)]
        tasks = [asyncio.create_task(d.run(end), name=f"driver-{i}") for i, d in enumerate(drivers)]
        tasks.append(asyncio.create_task(self._merchants(), name="merchants"))
        tasks.append(asyncio.create_task(self._customers(end), name="customers"))
        try:
            while self.clock.now() < end and not all(t.done() for t in tasks[: len(drivers)]):
                if on_status:
                    tracking = next(
                        (o.tracking_url for o in self.obs.by_order_id.values() if o.tracking_url), None
                    )
                    on_status(
                        self.obs.counts() | {"clock": self.clock.now().timestamp(), "tracking_url": tracking}
                    )
                await asyncio.sleep(1.0)
            # the drivers close their routes at the day's end: give them the moment it takes
            await asyncio.wait(tasks[: len(drivers)], timeout=30)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(d.platform.close() for d in drivers), return_exceptions=True)
        await self._read_messages()
        await self._final_word()
        return self.obs

    def _driver(
        self, index: int, entry: tuple[Device, int, datetime, datetime, str], tenant: Tenant
    ) -> Driver:
        device, depot_index, start, end, profile = entry
        site = self.config.city.depots[depot_index]
        seen = VehicleSeen(device.vehicle_id, depot_index, profile)
        self.obs.vehicles[device.vehicle_id] = seen
        speed = self.config.city.speeds_kmh.get(profile, 25.0)
        every = max(
            self.config.driver.ping_interval_s,
            self.config.speed * self.config.vehicles / self.config.max_ping_rate,
        )
        return Driver(
            platform=self.platform.phone(),
            clock=self.clock,
            device=device,
            depot=(site.lat, site.lon),
            depot_id=tenant.depot_ids[depot_index],
            shift=(start, end),
            traffic=self.traffic,
            config=dataclasses.replace(self.config.driver, speed_kmh=speed, ping_interval_s=every),
            observations=self.obs,
            seen=seen,
            rng=random.Random(f"{self.config.seed}:driver:{index}"),
        )

    # ---- merchants
    async def _merchants(self) -> None:
        posting = asyncio.Semaphore(8)
        pending: list[asyncio.Task[None]] = []
        batches: dict[tuple[int, datetime], list[OrderPlan]] = {}
        for plan in self.plans:
            if plan.batch:
                batches.setdefault((plan.merchant, plan.post_at), []).append(plan)
        try:
            for plan in self.plans:
                await self._until(plan.post_at)
                if not plan.batch:
                    pending.append(asyncio.create_task(self._post(plan, posting)))
                elif (batch := batches.pop((plan.merchant, plan.post_at), None)) is not None:
                    pending.append(asyncio.create_task(self._post_batch(batch)))
            await asyncio.gather(*pending, return_exceptions=True)
        finally:  # the day is over (or stopped): nothing left running behind it
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _post(self, plan: OrderPlan, posting: asyncio.Semaphore) -> None:
        seen = self.obs.orders[plan.seq]
        async with posting:
            try:
                reply = await self.platform.post_order(seen.merchant_key, plan.body)
            except (
                PlatformError,
                httpx.HTTPError,
            ) as error:  # counted in the report by why, not lost silently
                seen.rejected = f"no answer: {type(error).__name__}"
                log.warning("an order was not taken: %s", error)
                return
        if reply.get("rejected") or reply.get("conflict"):
            seen.rejected = str(reply.get("code") or reply.get("status"))
            return
        await self._accepted(plan, reply["id"], reply.get("tracking_url"))

    async def _post_batch(self, plans: list[OrderPlan]) -> None:
        """A warehouse's morning upload, in requests of up to 1,000 orders."""
        key = self.obs.orders[plans[0].seq].merchant_key
        later = []
        for start in range(0, len(plans), 1000):
            chunk = plans[start : start + 1000]
            try:
                items = await self.platform.post_batch(key, [plan.body for plan in chunk])
            except PlatformError as error:  # counted in the report as rejected, not lost without a word
                log.warning("a morning batch of %d orders was not taken: %s", len(chunk), error)
                for plan in chunk:
                    self.obs.orders[plan.seq].rejected = "batch_not_taken"
                continue
            for plan, item in zip(chunk, items, strict=True):
                if item["outcome"] != "created":
                    self.obs.orders[plan.seq].rejected = str((item.get("problem") or {}).get("type"))
                    continue
                later.append(self._accepted(plan, item["id"], item.get("tracking_url")))
        await asyncio.gather(*later)

    async def _accepted(self, plan: OrderPlan, order_id: str, tracking_url: str | None) -> None:
        """The order is the platform's now; later the merchant may cancel it or change its address."""
        seen = self.obs.orders[plan.seq]
        seen.order_id, seen.tracking_url = order_id, tracking_url
        self.obs.attach(seen)
        if plan.cancel_at:
            await self._until(plan.cancel_at)
            seen.cancelled = await self.platform.cancel_order(seen.merchant_key, order_id)
        elif plan.change_at and plan.changed_destination:
            await self._until(plan.change_at)
            await self.platform.change_destination(seen.merchant_key, order_id, plan.changed_destination)

    # ---- customers
    async def _customers(self, end: datetime) -> None:
        while self.clock.now() < end:
            await self._read_messages()
            await asyncio.sleep(1.0)

    async def _read_messages(self) -> None:
        """New messages in the file outbox: some customers opt out, some open the tracking page."""
        if self.outbox is None or not self.outbox.exists():
            return
        known = self.obs.message_ids
        for path in sorted(self.outbox.glob("*.json")):
            if path.stem in known:
                continue
            with contextlib.suppress(ValueError, OSError):
                message = json.loads(path.read_text())
                message["written"] = path.stat().st_mtime
                message["seen_at"] = self.clock.now().isoformat()
                self.obs.messages.append(message)
                known.add(path.stem)
                await self._react(message)

    async def _react(self, message: dict[str, Any]) -> None:
        seen = self.obs.by_order_id.get(message.get("order_id", ""))
        if seen is None:
            return
        channel = message.get("channel", "")
        address = message.get("to", "")
        wants_out = seen.plan.opts_out == channel and (channel, address) not in self.obs.opted_out
        if wants_out and await self._opt_out(channel, message):
            self.obs.opted_out[(channel, address)] = time.time()
        if seen.plan.opens_tracking and message.get("kind") == "out_for_delivery" and seen.tracking_url:
            with contextlib.suppress(Exception):
                if (await self.platform.http.get(seen.tracking_url)).status_code == 200:
                    self.obs.tracking_views += 1

    async def _opt_out(self, channel: str, message: dict[str, Any]) -> bool:
        """The customer's own way out: the unsubscribe link of an email, STOP to an SMS."""
        with contextlib.suppress(Exception):
            if channel == "email":
                link = str((message.get("headers") or {}).get("List-Unsubscribe") or "")
                return bool(link) and await self.platform.unsubscribe(link)
            if channel == "sms" and self.platform.twilio_token:
                return await self.platform.text_stop(message["to"])
        return False

    # ---- the end of the day
    async def _final_word(self) -> None:
        """The merchant API's word on every order, once it has settled (the last events take a moment to reach
        order intake), and each order's history."""
        known = [s for s in self.obs.orders.values() if s.order_id]
        keys = sorted({s.merchant_key for s in known})
        statuses: dict[str, str] = {}
        unchanged = 0
        for _ in range(
            60
        ):  # until every order is in an end state, or nothing moved for 10 s (a re-plan's time)
            latest: dict[str, str] = {}
            for key in keys:
                with contextlib.suppress(Exception):
                    latest |= await self.platform.statuses(key)
            unchanged = unchanged + 1 if latest == statuses else 0
            statuses = latest
            if all(v in END_STATES for v in latest.values()) or unchanged >= 10:
                break
            await asyncio.sleep(1.0)
        semaphore = asyncio.Semaphore(16)

        async def fetch(seen: OrderSeen) -> None:
            async with semaphore:
                with contextlib.suppress(Exception):
                    history = await self.platform.history(seen.merchant_key, seen.order_id or "")
                    seen.history = [h["status"] for h in history]
                    reasons = [
                        h.get("detail", {}).get("reason") for h in history if h["status"] == "unassigned"
                    ]
                    seen.unassigned_reason = next((r for r in reversed(reasons) if r), None)
                    seen.first_plan_min = first_plan_minutes(history)
            seen.final_status = statuses.get(seen.order_id or "")

        await asyncio.gather(*(fetch(s) for s in known))

    async def _until(self, when: datetime) -> None:
        wait = (when - self.clock.now()).total_seconds()
        if wait > 0:
            await self.clock.sleep(wait)


def first_plan_minutes(history: list[dict[str, Any]]) -> float | None:
    """Minutes from an order's first status (its acceptance) to the first plan's word on it (scheduled or
    unassigned), by the times in its history: how long a merchant waits to know whether a van will come."""
    planned = next((h for h in history if h["status"] in ("scheduled", "unassigned")), None)
    if not history or planned is None:
        return None
    since = datetime.fromisoformat(planned["at"]) - datetime.fromisoformat(history[0]["at"])
    return round(since.total_seconds() / 60, 1)


def start_clock(config: SimConfig, delay_s: float = 0.0) -> Clock:
    """The simulated day's clock: `config.start` in `delay_s` real seconds (the time a platform takes to
    start), running `config.speed` times real time."""
    return Clock(speed=config.speed, epoch=config.at(config.start), anchor=time.time() + delay_s)
