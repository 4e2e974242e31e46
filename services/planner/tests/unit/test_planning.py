"""Building the engines' problem, reading their answer, and re-planning a running day."""

from __future__ import annotations

import math
import random
from typing import Any

from lastmile.planner import domain, planning
from lastmile.planner.handlers_plans import Day, mode_for, vehicle_state
from lastmile.planner.problem import Matrix, SolverInput, SolverJob, SolverVehicle, route_cost, timeline
from lastmile.planner.store import JobRow, RouteRow


def stops_of(plan: planning.Plan) -> dict[str, list[str]]:
    return {r.vehicle_id: [s.order_id for s in r.stops] for r in plan.routes}


class TestBuildProblem:
    def test_times_are_seconds_from_local_midnight(self, make: Any) -> None:
        problem = planning.build_problem(
            make.depot, [planning.VehicleState(make.van())], [make.job("o1")], make.day
        )
        assert problem.input.jobs[0].windows == ((10 * 3600, 18 * 3600),)
        assert problem.input.vehicles[0].window == (8 * 3600, 18 * 3600)

    def test_ready_at_moves_the_earliest_start(self, make: Any) -> None:
        problem = planning.build_problem(
            make.depot, [planning.VehicleState(make.van())], [make.job("o1", ready_at=make.at(12))], make.day
        )
        assert problem.input.jobs[0].windows == ((12 * 3600, 18 * 3600),)

    def test_several_windows_stay_several(self, make: Any) -> None:
        two = make.job("o1", windows=((make.at(9), make.at(10)), (make.at(15), make.at(16))))
        problem = planning.build_problem(make.depot, [planning.VehicleState(make.van())], [two], make.day)
        assert problem.input.jobs[0].windows == ((9 * 3600, 10 * 3600), (15 * 3600, 16 * 3600))

    def test_returns_are_pickups_in_three_dimensions(self, make: Any) -> None:
        jobs = [make.job("d", volume_l=30.0), make.job("r", kind="return")]
        problem = planning.build_problem(make.depot, [planning.VehicleState(make.van())], jobs, make.day)
        assert problem.input.jobs[0].delivery == (1, 2000, 30000)
        assert problem.input.jobs[1].pickup == (1, 2000, 0)
        assert problem.input.jobs[1].delivery == (0, 0, 0)

    def test_vehicle_costs_limits_and_breaks_reach_the_engine(self, make: Any) -> None:
        vehicle = make.van(
            fixed_cost=40.0,
            cost_per_hour=30.0,
            cost_per_km=0.5,
            max_stops=50,
            max_driving_s=6 * 3600,
            max_distance_km=150,
            breaks=(domain.BreakSpec("12:00", "13:00", 1800),),
        )
        problem = planning.build_problem(
            make.depot, [planning.VehicleState(vehicle)], [make.job("o1")], make.day
        )
        v = problem.input.vehicles[0]
        assert (v.fixed_cost, v.per_hour, v.per_km) == (4000, 3000, 50)
        assert (v.max_tasks, v.max_travel_time, v.max_distance) == (50, 6 * 3600, 150_000)
        assert v.breaks[0].windows == ((12 * 3600, 13 * 3600),)
        assert v.breaks[0].service == 1800

    def test_a_started_vehicle_starts_where_it_is_and_keeps_what_it_carries(self, make: Any) -> None:
        state = planning.VehicleState(
            make.van(), started=True, position=(52.55, 13.45), loaded=("o1",), route=("o1",)
        )
        problem = planning.build_problem(
            make.depot, [state], [make.job("o1"), make.job("o2")], make.day, now=make.at(11)
        )
        vehicle = problem.input.vehicles[0]
        assert problem.locations[vehicle.start] == (52.55, 13.45)
        assert vehicle.window[0] == 11 * 3600
        on_board, at_depot = problem.input.jobs
        assert on_board.skills <= vehicle.skills  # pinned to this vehicle
        assert not at_depot.skills <= vehicle.skills  # a new delivery is still at the depot
        assert vehicle.initial == (1,)

    def test_a_promise_is_the_window(self, make: Any) -> None:
        promised = {"o1": (make.at(11), make.at(12))}
        problem = planning.build_problem(
            make.depot, [planning.VehicleState(make.van())], [make.job("o1")], make.day, promised=promised
        )
        assert problem.input.jobs[0].windows == ((11 * 3600, 12 * 3600),)


class TestReadSolution:
    def test_every_job_is_on_a_route_with_a_promise_inside_its_window(self, make: Any, planner: Any) -> None:
        plan = planner([make.van()], [make.job(f"o{i}", lat=52.52 + i * 0.003) for i in range(6)])
        assert not plan.unassigned
        stops = [s for r in plan.routes for s in r.stops]
        assert sorted(s.order_id for s in stops) == [f"o{i}" for i in range(6)]
        for stop in stops:
            assert make.at(10) <= stop.promised[0] <= stop.arrival <= stop.promised[1] <= make.at(18)
            assert (stop.promised[1] - stop.promised[0]).total_seconds() <= 3600
            assert stop.lateness_s == 0

    def test_arrivals_follow_the_route_order_and_legs_add_up(self, make: Any, planner: Any) -> None:
        plan = planner([make.van()], [make.job(f"o{i}", lat=52.52 + i * 0.01) for i in range(4)])
        arrivals = [s.arrival for s in plan.routes[0].stops]
        assert arrivals == sorted(arrivals)
        legs = sum(s.leg_distance_m for s in plan.routes[0].stops)
        assert 0 < legs < plan.routes[0].distance_m  # the drive back to the depot is the rest

    def test_a_vehicle_reloads_at_the_depot_when_that_serves_more_orders(
        self, make: Any, planner: Any
    ) -> None:
        jobs = [make.job(f"o{i}", lat=52.52 + i * 0.002) for i in range(4)]
        plan = planner([make.van(capacity_parcels=2, shift_start="08:00", shift_end="18:00")], jobs)
        assert not plan.unassigned
        assert sorted(s.trip for s in plan.routes[0].stops) == [1, 1, 2, 2]

    def test_a_kept_promise_that_a_delay_breaks_is_reported_late_not_dropped(
        self, make: Any, planner: Any
    ) -> None:
        # the van is still far away at 10:50 and promised o1 by 11:00: it arrives late, and says by how much
        state = planning.VehicleState(
            make.van(), started=True, position=(52.62, 13.40), loaded=("o1",), route=("o1",)
        )
        plan = planner(
            [state],
            [make.job("o1")],
            mode="replan",
            now=make.at(10, 50),
            promised={"o1": (make.at(10), make.at(11))},
        )
        assert not plan.unassigned
        stop = plan.routes[0].stops[0]
        assert stop.promised == (make.at(10), make.at(11))
        assert stop.lateness_s == int((stop.arrival - make.at(11)).total_seconds()) > 0

    def test_stops_a_late_vehicle_already_broke_are_served_before_it_waits_for_a_later_window(
        self, make: Any, planner: Any
    ) -> None:
        # 11:30, the van is late: two promises (by 11:00, by 11:15) are broken; its route had them after a stop
        # promised for 13:00. They come first (a few minutes late), not after an hour and a half of waiting.
        route = ("later", "late1", "late2")
        state = planning.VehicleState(
            make.van(), started=True, position=(52.520, 13.400), loaded=route, route=route
        )
        jobs = [
            make.job("later", lat=52.525, lon=13.405),
            make.job("late1", lat=52.522, lon=13.410),
            make.job("late2", lat=52.518, lon=13.404),
        ]
        promised = {
            "later": (make.at(13), make.at(13, 30)),
            "late1": (make.at(10), make.at(11)),
            "late2": (make.at(10, 30), make.at(11, 15)),
        }
        plan = planner([state], jobs, mode="replan", now=make.at(11, 30), promised=promised)
        assert not plan.unassigned
        stops = {s.order_id: s for s in plan.routes[0].stops}
        assert [s.order_id for s in plan.routes[0].stops][-1] == "later"
        assert stops["later"].lateness_s == 0
        assert 0 < stops["late1"].lateness_s < 3600
        assert 0 < stops["late2"].lateness_s < 3600

    def test_a_vehicle_loaded_but_still_at_the_depot_takes_a_new_parcel_one_that_left_does_not(
        self, make: Any, planner: Any
    ) -> None:
        def state(at_depot: bool) -> planning.VehicleState:
            where = (make.depot.lat, make.depot.lon) if at_depot else (52.56, 13.40)
            return planning.VehicleState(
                make.van(), started=True, position=where, loaded=("o1",), route=("o1",), at_depot=at_depot
            )

        jobs = [make.job("o1"), make.job("new", lat=52.51)]
        waiting = planner([state(True)], jobs, mode="replan", now=make.at(9))
        assert not waiting.unassigned
        assert sorted(s.order_id for s in waiting.routes[0].stops) == ["new", "o1"]
        gone = planner([state(False)], jobs, mode="replan", now=make.at(9))
        assert list(gone.unassigned) == ["new"]  # its parcel is at the depot, the van is not


class TestReplan:
    def wave(self, make: Any, planner: Any) -> tuple[planning.Plan, list[Any]]:
        jobs = [make.job(f"o{i}", lat=52.50 + i * 0.006, lon=13.38 + (i % 3) * 0.01) for i in range(8)]
        return planner([make.van("veh_1"), make.van("veh_2")], jobs), jobs

    def states(self, make: Any, plan: planning.Plan) -> list[planning.VehicleState]:
        routes = stops_of(plan)
        return [
            planning.VehicleState(make.van(v), route=tuple(routes.get(v, ()))) for v in ("veh_1", "veh_2")
        ]

    def promises(self, plan: planning.Plan) -> dict[str, Any]:
        return {s.order_id: s.promised for r in plan.routes for s in r.stops}

    def test_moves_no_stop_when_nothing_changed(self, make: Any, planner: Any) -> None:
        first, jobs = self.wave(make, planner)
        again = planner(self.states(make, first), jobs, mode="replan", promised=self.promises(first))
        assert stops_of(again) == stops_of(first)
        assert domain.stops_moved(stops_of(first), stops_of(again)) == set()

    def test_a_new_order_keeps_every_promise(self, make: Any, planner: Any) -> None:
        first, jobs = self.wave(make, planner)
        promised = self.promises(first)
        again = planner(
            self.states(make, first), [*jobs, make.job("new", lat=52.53)], mode="replan", promised=promised
        )
        assert not again.unassigned
        for stop in (s for r in again.routes for s in r.stops):
            if stop.order_id in promised:
                assert stop.promised == promised[stop.order_id]
                assert promised[stop.order_id][0] <= stop.arrival <= promised[stop.order_id][1]
                assert stop.lateness_s == 0

    def test_a_cancelled_order_leaves_the_others_in_their_order(self, make: Any, planner: Any) -> None:
        first, jobs = self.wave(make, planner)
        gone = first.routes[0].stops[1].order_id
        again = planner(
            self.states(make, first),
            [j for j in jobs if j.order_id != gone],
            mode="replan",
            promised=self.promises(first),
        )
        expected = {v: [o for o in orders if o != gone] for v, orders in stops_of(first).items()}
        assert stops_of(again) == {v: o for v, o in expected.items() if o}


class TestChurnAndKpis:
    def test_a_stop_inserted_before_another_does_not_move_it(self) -> None:
        assert domain.stops_moved({"v1": ["a", "b"]}, {"v1": ["a", "new", "b"]}) == set()

    def test_a_re_sequence_or_a_change_of_vehicle_moves_stops(self) -> None:
        assert domain.stops_moved({"v1": ["a", "b", "c"]}, {"v1": ["b", "a", "c"]}) == {"a", "b", "c"}
        assert domain.stops_moved({"v1": ["a"], "v2": ["b"]}, {"v1": ["a", "b"]}) == {"b"}

    def test_kpis_of_a_plan(self, make: Any) -> None:
        van = make.van(fixed_cost=10.0, cost_per_hour=20.0, cost_per_km=0.5)
        kpis = domain.kpis([(van, 10_000, 1800, 7200, 10, 1)], {"x": ("too_large", "")})
        assert kpis.cost == 10 + 40 + 5
        assert (kpis.distance_km, kpis.driving_h, kpis.stops_per_hour) == (10.0, 0.5, 5.0)
        assert (kpis.unassigned, kpis.unassigned_by_reason, kpis.late_stops) == (1, {"too_large": 1}, 1)


class TestWaves:
    def test_a_wave_plans_the_next_day_after_its_cutoff(self, make: Any) -> None:
        depot = domain.DepotSpec(**{**make.depot.__dict__, "waves": (domain.Wave("20:00", 1),)})
        assert domain.due_waves(depot, make.at(19)) == [
            (depot.waves[0], make.day, make.at(20).replace(day=30, month=11))
        ]
        due = domain.due_waves(depot, make.at(20, 1))
        assert due[0][1] == make.day.replace(day=2)

    def test_service_area_polygon(self, make: Any) -> None:
        square = ((52.5, 13.3), (52.5, 13.5), (52.6, 13.5), (52.6, 13.3))
        depot = domain.DepotSpec(**{**make.depot.__dict__, "service_area": square})
        assert depot.serves(52.55, 13.4)
        assert not depot.serves(52.45, 13.4)


class TestInsertion:
    def base(self, make: Any, planner: Any) -> tuple[planning.Plan, list[Any], list[planning.VehicleState]]:
        jobs = [make.job(f"o{i}", lat=52.50 + i * 0.006, lon=13.38 + (i % 3) * 0.01) for i in range(8)]
        plan = planner([make.van("veh_1"), make.van("veh_2")], jobs)
        routes = stops_of(plan)
        states = [
            planning.VehicleState(make.van(v), route=tuple(routes.get(v, ()))) for v in ("veh_1", "veh_2")
        ]
        return plan, jobs, states

    def problem(self, make: Any, states: Any, jobs: Any, promised: Any) -> planning.Problem:
        from lastmile.planner.travel import CoordinateTravelTimes

        problem = planning.build_problem(make.depot, states, jobs, make.day, promised=promised)
        travel = CoordinateTravelTimes()
        return problem.with_matrices({"van": travel.compute(problem.locations, "van", 8)})

    def test_a_new_order_goes_between_stops_and_nothing_else_moves(self, make: Any, planner: Any) -> None:
        from lastmile.planner.insertion import insert_new

        plan, jobs, states = self.base(make, planner)
        promised = {s.order_id: s.promised for r in plan.routes for s in r.stops}
        problem = self.problem(make, states, [*jobs, make.job("new", lat=52.515)], promised)
        solution = insert_new(problem.input)
        assert solution is not None
        after = planning.read_solution(problem, solution, 1800)
        without_new = {v: [o for o in orders if o != "new"] for v, orders in stops_of(after).items()}
        assert without_new == {v: o for v, o in stops_of(plan).items()}
        assert "new" in {o for orders in stops_of(after).values() for o in orders}
        assert all(s.lateness_s == 0 for r in after.routes for s in r.stops)

    def test_an_order_that_fits_nowhere_as_routes_stand_is_left_to_the_engine(
        self, make: Any, planner: Any
    ) -> None:
        from lastmile.planner.insertion import insert_new

        plan, jobs, states = self.base(make, planner)
        promised = {s.order_id: s.promised for r in plan.routes for s in r.stops}
        cold = make.job("cold", skills=("cold_chain",))
        assert insert_new(self.problem(make, states, [*jobs, cold], promised).input) is None


class TestSplit:
    def test_a_big_day_splits_into_parts_that_cover_every_job_once_with_a_share_of_the_fleet(
        self, make: Any
    ) -> None:
        from lastmile.planner.problem import split
        from lastmile.planner.travel import CoordinateTravelTimes

        jobs = [
            make.job(f"o{i}", lat=52.45 + (i % 10) * 0.015, lon=13.30 + (i // 10) * 0.05) for i in range(40)
        ]
        states = [planning.VehicleState(make.van(f"v{k}")) for k in range(6)]
        problem = planning.build_problem(make.depot, states, jobs, make.day)
        problem = problem.with_matrices({"van": CoordinateTravelTimes().compute(problem.locations, "van", 8)})
        parts = split(problem.input, 15)
        assert len(parts) == 3
        assert sorted(j.id for p in parts for j in p.jobs) == sorted(j.id for j in problem.input.jobs)
        assert sorted(v.id for p in parts for v in p.vehicles) == sorted(v.id for v in problem.input.vehicles)
        assert all(len(p.jobs) <= 15 and p.vehicles for p in parts)


class TestModeFor:
    """Which search a re-plan request gets: from the routes (small churn) or afresh (bounded, split)."""

    @staticmethod
    def day(make: Any, placed: int, pending: int) -> Any:
        jobs = {
            f"o{i}": JobRow(order_id=f"o{i}", status="planned" if i < placed else "pending")
            for i in range(placed + pending)
        }
        stops = [{"order_id": f"o{i}"} for i in range(placed)]
        routes = {"v1": RouteRow(id="r1", vehicle_id="v1", status="planned", snapshot={"stops": stops})}
        return Day(make.depot, make.day, [make.van()], jobs, routes if placed else {}, {})

    def test_a_day_without_routes_is_planned_as_a_wave(self, make: Any) -> None:
        assert mode_for("replan", self.day(make, 0, 30)) == "wave"

    def test_a_few_new_orders_are_fitted_into_the_routes(self, make: Any) -> None:
        assert mode_for("replan", self.day(make, 300, 20)) == "replan"
        assert mode_for("replan", self.day(make, 10, 40)) == "replan"  # few, though more than on routes

    def test_a_morning_batch_after_the_first_hundred_is_planned_afresh(self, make: Any) -> None:
        assert mode_for("replan", self.day(make, 100, 1200)) == "wave"
        assert mode_for("wave", self.day(make, 300, 1)) == "wave"


class TestVehicleState:
    def test_deliveries_on_a_route_under_way_are_on_board_even_before_the_tracker_says_so(
        self, make: Any
    ) -> None:
        jobs = {
            "o1": JobRow(order_id="o1", status="out", vehicle_id="veh_1", order={"kind": "delivery"}),
            "o2": JobRow(order_id="o2", status="planned", vehicle_id="veh_1", order={"kind": "delivery"}),
            "r1": JobRow(order_id="r1", status="planned", vehicle_id="veh_1", order={"kind": "return"}),
        }
        stops = [{"order_id": o} for o in ("o1", "o2", "r1")]
        route = RouteRow(id="r", vehicle_id="veh_1", status="started", snapshot={"stops": stops})
        day = Day(make.depot, make.day, [make.van()], jobs, {"veh_1": route}, {})
        state = vehicle_state(day, make.van(), make.at(11), 600)
        assert state.started
        assert state.loaded == ("o1", "o2")  # the return is still at the customer's


class TestLeastLate:
    """`_least_late` evaluates insertions with its own arithmetic: it must choose what `timeline` would."""

    @staticmethod
    def _reference(inp: Any, vehicle: Any, route: list[int], job: int, where: int) -> int:
        def key(position: int) -> tuple[int, float, bool]:
            steps = timeline(inp, vehicle, [*route[:position], job, *route[position:]], set())
            late = sum(int(v["duration"]) for step in steps for v in step["violations"])
            span = int(steps[-1]["arrival"]) - int(steps[0]["arrival"])
            return late, route_cost(vehicle, span, int(steps[-1]["distance"])), position != where

        return min(range(len(route) + 1), key=key)

    def test_chooses_the_position_timeline_would_on_random_routes(self) -> None:
        rng = random.Random(5)
        for case in range(60):
            size = rng.randint(3, 14)
            points = [(rng.uniform(0, 8000), rng.uniform(0, 8000)) for _ in range(size + 1)]
            metres = [[int(math.dist(a, b)) for b in points] for a in points]
            matrix = Matrix.of([[m // 7 for m in row] for row in metres], metres)
            jobs = []
            for i in range(1, size + 1):
                start = rng.randint(0, 6) * 1800
                windows = ((start, start + rng.choice((1800, 3600, 7200))),)
                if rng.random() < 0.2:
                    windows = (*windows, (start + 10800, start + 14400))
                jobs.append(SolverJob(i, i, rng.randint(60, 400), (1,), (0,), windows))
            vehicle = SolverVehicle(
                1, "car", 0, None if case % 3 == 0 else 0, (100,), (0, 86400), per_km=rng.choice((0, 300))
            )
            inp = SolverInput(tuple(jobs), (vehicle,), {"car": matrix})
            order = list(range(1, size + 1))
            rng.shuffle(order)
            job = order.pop(rng.randrange(size))
            where = rng.randint(0, len(order))
            chosen = planning._least_late(inp, {j.id: j for j in jobs}, vehicle, order, job, where)
            assert chosen == self._reference(inp, vehicle, order, job, where), case
