"""Building VROOM's problem and reading its answer; reasons for orders left out."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from lastmile.planner import domain
from lastmile.planner.solver import VroomSolver
from lastmile.planner.travel import CoordinateTravelTimes

BERLIN = ZoneInfo("Europe/Berlin")
DAY = date(2026, 12, 1)
DEPOT = domain.DepotSpec(id="dep_1", name="Mitte", lat=52.52, lon=13.40, timezone="Europe/Berlin")


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 1, hour, minute, tzinfo=BERLIN)


def job(order_id: str, lat: float = 52.53, lon: float = 13.41, **kw: object) -> domain.JobSpec:
    values: dict[str, object] = {
        "kind": "delivery",
        "windows": ((at(10), at(18)),),
        "service_s": 180,
        "parcels": 1,
        "weight_kg": 2.0,
    }
    values.update(kw)
    return domain.JobSpec(order_id=order_id, lat=lat, lon=lon, **values)  # type: ignore[arg-type]


def van(vehicle_id: str = "veh_1", **kw: object) -> domain.VehicleSpec:
    return domain.VehicleSpec(id=vehicle_id, depot_id="dep_1", **kw)  # type: ignore[arg-type]


def solve(vehicles: list[domain.VehicleSpec], jobs: list[domain.JobSpec]) -> domain.Plan:
    problem = domain.build_problem(DEPOT, vehicles, jobs, DAY)
    solution = VroomSolver(CoordinateTravelTimes()).solve(problem)
    return domain.read_solution(problem, solution, margin_s=1800)


class TestBuildProblem:
    def test_times_are_seconds_from_local_midnight(self) -> None:
        problem = domain.build_problem(DEPOT, [van()], [job("o1")], DAY)
        assert problem.solver_jobs[0].windows == ((10 * 3600, 18 * 3600),)
        assert problem.solver_vehicles[0].window == (8 * 3600, 18 * 3600)

    def test_ready_at_moves_the_earliest_start(self) -> None:
        problem = domain.build_problem(DEPOT, [van()], [job("o1", ready_at=at(12))], DAY)
        assert problem.solver_jobs[0].windows == ((12 * 3600, 18 * 3600),)

    def test_returns_are_pickups_and_deliveries_are_deliveries(self) -> None:
        problem = domain.build_problem(DEPOT, [van()], [job("d"), job("r", kind="return")], DAY)
        assert problem.solver_jobs[0].delivery == (1, 2000)
        assert problem.solver_jobs[1].pickup == (1, 2000)
        assert problem.solver_jobs[1].delivery == (0, 0)


class TestPlan:
    def test_every_job_is_on_a_route_with_a_promise_inside_its_window(self) -> None:
        plan = solve([van()], [job(f"o{i}", lat=52.52 + i * 0.003) for i in range(6)])
        assert not plan.unassigned
        stops = [s for r in plan.routes for s in r.stops]
        assert sorted(s.order_id for s in stops) == [f"o{i}" for i in range(6)]
        for stop in stops:
            assert at(10) <= stop.promised[0] <= stop.arrival <= stop.promised[1] <= at(18)
            assert (stop.promised[1] - stop.promised[0]).total_seconds() <= 3600

    def test_arrivals_follow_the_route_order(self) -> None:
        plan = solve([van()], [job(f"o{i}", lat=52.52 + i * 0.01) for i in range(4)])
        arrivals = [s.arrival for s in plan.routes[0].stops]
        assert arrivals == sorted(arrivals)
        legs = sum(s.leg_distance_m for s in plan.routes[0].stops)
        assert 0 < legs < plan.routes[0].distance_m  # the drive back to the depot is the rest


class TestUnassignedReasons:
    def test_no_vehicle_has_the_skills(self) -> None:
        plan = solve([van()], [job("cold", skills=("cold_chain",))])
        assert plan.unassigned["cold"][0] == "no_vehicle_with_skills"

    def test_too_large_for_any_vehicle(self) -> None:
        plan = solve([van(capacity_kg=100)], [job("piano", weight_kg=400)])
        assert plan.unassigned["piano"][0] == "too_large"

    def test_window_outside_every_shift(self) -> None:
        plan = solve([van()], [job("late", windows=((at(19), at(21)),))])
        assert plan.unassigned["late"][0] == "outside_shifts"

    def test_capacity_exhausted(self) -> None:
        plan = solve([van(capacity_parcels=2)], [job(f"o{i}") for i in range(3)])
        assert list(plan.unassigned.values()) == [
            ("capacity_or_time_exhausted", "the fleet's capacity and time that day are used by other orders")
        ]

    def test_no_vehicle_at_all(self) -> None:
        plan = solve([], [job("o1")])
        assert plan.unassigned["o1"][0] == "no_vehicle"
