"""The ETA engine on synthetic routes: on time, late, early, a stop skipped, a route re-planned mid-way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lastmile.common import events as ev
from lastmile.tracker import domain_eta as engine
from lastmile.tracker.domain import Fix
from lastmile.tracker.domain_eta import EtaConfig, Plan, Progress, Step

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CFG = EtaConfig()
DEPOT = (48.10, 11.50)
KM_LAT = 1 / 111.2  # one kilometre north, in degrees of latitude
LEG_S = 150  # 1 km by road (1.25 km) at 30 km/h
SERVICE_S = 180


def stop_at(i: int) -> tuple[float, float]:
    return DEPOT[0] + (i + 1) * KM_LAT, DEPOT[1]


def route(orders: list[str], version: int = 1, start: datetime = T0, first: int = 0) -> ev.RoutePlanned:
    """Stops a kilometre apart going north from the depot (or from stop `first - 1` for a re-plan)."""
    stops, at = [], start
    for n, order in enumerate(orders):
        lat, lon = stop_at(first + n)
        at += timedelta(seconds=LEG_S)
        stops.append(
            ev.RouteStop(
                stop_id=order,
                order_id=order,
                sequence=n + 1,
                location=ev.GeoPoint(lat=lat, lon=lon),
                planned_arrival=at,
                planned_departure=at + timedelta(seconds=SERVICE_S),
                service_s=SERVICE_S,
                leg_distance_m=1250,
                leg_duration_s=LEG_S,
            )
        )
        at += timedelta(seconds=SERVICE_S)
    origin = stop_at(first - 1) if first else DEPOT
    return ev.RoutePlanned(
        route_id="rte_1",
        version=version,
        vehicle_id="veh_1",
        depot_id="dep_1",
        plan_id="pln_1",
        service_date=T0.date(),
        start=ev.GeoPoint(lat=origin[0], lon=origin[1]),
        end=ev.GeoPoint(lat=DEPOT[0], lon=DEPOT[1]),
        start_at=start,
        end_at=at,
        distance_m=1250 * len(orders),
        duration_s=int((at - start).total_seconds()),
        stops=stops,
    )


class Drive:
    """A vehicle following the stops at `slowness` times the planned leg time, pinging every `every` s."""

    def __init__(
        self, orders: list[str], slowness: float = 1.0, every: int = 15, cfg: EtaConfig = CFG
    ) -> None:
        self.plan = Plan.from_snapshot(route(orders))
        self.cfg = cfg
        self.progress = Progress.begin(self.plan)
        self.slowness, self.every = slowness, every
        self.t = T0
        self.events: list[ev.Payload] = []
        self.errors: list[engine.EtaError] = []
        self.last = Step(self.progress)

    def ping(self, lat: float, lon: float) -> Step:
        step = engine.observe(self.plan, self.progress, Fix(lat, lon, self.t), self.t, self.cfg)
        self.events += step.events
        self.errors += step.errors
        self.last = step
        return step

    def drive(self, frm: tuple[float, float], to: tuple[float, float], planned_s: float) -> None:
        seconds = planned_s * self.slowness
        steps = max(1, int(seconds // self.every))
        for k in range(1, steps + 1):
            self.t += timedelta(seconds=seconds / steps)
            f = k / steps
            self.ping(frm[0] + f * (to[0] - frm[0]), frm[1] + f * (to[1] - frm[1]))

    def stay(self, at: tuple[float, float], seconds: float) -> None:
        for _ in range(int(seconds // self.every)):
            self.t += timedelta(seconds=self.every)
            self.ping(*at)

    def through(self, stops: int, service_s: float = SERVICE_S) -> tuple[float, float]:
        """From the depot (a first fix there) through the first `stops` stops, serving each; where it is then."""
        self.ping(*DEPOT)
        prev = DEPOT
        for i in range(stops):
            self.drive(prev, stop_at(i), LEG_S)
            self.stay(stop_at(i), service_s)
            prev = stop_at(i)
        return prev

    def complete(self, order_id: str) -> Step:
        """The driver's app reports the stop done, now."""
        step = engine.complete(self.plan, self.progress, order_id, self.t, self.t, self.cfg)
        self.events += step.events
        self.last = step
        return step

    def of(self, kind: type[ev.Payload], order: str | None = None) -> list[ev.Payload]:
        return [e for e in self.events if isinstance(e, kind) and (order is None or e.order_id == order)]  # type: ignore[attr-defined]


ORDERS = ["o1", "o2", "o3", "o4", "o5"]


def long_late_drive(stops: int, slowness: float, served: int, cfg: EtaConfig) -> Drive:
    """A route of `stops` stops, driven `slowness` times slower than planned through its first `served`."""
    d = Drive([f"o{i}" for i in range(1, stops + 1)], slowness=slowness, cfg=cfg)
    d.through(served)
    return d


class TestOnTime:
    def test_a_vehicle_on_plan_arrives_on_plan_and_its_etas_stay_put(self) -> None:
        d = Drive(ORDERS)
        d.ping(*DEPOT)
        out = d.of(ev.OutForDelivery)
        assert [e.order_id for e in out] == ORDERS  # type: ignore[attr-defined]
        prev = DEPOT
        for i in range(3):
            d.drive(prev, stop_at(i), LEG_S)
            d.stay(stop_at(i), SERVICE_S)
            prev = stop_at(i)
        arrived = {e.order_id: e.at for e in d.of(ev.Arrived)}  # type: ignore[attr-defined]
        assert set(arrived) == {"o1", "o2", "o3"}
        plan = {s.order_id: s.planned_arrival for s in d.plan.stops}
        for order, at in arrived.items():
            assert abs((at - plan[order]).total_seconds()) <= 30
        assert not d.of(ev.DeliveryDelayed)
        assert not d.of(ev.EtaChanged, "o5")  # never moved by the threshold
        eta5 = d.last.etas["o5"][0]
        assert abs((eta5 - plan["o5"]).total_seconds()) < CFG.change_threshold_s
        assert 0.8 < d.progress.pace < 1.25


class TestLate:
    def test_a_slow_vehicle_pushes_etas_later_and_reports_the_delay(self) -> None:
        d = Drive(ORDERS, slowness=2.5)
        prev = d.through(3)
        assert d.progress.pace > 1.5  # learnt from the legs actually driven
        changes = d.of(ev.EtaChanged, "o5")
        assert changes, "the last stop's ETA should have moved"
        assert all(c.eta > c.previous_eta for c in changes)  # type: ignore[attr-defined]
        planned5 = d.plan.stops[-1].planned_arrival
        assert d.last.etas["o5"][0] - planned5 > timedelta(minutes=5)
        d.drive(prev, stop_at(3), LEG_S)
        d.stay(stop_at(3), 60)
        delayed = d.of(ev.DeliveryDelayed)
        assert delayed
        assert {e.order_id for e in delayed} <= {"o4", "o5"}
        assert all(e.delay_s >= CFG.delay_threshold_s for e in delayed)  # type: ignore[attr-defined]
        assert len(d.of(ev.DeliveryDelayed, "o5")) == 1  # once per threshold crossed, not every ping

    def test_a_delay_within_the_promised_window_is_not_announced(self) -> None:
        def slow_with_promise(slack: timedelta) -> Drive:
            snapshot = route(ORDERS)
            stops = [
                s.model_copy(
                    update={
                        "promised_window": ev.TimeWindow(
                            start=s.planned_arrival - timedelta(hours=1), end=s.planned_arrival + slack
                        )
                    }
                )
                for s in snapshot.stops
            ]
            d = Drive(ORDERS, slowness=2.5)
            d.plan = Plan.from_snapshot(snapshot.model_copy(update={"stops": stops}))
            d.through(4)
            return d

        assert not slow_with_promise(timedelta(hours=2)).of(ev.DeliveryDelayed)  # late on plan, promise kept
        assert slow_with_promise(timedelta(minutes=10)).of(ev.DeliveryDelayed, "o5")  # the promise breaks

    def test_delays_are_told_for_stops_due_within_the_horizon(self) -> None:
        def late_drive(cfg: EtaConfig) -> Drive:
            return long_late_drive(40, slowness=2.0, served=6, cfg=cfg)

        delays = late_drive(CFG).of(ev.DeliveryDelayed)
        assert delays
        assert all((e.eta - e.at).total_seconds() <= CFG.delay_horizon_s for e in delays)  # type: ignore[attr-defined]
        everywhere = late_drive(EtaConfig(delay_horizon_s=10 * 24 * 3600)).of(ev.DeliveryDelayed)
        assert len(everywhere) > len(delays)

    def test_far_off_etas_are_told_when_they_move_by_a_share_of_the_time_left(self) -> None:
        def late_drive(cfg: EtaConfig) -> Drive:
            return long_late_drive(30, slowness=1.3, served=5, cfg=cfg)

        d = late_drive(CFG)
        changes = [c for c in d.of(ev.EtaChanged) if c.previous_eta is not None and not c.arriving_soon]  # type: ignore[attr-defined]
        assert changes
        for c in changes:
            left = (c.eta - c.at).total_seconds()  # type: ignore[attr-defined]
            moved = abs((c.eta - c.previous_eta).total_seconds())  # type: ignore[attr-defined]
            assert moved >= max(CFG.change_threshold_s, CFG.change_fraction * left)
        every_two_minutes = late_drive(EtaConfig(change_fraction=0.0))
        assert len(d.of(ev.EtaChanged, "o30")) < len(every_two_minutes.of(ev.EtaChanged, "o30"))
        # the next stops are still told of two minutes
        assert any(abs((c.eta - c.previous_eta).total_seconds()) < 300 for c in changes)  # type: ignore[attr-defined]

    def test_a_vehicle_stuck_in_traffic_makes_the_next_eta_slip_in_real_time(self) -> None:
        d = Drive(ORDERS)
        d.ping(*DEPOT)
        d.drive(DEPOT, (DEPOT[0] + KM_LAT / 2, DEPOT[1]), LEG_S / 2)
        before = d.last.etas["o1"][0]
        d.stay((DEPOT[0] + KM_LAT / 2, DEPOT[1]), 600)
        after = d.last.etas["o1"][0]
        assert (after - before).total_seconds() >= 550
        assert d.of(ev.EtaChanged, "o1")


class TestEarly:
    def test_a_fast_vehicle_brings_etas_forward(self) -> None:
        d = Drive(ORDERS, slowness=0.4)
        d.through(3, SERVICE_S * 0.4)
        assert d.progress.pace < 0.8
        changes = d.of(ev.EtaChanged, "o5")
        assert changes
        assert all(c.eta < c.previous_eta for c in changes)
        assert not d.of(ev.DeliveryDelayed)

    def test_a_stop_the_plan_waited_for_keeps_its_time(self) -> None:
        snapshot = route(["o1", "o2"])
        late_start = snapshot.stops[1].planned_arrival + timedelta(hours=1)  # a window opening later
        stops = [
            snapshot.stops[0],
            snapshot.stops[1].model_copy(
                update={"planned_arrival": late_start, "planned_departure": late_start + timedelta(minutes=3)}
            ),
        ]
        plan = Plan.from_snapshot(snapshot.model_copy(update={"stops": stops}))
        progress = Progress.begin(plan)
        step = engine.observe(plan, progress, Fix(*DEPOT, T0), T0, CFG)
        assert step.etas["o2"][0] == late_start
        assert step.etas["o1"][0] < late_start - timedelta(minutes=30)

    def test_an_early_vehicle_is_not_expected_before_the_promised_window(self) -> None:
        # the plan reaches o3 at its window's start; the van runs fast, but the driver will not ring before it
        snapshot = route(ORDERS)
        opens = snapshot.stops[2].planned_arrival
        stops = list(snapshot.stops)
        stops[2] = stops[2].model_copy(
            update={"promised_window": ev.TimeWindow(start=opens, end=opens + timedelta(hours=1))}
        )
        d = Drive(ORDERS, slowness=0.4)
        d.plan = Plan.from_snapshot(snapshot.model_copy(update={"stops": stops}))
        d.ping(*DEPOT)
        d.drive(DEPOT, stop_at(0), LEG_S)
        d.stay(stop_at(0), SERVICE_S * 0.4)
        assert d.last.etas["o3"][0] == opens  # not earlier
        assert d.last.etas["o2"][0] < stops[1].planned_arrival  # the stop without a window comes early


class TestSkipped:
    def test_a_stop_driven_past_is_not_arrived_and_goes_to_the_end(self) -> None:
        d = Drive(ORDERS)
        d.ping(*DEPOT)
        d.drive(DEPOT, stop_at(0), LEG_S)
        d.stay(stop_at(0), SERVICE_S)
        d.drive(stop_at(0), stop_at(2), 2 * LEG_S)  # through o2 without stopping
        d.stay(stop_at(2), 60)
        assert [e.order_id for e in d.of(ev.Arrived)] == ["o1", "o3"]  # type: ignore[attr-defined]
        etas = d.last.etas
        assert etas["o4"][1] < etas["o2"][1]  # o2 comes after the planned rest now
        assert etas["o2"][1] == len(etas) - 1
        assert etas["o2"][0] > etas["o5"][0]
        assert d.progress.stops["o2"].passed

    def test_a_stop_served_ahead_of_its_turn_leaves_the_ones_before_it_in_their_order(self) -> None:
        """The driver's app had an older version of the route: the stops before keep their order (they are
        next), rather than being estimated at the end of the route, hours late."""
        d = Drive(ORDERS)
        d.ping(*DEPOT)
        d.drive(DEPOT, stop_at(0), LEG_S)
        d.stay(stop_at(0), SERVICE_S)
        d.complete("o1")
        aside = (stop_at(0)[0], DEPOT[1] + 0.01)  # round o2, never within its radius
        d.drive(stop_at(0), aside, LEG_S)
        d.drive(aside, stop_at(2), LEG_S)
        d.stay(stop_at(2), SERVICE_S)
        assert [e.order_id for e in d.of(ev.Arrived)] == ["o1", "o3"]  # type: ignore[attr-defined]
        d.complete("o3")
        etas = d.last.etas
        assert etas["o2"][1] == 0  # next: the driver goes back for it
        assert etas["o2"][0] < etas["o4"][0] < etas["o5"][0]
        assert (etas["o2"][0] - d.t).total_seconds() < 2 * LEG_S
        assert not d.progress.stops["o2"].passed

    def test_a_revision_that_puts_the_stop_the_vehicle_waits_at_later_keeps_the_others_in_order(self) -> None:
        d = Drive(ORDERS)
        d.ping(*DEPOT)
        d.drive(DEPOT, stop_at(0), LEG_S)
        d.stay(stop_at(0), 120)  # arrived at o1, waiting for its window
        revised = route(["o2", "o1", "o3", "o4", "o5"], version=2)
        plan = Plan.from_snapshot(revised)
        step = engine.revise(plan, d.progress, d.t, CFG)
        assert [order for order, _ in sorted(step.etas.items(), key=lambda kv: kv[1][1])] == [
            "o1",
            "o2",
            "o3",
            "o4",
            "o5",
        ]
        assert (step.etas["o2"][0] - d.t).total_seconds() < SERVICE_S + 3 * LEG_S


class TestReplanned:
    def test_a_revised_route_keeps_what_is_done_and_estimates_the_new_order(self) -> None:
        d = Drive(ORDERS)
        d.ping(*DEPOT)
        d.drive(DEPOT, stop_at(0), LEG_S)
        d.stay(stop_at(0), SERVICE_S)
        revised = route(["o1", "o3", "o2", "o6"], version=2)
        # the new plan: o3 before o2, o4 and o5 moved to another vehicle, o6 new at the far end
        stops = [
            revised.stops[0],
            revised.stops[1].model_copy(update={"location": ev.GeoPoint(lat=stop_at(2)[0], lon=DEPOT[1])}),
            revised.stops[2].model_copy(update={"location": ev.GeoPoint(lat=stop_at(1)[0], lon=DEPOT[1])}),
            revised.stops[3].model_copy(update={"location": ev.GeoPoint(lat=stop_at(6)[0], lon=DEPOT[1])}),
        ]
        plan = Plan.from_snapshot(revised.model_copy(update={"stops": stops}))
        step = engine.revise(plan, d.progress, d.t, CFG)
        assert d.progress.version == 2
        assert set(step.etas) == {"o1", "o3", "o2", "o6"}  # o1: the vehicle is still there
        assert step.etas["o3"][1] < step.etas["o2"][1]
        assert [e.order_id for e in step.events if isinstance(e, ev.OutForDelivery)] == ["o6"]
        assert "o4" not in d.progress.stops
        d.plan = plan
        d.stay(stop_at(0), 30)
        d.drive(stop_at(0), stop_at(2), 2 * LEG_S)
        d.stay(stop_at(2), 60)
        assert d.of(ev.Arrived, "o3")

    def test_a_revision_that_leaves_the_vehicle_late_is_not_a_new_delay_until_the_delay_grows(self) -> None:
        """The planner re-planned knowing where the vehicle was: telling it the same delay again re-plans the
        same route, and the revision that follows would tell it again."""
        d = Drive(ORDERS, slowness=2.5)
        prev = d.through(4)
        assert d.of(ev.DeliveryDelayed, "o5"), "late enough to be told once"
        told = len(d.of(ev.DeliveryDelayed))
        again = route(ORDERS, version=2)  # the same times: the vehicle is still as late against them
        step = engine.revise(Plan.from_snapshot(again), d.progress, d.t, CFG)
        assert not [e for e in step.events if isinstance(e, ev.DeliveryDelayed)]
        assert step.progress.stops["o5"].delay_level >= 1
        d.plan = Plan.from_snapshot(again)
        d.stay(prev, CFG.delay_threshold_s + 300)  # stuck: the delay grows by another step
        assert len(d.of(ev.DeliveryDelayed, "o5")) == 2
        assert len(d.of(ev.DeliveryDelayed)) > told


class TestNotices:
    def test_arriving_soon_is_told_once_for_the_next_stop(self) -> None:
        d = Drive(ORDERS)
        d.ping(*DEPOT)
        d.drive(DEPOT, stop_at(0), LEG_S)
        d.stay(stop_at(0), SERVICE_S)
        soon = [e for e in d.of(ev.EtaChanged) if e.arriving_soon]  # type: ignore[attr-defined]
        assert [e.order_id for e in soon] == ["o1"]  # type: ignore[attr-defined]  # o2 is next once o1 is left
        d.drive(stop_at(0), stop_at(1), LEG_S)
        soon = [e for e in d.of(ev.EtaChanged) if e.arriving_soon]  # type: ignore[attr-defined]
        assert [e.order_id for e in soon] == ["o1", "o2"]  # type: ignore[attr-defined]
        assert all(e.stops_before == 0 for e in soon)  # type: ignore[attr-defined]

    def test_a_ping_older_than_the_last_changes_nothing(self) -> None:
        d = Drive(ORDERS)
        d.ping(*DEPOT)
        d.t += timedelta(minutes=1)
        d.ping(*stop_at(0))
        before = engine.dump(d.progress)
        late = engine.observe(d.plan, d.progress, Fix(*stop_at(3), T0), d.t, CFG)
        assert not late.events
        assert engine.dump(d.progress) == before

    def test_a_vague_fix_cannot_confirm_an_arrival(self) -> None:
        d = Drive(ORDERS)
        d.ping(*DEPOT)
        d.t += timedelta(seconds=LEG_S)
        for _ in range(6):
            d.t += timedelta(seconds=15)
            engine.observe(d.plan, d.progress, Fix(*stop_at(0), d.t, accuracy_m=400), d.t, CFG)
        assert d.progress.stops["o1"].status == "open"


class TestCompletion:
    def test_a_stop_completed_where_the_vehicle_is_starts_the_next_leg(self) -> None:
        d = Drive(ORDERS)
        d.ping(*DEPOT)
        d.drive(DEPOT, stop_at(0), LEG_S)
        d.stay(stop_at(0), 60)
        step = engine.complete(d.plan, d.progress, "o1", d.t, d.t, CFG)
        assert d.progress.stops["o1"].status == "done"
        assert "o1" not in step.etas
        assert step.etas["o2"][1] == 0
        expected = d.t + timedelta(seconds=LEG_S * d.progress.pace)
        assert abs((step.etas["o2"][0] - expected).total_seconds()) < 5


class TestErrorMeasure:
    def test_the_error_at_a_horizon_is_measured_on_arrival(self) -> None:
        d = Drive(ORDERS, slowness=1.6, every=30)
        d.through(5)
        tens = [e for e in d.errors if e.horizon_s == 600]
        assert {e.source for e in tens} == {"live", "planned"}
        live = [e.error_s for e in tens if e.source == "live"]
        planned = [e.error_s for e in tens if e.source == "planned"]
        assert sum(live) / len(live) < sum(planned) / len(planned)  # the live ETA learnt the slowness


class TestPersistence:
    def test_progress_survives_a_round_trip_through_json(self) -> None:
        d = Drive(ORDERS, slowness=1.3)
        d.ping(*DEPOT)
        d.drive(DEPOT, stop_at(0), LEG_S)
        d.stay(stop_at(0), 120)
        again = engine.load(engine.dump(d.progress))
        assert engine.dump(again) == engine.dump(d.progress)
        assert again.stops["o1"].arrived_at == d.progress.stops["o1"].arrived_at
