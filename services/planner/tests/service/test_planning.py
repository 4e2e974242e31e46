"""Orders in, routes and scheduled deliveries out; plans on demand; re-plans through the day."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lastmile.common import events as ev
from lastmile.common.auth import hash_secret
from lastmile.common.clock import Clock
from lastmile.common.testing import eventually

NOW = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)


async def _out_for_delivery(p: Any, make_order: Any, stops: int) -> tuple[str, list[Any], dict[str, Any]]:
    """`stops` orders planned on the first vehicle's route, each then announced out for delivery on it."""
    vehicle = p.vehicles[0]["id"]
    orders = [make_order(p.depot["id"], lat=52.52 + i * 0.01) for i in range(stops)]
    for o in orders:
        await p.publish(o)
    await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled", stops)
    await p.idle()
    route = (await p.routes())[vehicle]
    for s in route["stops"]:
        await p.publish(
            ev.OutForDelivery(order_id=s["order_id"], vehicle_id=vehicle, route_id=route["route_id"], at=NOW)
        )
    return vehicle, orders, route


async def test_an_order_is_scheduled_on_a_route_with_a_promise(planner_factory: Any, make_order: Any) -> None:
    async with planner_factory() as p:
        created = make_order(p.depot["id"])
        await p.publish(created)
        scheduled = await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled")
        assert scheduled[0].subject == created.order_id
        assert scheduled[0].data["vehicle_id"] == p.vehicles[0]["id"]
        window = scheduled[0].data["promised_window"]
        assert window["start"] <= scheduled[0].data["planned_arrival"] <= window["end"]
        routes = p.events("routes.v1", "lastmile.route.planned")
        assert [s["order_id"] for s in routes[0].data["stops"]] == [created.order_id]
        listed = await p.routes()
        assert listed[p.vehicles[0]["id"]]["stops"][0]["promised_window"] == window


async def test_a_second_order_revises_the_route_and_keeps_the_first_promise(
    planner_factory: Any, make_order: Any
) -> None:
    async with planner_factory() as p:
        first = make_order(p.depot["id"], lat=52.53)
        await p.publish(first)
        promised = (await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled"))[0].data[
            "promised_window"
        ]
        await p.publish(make_order(p.depot["id"], lat=52.54))
        revised = await p.wait_for("routes.v1", "lastmile.route.revised")
        assert revised[-1].data["version"] == 2
        assert revised[-1].data["reason"] == "order_created"
        stops = {s["order_id"]: s for s in revised[-1].data["stops"]}
        assert len(stops) == 2
        assert stops[first.order_id]["promised_window"] == promised
        assert stops[first.order_id]["lateness_s"] == 0


async def test_an_order_no_vehicle_can_carry_is_unassigned_with_a_reason(
    planner_factory: Any, make_order: Any
) -> None:
    async with planner_factory() as p:
        too_heavy = make_order(p.depot["id"], parcels=[ev.Parcel(count=1, weight_kg=5000)])
        await p.publish(too_heavy)
        unassigned = await p.wait_for("deliveries.v1", "lastmile.delivery.unassigned")
        assert unassigned[0].data["reason"] == "too_large"
        plans = await p.get("/v1/plans", depot_id=p.depot["id"])
        assert plans[0]["kpis"]["unassigned_by_reason"] == {"too_large": 1}


async def test_a_plan_on_demand_is_polled_to_done_with_kpis_and_moves_nothing_when_nothing_changed(
    planner_factory: Any, make_order: Any
) -> None:
    async with planner_factory(vehicles=2) as p:
        for i in range(6):
            await p.publish(make_order(p.depot["id"], lat=52.50 + i * 0.01))
        await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled", 6)
        await p.idle()
        before = len(p.bus.records("routes.v1"))
        reply = await p.post("/v1/plans", {"depot_id": p.depot["id"], "date": "2026-12-01", "kind": "replan"})
        assert reply.status_code == 202
        assert reply.headers["location"] == f"/v1/plans/{reply.json()['id']}"
        assert reply.json()["status"] == "queued"
        done = await eventually(
            lambda: _done(p, reply.json()["id"]),
        )
        assert done["stops_moved"] == 0
        kpis = done["kpis"]
        assert kpis["stops"] == 6
        assert kpis["unassigned"] == 0
        assert kpis["distance_km"] > 0
        assert kpis["cost"] > 0
        assert kpis["stops_per_hour"] > 0
        assert len(p.bus.records("routes.v1")) == before  # no new route version


async def _done(p: Any, plan_id: str) -> dict[str, Any] | None:
    plan: dict[str, Any] = await p.get(f"/v1/plans/{plan_id}")
    return plan if plan["status"] == "done" else None


async def test_plans_of_an_unknown_depot_are_404(planner_factory: Any) -> None:
    async with planner_factory() as p:
        reply = await p.post("/v1/plans", {"depot_id": "dep_nope", "date": "2026-12-01"})
        assert reply.status_code == 404
        assert (
            await p.client.get("/v1/plans/pln_nope", headers={"Authorization": "Bearer x" * 1})
        ).status_code == 401


async def _two_scheduled(p: Any, make_order: Any) -> tuple[Any, Any]:
    first, second = make_order(p.depot["id"], lat=52.53), make_order(p.depot["id"], lat=52.54)
    await p.publish(first)
    await p.publish(second)
    await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled", 2)
    await p.idle()
    return first, second


async def _cancel(p: Any, order: Any) -> None:
    await p.publish(
        ev.OrderCancelled(
            order_id=order.order_id, version=2, merchant_id="mer_1", depot_id=p.depot["id"], cancelled_at=NOW
        )
    )


async def test_a_cancelled_order_leaves_a_route_not_yet_driven(planner_factory: Any, make_order: Any) -> None:
    async with planner_factory() as p:
        keep, drop = await _two_scheduled(p, make_order)
        await _cancel(p, drop)
        revised = await p.wait_for("routes.v1", "lastmile.route.revised")
        assert [s["order_id"] for s in revised[-1].data["stops"]] == [keep.order_id]
        assert "order_cancelled" in revised[-1].data["reason"]


async def test_a_route_with_a_stop_done_is_revised_not_cancelled_when_a_plan_leaves_it_nothing_open(
    planner_factory: Any, make_order: Any
) -> None:
    """The driver's result came before (or without) the tracker's word that the route started."""
    async with planner_factory() as p:
        done, drop = await _two_scheduled(p, make_order)
        vehicle = p.vehicles[0]["id"]
        route = (await p.routes())[vehicle]
        assert {s["order_id"] for s in route["stops"]} == {done.order_id, drop.order_id}
        await p.publish(ev.Delivered(order_id=done.order_id, vehicle_id=vehicle, at=NOW))
        await p.idle()
        await _cancel(p, drop)
        revised = await p.wait_for("routes.v1", "lastmile.route.revised")
        assert [s["order_id"] for s in revised[-1].data["stops"]] == [done.order_id]
        assert not p.events("routes.v1", "lastmile.route.cancelled")
        assert (await p.routes())[vehicle]["status"] == "started"


async def test_an_address_change_gets_a_new_promise(planner_factory: Any, make_order: Any) -> None:
    async with planner_factory() as p:
        created = make_order(p.depot["id"], lat=52.53)
        await p.publish(created)
        await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled")
        await p.idle()
        moved = ev.OrderUpdated(
            **{**created.model_dump(), "version": 2, "destination": ev.Destination(lat=52.45, lon=13.30)},
            changed=["destination"],
        )
        await p.publish(moved)
        revised = await p.wait_for("routes.v1", "lastmile.route.revised")
        assert revised[-1].data["reason"] == "address_changed"
        assert revised[-1].data["stops"][0]["location"] == {"lat": 52.45, "lon": 13.30}


async def test_a_re_plan_keeps_done_stops_and_promises_and_starts_from_the_vehicle(
    planner_factory: Any, make_order: Any
) -> None:
    async with planner_factory() as p:
        vehicle, orders, route = await _out_for_delivery(p, make_order, 3)
        promised = {s["order_id"]: s["promised_window"] for s in route["stops"]}
        first = route["stops"][0]
        await p.publish(ev.Delivered(order_id=first["order_id"], vehicle_id=vehicle, at=NOW))
        here = first["location"]
        await p.publish(
            ev.LocationReported(
                vehicle_id=vehicle,
                device_id="d1",
                lat=here["lat"],
                lon=here["lon"],
                recorded_at=NOW,
                received_at=NOW,
            )
        )
        await p.idle()
        pickup = make_order(p.depot["id"], lat=52.535, kind="return")
        await p.publish(pickup)
        revised = await p.wait_for("routes.v1", "lastmile.route.revised")
        stops = revised[-1].data["stops"]
        assert stops[0] == first  # done stays done, exactly as it was
        assert {s["order_id"] for s in stops} == {o.order_id for o in orders} | {pickup.order_id}
        assert revised[-1].data["start"] == here  # from where the vehicle is
        for s in stops[1:]:
            if s["order_id"] in promised:
                assert s["promised_window"] == promised[s["order_id"]]
                assert s["lateness_s"] == 0
        await p.idle()
        latest = (await p.get("/v1/plans", depot_id=p.depot["id"]))[0]
        assert latest["fleet"] == [  # what the re-plan knew of the vehicle, kept on its record for ops
            {
                "vehicle_id": vehicle,
                "started": True,
                "at_depot": False,
                "located": True,
                "on_board": 2,
                "open_stops": 2,
                "done": 1,
            }
        ]


async def test_a_stop_done_out_of_order_comes_first_in_the_revision_and_every_open_stop_after_it(
    planner_factory: Any, make_order: Any
) -> None:
    """The tracker takes an open stop numbered below one done for skipped (it goes to the route's end)."""
    async with planner_factory() as p:
        vehicle, _, route = await _out_for_delivery(p, make_order, 3)
        last = route["stops"][-1]  # done first: the driver's app still had another order
        await p.publish(ev.Delivered(order_id=last["order_id"], vehicle_id=vehicle, at=NOW))
        await p.idle()
        await p.publish(make_order(p.depot["id"], lat=52.535, kind="return"))
        revised = (await p.wait_for("routes.v1", "lastmile.route.revised"))[-1].data["stops"]
        assert revised[0]["order_id"] == last["order_id"]
        assert [s["sequence"] for s in revised] == list(range(1, len(revised) + 1))


async def test_a_failed_stop_re_plans_the_day(planner_factory: Any, make_order: Any) -> None:
    async with planner_factory() as p:
        created = make_order(p.depot["id"])
        await p.publish(created)
        await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled")
        await p.idle()
        vehicle = p.vehicles[0]["id"]
        await p.publish(
            ev.DeliveryFailed(order_id=created.order_id, vehicle_id=vehicle, at=NOW, reason="not_at_home")
        )
        plans = await eventually(lambda: _plans_with(p, "stop_failed"))
        assert plans[0]["status"] == "done"


@dataclass(frozen=True)
class _Movable(Clock):
    shift: list[float] = field(default_factory=lambda: [0.0], compare=False)

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.shift[0])


async def test_a_parcel_on_board_stays_on_the_route_when_a_re_plan_cannot_fit_it(
    planner_factory: Any, make_order: Any
) -> None:
    """Late in the day (the shift over, the promises passed) a failed stop re-plans: the solver can place nothing,
    yet the parcel still on board stays on the vehicle's route, so its driver still delivers it."""
    clock = _Movable(epoch=NOW - timedelta(minutes=30))
    async with planner_factory(clock=clock) as p:
        vehicle, _, route = await _out_for_delivery(p, make_order, 2)
        await p.idle()
        clock.shift[0] = 15 * 3600.0  # 23:00 in Berlin: past every shift and promise
        first, second = (s["order_id"] for s in route["stops"])
        await p.publish(ev.DeliveryFailed(order_id=first, vehicle_id=vehicle, at=NOW, reason="not_at_home"))
        await eventually(lambda: _plans_with(p, "stop_failed"))
        await p.idle()
        after = (await p.routes())[vehicle]
        assert [s["order_id"] for s in after["stops"]] == [first, second]


async def _plans_with(p: Any, trigger: str) -> list[dict[str, Any]]:
    return [x for x in await p.get("/v1/plans", depot_id=p.depot["id"]) if trigger in x["triggers"]]


async def test_a_depot_with_waves_plans_at_the_cutoff_not_before(
    planner_factory: Any, make_order: Any
) -> None:
    from lastmile.planner.replanner import WaveScheduler

    async with planner_factory(waves=[{"cutoff": "09:00", "day_offset": 0}]) as p:
        await p.publish(make_order(p.depot["id"]))
        await p.idle()
        await eventually(lambda: p.bus.pending("planner", "orders.v1") == 0)
        await p.idle()
        assert not p.events("routes.v1", "lastmile.route.planned")  # 08:00: the 09:00 wave has not run
        waves = WaveScheduler(p.app.state.deps)
        assert await waves.tick() == []
        p.app.state.deps.clock = type(p.app.state.deps.clock)(epoch=NOW + timedelta(hours=1, minutes=31))
        queued = await waves.tick()
        assert len(queued) == 1
        await p.wait_for("routes.v1", "lastmile.route.planned")
        plan = await p.get(f"/v1/plans/{queued[0]}")
        assert (plan["kind"], plan["wave"]) == ("wave", "09:00")
        assert await waves.tick() == []  # once per wave and day


async def test_a_driver_sees_their_route_with_their_device_key_and_no_other(
    planner_factory: Any, make_order: Any
) -> None:
    async with planner_factory(vehicles=2) as p:
        mine, other = p.vehicles[0]["id"], p.vehicles[1]["id"]
        key = "lm_dev_" + "k" * 40
        await p.publish(
            ev.DeviceUpserted(
                device_id="dev_1", vehicle_id=mine, key_hash=hash_secret(key), active=True, at=NOW
            )
        )
        await p.publish(make_order(p.depot["id"]))
        await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled")
        await p.idle()
        routed = next(iter(await p.routes()))
        if routed != mine:  # put the device on the vehicle that got the route
            mine, other = routed, mine
            await p.publish(
                ev.DeviceUpserted(
                    device_id="dev_1",
                    vehicle_id=mine,
                    key_hash=hash_secret(key),
                    active=True,
                    at=NOW + timedelta(seconds=1),
                )
            )
        auth = {"Authorization": f"Bearer {key}"}
        reply = await eventually(lambda: _route_of(p, mine, auth))
        assert reply["vehicle_id"] == mine
        assert (await p.client.get(f"/v1/drivers/{other}/route", headers=auth)).status_code == 404
        assert "status" not in reply["stops"][0]
        stop = reply["stops"][0]["order_id"]  # delivered by another van (a re-plan crossed that result)
        await p.publish(ev.Delivered(order_id=stop, vehicle_id=other, at=NOW))
        after = await eventually(lambda: _stop_status(p, mine, auth, stop, "delivered"))
        assert after["version"] == reply["version"]  # before any new version of the route
        bad = {"Authorization": "Bearer lm_dev_wrong"}
        assert (await p.client.get(f"/v1/drivers/{mine}/route", headers=bad)).status_code == 401
        await p.publish(
            ev.DeviceUpserted(
                device_id="dev_1",
                vehicle_id=mine,
                key_hash=hash_secret(key),
                active=False,
                at=NOW + timedelta(seconds=2),
            )
        )
        await eventually(lambda: _status(p, mine, auth, 401))


async def _route_of(p: Any, vehicle: str, auth: dict[str, str]) -> dict[str, Any] | None:
    reply = await p.client.get(f"/v1/drivers/{vehicle}/route", headers=auth)
    return reply.json() if reply.status_code == 200 else None


async def _stop_status(
    p: Any, vehicle: str, auth: dict[str, str], order_id: str, status: str
) -> dict[str, Any] | None:
    route = await _route_of(p, vehicle, auth)
    stops = {s["order_id"]: s for s in (route or {}).get("stops", [])}
    return route if order_id in stops and stops[order_id].get("status") == status else None


async def _status(p: Any, vehicle: str, auth: dict[str, str], status: int) -> bool:
    return (await p.client.get(f"/v1/drivers/{vehicle}/route", headers=auth)).status_code == status


async def test_fleet_and_plans_need_the_ops_token(planner_factory: Any) -> None:
    async with planner_factory() as p:
        for path in ("/v1/routes", "/v1/plans", "/v1/vehicles", "/v1/drivers", "/v1/depots"):
            assert (await p.client.get(path)).status_code == 401
        assert (await p.client.post("/v1/depots", json={"name": "x", "lat": 1, "lon": 1})).status_code == 401


async def test_vehicles_carry_costs_limits_breaks_and_drivers(planner_factory: Any) -> None:
    async with planner_factory() as p:
        body = {
            "depot_id": p.depot["id"],
            "profile": "cargo_bike",
            "capacity_parcels": 30,
            "capacity_kg": 120,
            "capacity_volume_l": 400,
            "skills": ["fragile"],
            "breaks": [{"start": "12:00", "end": "13:00", "duration_s": 1800}],
            "fixed_cost": 20,
            "cost_per_hour": 18,
            "cost_per_km": 0.05,
            "max_stops": 40,
            "max_driving_s": 21600,
            "max_distance_km": 60,
        }
        created = (await p.post("/v1/vehicles", body)).json()
        listed = {v["id"]: v for v in await p.get("/v1/vehicles", depot_id=p.depot["id"])}
        assert listed[created["id"]]["breaks"] == [{"start": "12:00", "end": "13:00", "duration_s": 1800}]
        assert listed[created["id"]]["max_stops"] == 40
        driver = await p.post("/v1/drivers", {"name": "Kim", "vehicle_id": created["id"]})
        assert driver.status_code == 201
        assert (await p.post("/v1/drivers", {"name": "Kim", "vehicle_id": "veh_nope"})).status_code == 404
        assert (await p.post("/v1/vehicles", {**body, "profile": "rocket"})).status_code == 422


async def test_plans_in_a_separate_solver_process(planner_factory: Any, make_order: Any) -> None:
    async with planner_factory(solver_processes=1) as p:
        await p.publish(make_order(p.depot["id"]))
        await eventually(lambda: p.events("deliveries.v1", "lastmile.delivery.scheduled"), timeout=60)


async def test_a_delay_that_breaks_a_promise_is_reported_late_before_the_window(
    planner_factory: Any, make_order: Any
) -> None:
    async with planner_factory() as p:
        vehicle = p.vehicles[0]["id"]
        created = make_order(p.depot["id"], lat=52.53)
        await p.publish(created)
        await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled")
        await p.idle()
        route = (await p.routes())[vehicle]
        stop = route["stops"][0]
        end = datetime.fromisoformat(stop["promised_window"]["end"])
        await p.publish(
            ev.OutForDelivery(
                order_id=created.order_id, vehicle_id=vehicle, route_id=route["route_id"], at=NOW
            )
        )
        # five minutes before the promise ends, the van is stuck 15 km away
        later = end - timedelta(minutes=5)
        p.app.state.deps.clock = type(p.app.state.deps.clock)(epoch=later)
        await p.publish(
            ev.LocationReported(
                vehicle_id=vehicle, device_id="d1", lat=52.66, lon=13.40, recorded_at=later, received_at=later
            )
        )
        await p.idle()
        await p.publish(
            ev.DeliveryDelayed(
                order_id=created.order_id,
                vehicle_id=vehicle,
                route_id=route["route_id"],
                delay_s=1800,
                eta=end,
                at=later,
            )
        )
        scheduled = await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled", 2)
        assert scheduled[-1].data["promised_window"] == stop["promised_window"]  # the promise stands
        assert scheduled[-1].data["lateness_s"] > 0  # and the customer is told it will be missed
        revised = p.events("routes.v1", "lastmile.route.revised")[-1].data
        assert revised["reason"] == "delay"
        assert revised["stops"][0]["lateness_s"] == scheduled[-1].data["lateness_s"]


async def test_new_orders_are_inserted_without_a_full_re_plan_even_beside_an_order_left_out(
    planner_factory: Any, make_order: Any
) -> None:
    async with planner_factory() as p:
        await p.publish(make_order(p.depot["id"], parcels=[ev.Parcel(count=1, weight_kg=5000)]))
        await p.publish(make_order(p.depot["id"], lat=52.53))
        await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled")
        await p.idle()
        await p.publish(make_order(p.depot["id"], lat=52.54))
        await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled", 2)
        await p.idle()
        latest = (await p.get("/v1/plans", depot_id=p.depot["id"]))[0]
        assert latest["engine"] == "insertion"
        assert latest["stops_moved"] == 0
        assert latest["kpis"]["unassigned_by_reason"] == {"too_large": 1}
        assert len(p.events("deliveries.v1", "lastmile.delivery.unassigned")) == 1  # said once, not again


async def test_parcels_on_board_stay_on_the_route_when_the_vehicle_drops_out_of_a_re_plan(
    planner_factory: Any, make_order: Any
) -> None:
    """Past the end of its shift a vehicle is no longer in the solve; the parcels it still carries must stay
    on its route (the driver's app shows them), not vanish while they are out for delivery."""
    async with planner_factory() as p:
        vehicle, _, route = await _out_for_delivery(p, make_order, 2)
        first, second = route["stops"][0], route["stops"][1]
        await p.publish(ev.Delivered(order_id=first["order_id"], vehicle_id=vehicle, at=NOW))
        await p.idle()
        p.app.state.deps.clock = type(p.app.state.deps.clock)(epoch=NOW + timedelta(hours=14))  # shift over
        late = make_order(p.depot["id"], lat=52.55)
        await p.publish(late)
        await eventually(lambda: _unassigned(p, late.order_id))
        await p.idle()
        kept = (await p.routes())[vehicle]
        assert [s["order_id"] for s in kept["stops"]] == [first["order_id"], second["order_id"]]


async def _unassigned(p: Any, order_id: str) -> bool:
    return any(
        e.data["order_id"] == order_id for e in p.events("deliveries.v1", "lastmile.delivery.unassigned")
    )


async def test_each_vehicle_keeps_its_latest_position_whatever_order_fixes_arrive_in(
    planner_factory: Any,
) -> None:
    from lastmile.common.bus import OutgoingRecord
    from lastmile.planner.store import PlannerStore

    async with planner_factory() as p:
        a, b = p.vehicles[0]["id"], "veh_other"

        def fix(vehicle: str, minutes: int, lat: float) -> ev.LocationReported:
            at = NOW + timedelta(minutes=minutes)
            return ev.LocationReported(
                vehicle_id=vehicle, device_id="d1", lat=lat, lon=13.4, recorded_at=at, received_at=at
            )

        records = [fix(a, 1, 52.51), fix(b, 1, 52.61), fix(a, 3, 52.53), fix(a, 2, 52.52), fix(a, 3, 52.53)]
        # one publish, so one batch: the same vehicle several times, one fix late, one twice
        await p.bus.publish(
            [OutgoingRecord(r.TOPIC.name, r.key().encode(), r.envelope("test").to_bytes()) for r in records]
        )
        await p.publish(fix(b, 0, 52.60))  # late on its own
        await eventually(lambda: p.bus.pending("planner", "locations.v1") == 0)
        async with p.app.state.deps.db.read() as session:
            found = await PlannerStore(session).positions([a, b])
        assert {v: r.lat for v, r in found.items()} == {a: 52.53, b: 52.61}


async def test_delays_re_plan_a_day_at_most_once_an_interval_but_a_new_order_at_once(
    planner_factory: Any, make_order: Any
) -> None:
    async with planner_factory(replan_delay_interval_s=3600) as p:
        vehicle = p.vehicles[0]["id"]
        first = make_order(p.depot["id"], lat=52.53)
        await p.publish(first)
        await p.wait_for("deliveries.v1", "lastmile.delivery.scheduled")
        await p.idle()
        plans = len(await p.get("/v1/plans", depot_id=p.depot["id"]))

        def delayed(n: int) -> ev.DeliveryDelayed:
            return ev.DeliveryDelayed(
                order_id=first.order_id, vehicle_id=vehicle, route_id="r", delay_s=900 * n, eta=NOW, at=NOW
            )

        await p.publish(delayed(1))
        await p.publish(delayed(2))
        await asyncio.sleep(1.0)  # twenty debounces: an hour of the clock has not passed since the last plan
        assert len(await p.get("/v1/plans", depot_id=p.depot["id"])) == plans
        await p.publish(
            make_order(p.depot["id"], lat=52.54)
        )  # a new order is planned at once, delays with it

        async def with_both() -> list[dict[str, Any]]:
            return [x for x in await _plans_with(p, "delay") if "order_created" in x["triggers"]]

        plan = (await eventually(with_both, timeout=10))[-1]
        assert plan["triggers"]["delay"] == 2
