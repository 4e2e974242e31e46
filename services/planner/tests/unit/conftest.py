"""Helpers for the planner's unit tests: a depot, vehicles and jobs in Berlin, and one call that plans them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from lastmile.planner import domain, planning
from lastmile.planner.solver import SolveOptions, solve
from lastmile.planner.travel import CoordinateTravelTimes

BERLIN = ZoneInfo("Europe/Berlin")
DAY = date(2026, 12, 1)
DEPOT = domain.DepotSpec(id="dep_1", name="Mitte", lat=52.52, lon=13.40, timezone="Europe/Berlin")


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 1, hour, minute, tzinfo=BERLIN)


def job(order_id: str, lat: float = 52.53, lon: float = 13.41, **kw: Any) -> domain.JobSpec:
    values: dict[str, Any] = {
        "kind": "delivery",
        "windows": ((at(10), at(18)),),
        "service_s": 180,
        "parcels": 1,
        "weight_kg": 2.0,
    }
    values.update(kw)
    return domain.JobSpec(order_id=order_id, lat=lat, lon=lon, **values)


def van(vehicle_id: str = "veh_1", **kw: Any) -> domain.VehicleSpec:
    return domain.VehicleSpec(id=vehicle_id, depot_id="dep_1", **kw)


def with_matrices(problem: planning.Problem) -> planning.Problem:
    travel = CoordinateTravelTimes()
    depart = problem.now.hour if problem.now else 8
    return problem.with_matrices(
        {p: travel.compute(problem.locations, p, depart) for p in problem.input.profiles}
    )


def plan(
    problem: planning.Problem, mode: str = "wave", seconds: float = 0.3, min_saving: float = 0.02
) -> planning.Plan:
    """The planner's path without I/O: engines, broken promises checked in plan mode, churn kept small."""
    problem = with_matrices(problem)
    solution = solve(problem.input, SolveOptions(mode=mode, seconds=seconds)).solution  # type: ignore[arg-type]
    late = planning.broken_promises(problem, solution)
    if late and (inp := planning.with_late_stops(problem, solution, late)) is not None:
        solution = planning.merge_checked(solution, solve(inp, SolveOptions(mode="check")).solution)
    if mode == "replan":
        solution = planning.keep_sequences(problem, solution, min_saving)
    return planning.read_solution(problem, solution, margin_s=1800)


class Make:
    """Builders the tests share (test modules cannot import each other)."""

    depot = DEPOT
    day = DAY
    at = staticmethod(at)
    job = staticmethod(job)
    van = staticmethod(van)


@pytest.fixture
def make() -> Make:
    return Make()


@pytest.fixture
def planner() -> Callable[..., planning.Plan]:
    def run(
        vehicles: list[domain.VehicleSpec] | list[planning.VehicleState],
        jobs: list[domain.JobSpec],
        *,
        mode: str = "wave",
        now: datetime | None = None,
        promised: dict[str, tuple[datetime, datetime]] | None = None,
        depot: domain.DepotSpec = DEPOT,
    ) -> planning.Plan:
        states = [v if isinstance(v, planning.VehicleState) else planning.VehicleState(v) for v in vehicles]
        problem = planning.build_problem(depot, states, jobs, DAY, now=now, promised=promised)
        return plan(problem, mode)

    return run
