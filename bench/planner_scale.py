"""The planner at city scale: a generated day of 2,000 stops and 60 vehicles planned as a wave, then one new
order inserted into a running day of 1,000 planned stops, and whether solving blocks the event loop.

    python bench/planner_scale.py [--stops 2000 --vehicles 60] [--running 1000 --inserts 20]

Each figure runs the planner's own path without the database: the problem built from jobs and vehicles
(`planning.build_problem`), the matrix from the built-in coordinates provider, the engines (`solver.solve`)
and the answer read back (`planning.read_solution`); re-plans also keep promises and sequences as the service
does. Prints one line per figure; `make bench-planner` appends them to var/bench/planner.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from lastmile.planner import domain, insertion, planning
from lastmile.planner.solver import InlineSolver, SolveOptions, SolverPool, solve
from lastmile.planner.travel import CoordinateTravelTimes

TZ = "Europe/Berlin"
DAY = date(2026, 12, 1)
DEPOT = domain.DepotSpec(id="dep", name="City", lat=52.52, lon=13.40, timezone=TZ, service_radius_km=20)


def at(hour: float) -> datetime:
    return datetime(2026, 12, 1, tzinfo=ZoneInfo(TZ)) + timedelta(hours=hour)


def city(stops: int, seed: int = 7) -> list[domain.JobSpec]:
    """Stops within 12 km of the depot, denser in the centre; 60 % with a 2-hour window, the rest all day."""
    rng = random.Random(seed)
    jobs = []
    for i in range(stops):
        r, a = 12_000 * rng.random() ** 0.7, rng.random() * 6.283
        lat = DEPOT.lat + r * math.sin(a) / 111_000
        lon = DEPOT.lon + r * math.cos(a) / 68_000
        if rng.random() < 0.6:
            start = rng.choice([9, 10, 11, 12, 13, 14, 15, 16])
            windows = ((at(start), at(start + 2)),)
        else:
            windows = ((at(9), at(18)),)
        jobs.append(
            domain.JobSpec(
                order_id=f"o{i}",
                kind="return" if rng.random() < 0.05 else "delivery",
                lat=lat,
                lon=lon,
                windows=windows,
                service_s=rng.choice([120, 180, 240]),
                parcels=rng.choice([1, 1, 1, 2, 3]),
                weight_kg=rng.uniform(0.5, 12),
                volume_l=rng.uniform(2, 40),
            )
        )
    return jobs


def fleet(vehicles: int) -> list[domain.VehicleSpec]:
    return [
        domain.VehicleSpec(
            id=f"v{k:02d}", depot_id="dep", shift_start="08:00", shift_end="19:00", capacity_parcels=120
        )
        for k in range(vehicles)
    ]


def with_matrices(problem: planning.Problem, hour: int) -> planning.Problem:
    travel = CoordinateTravelTimes()
    return problem.with_matrices(
        {p: travel.compute(problem.locations, p, hour) for p in problem.input.profiles}
    )


def wave(stops: int, vehicles: int, budget: float, exploration: int) -> tuple[planning.Plan, float, str]:
    began = time.perf_counter()
    states = [planning.VehicleState(v) for v in fleet(vehicles)]
    problem = with_matrices(planning.build_problem(DEPOT, states, city(stops), DAY), 8)
    solved = solve(problem.input, SolveOptions(mode="wave", exploration=exploration, seconds=budget))
    plan = planning.read_solution(problem, solved.solution, 1800)
    return plan, time.perf_counter() - began, f"{solved.engine} {solved.candidates}"


def running_day(
    planned: planning.Plan, now: datetime
) -> tuple[list[planning.VehicleState], dict[str, tuple[datetime, datetime]]]:
    """Every route started at `now`: stops before `now` done, the rest on board and promised."""
    specs = {v.id: v for v in fleet(len(planned.routes) + 60)}
    states: list[planning.VehicleState] = []
    promised: dict[str, tuple[datetime, datetime]] = {}
    for route in planned.routes:
        left = [s for s in route.stops if s.arrival >= now]
        done = [s for s in route.stops if s.arrival < now]
        position = (done[-1].lat, done[-1].lon) if done else None
        states.append(
            planning.VehicleState(
                specs[route.vehicle_id],
                started=True,
                position=position,
                loaded=tuple(s.order_id for s in left if s.kind == "delivery"),
                route=tuple(s.order_id for s in left),
                done=len(done),
            )
        )
        promised |= {s.order_id: s.promised for s in left}
    return states, promised


def insert_one(
    states: list[planning.VehicleState],
    jobs: list[domain.JobSpec],
    promised: dict[str, tuple[datetime, datetime]],
    new: domain.JobSpec,
    now: datetime,
) -> tuple[float, bool, int]:
    began = time.perf_counter()
    problem = planning.build_problem(DEPOT, states, [*jobs, new], DAY, now=now, promised=promised)
    problem = with_matrices(problem, now.astimezone(ZoneInfo(TZ)).hour)
    quick = insertion.insert_new(problem.input)  # the service's path for new orders: insert, else re-plan
    solution = (
        quick
        if quick is not None
        else solve(problem.input, SolveOptions(mode="replan", exploration=1)).solution
    )
    late = planning.broken_promises(problem, solution)
    if late and (inp := planning.with_late_stops(problem, solution, late)) is not None:
        solution = planning.merge_checked(solution, solve(inp, SolveOptions(mode="check")).solution)
    solution = planning.keep_sequences(problem, solution, 0.02)
    plan = planning.read_solution(problem, solution, 1800)
    seconds = time.perf_counter() - began
    before = {s.vehicle.id: list(s.route) for s in states}
    after = {r.vehicle_id: [s.order_id for s in r.stops if s.order_id != new.order_id] for r in plan.routes}
    return (
        seconds,
        new.order_id not in plan.unassigned and quick is not None,
        len(domain.stops_moved(before, after)),
    )


async def loop_stall(solver: InlineSolver | SolverPool, problem: planning.Problem) -> tuple[float, float]:
    """Longest gap between 10 ms ticks of the event loop while one solve runs, and the solve's time."""
    gaps: list[float] = []
    done = False

    async def tick() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    began = time.perf_counter()
    await solver.solve(problem.input, SolveOptions(mode="wave", exploration=3, hgs=False))
    took = time.perf_counter() - began
    done = True
    await ticker
    return max(gaps), took


async def stalls(stops: int) -> list[str]:
    states = [planning.VehicleState(v) for v in fleet(max(2, stops // 30))]
    problem = with_matrices(planning.build_problem(DEPOT, states, city(stops), DAY), 8)
    pool = SolverPool(1)
    await pool.solve(problem.input, SolveOptions(mode="check"))  # start the worker outside the measurement
    lines = []
    for name, solver in (("thread (asyncio.to_thread)", InlineSolver()), ("process pool", pool)):
        gap, took = await loop_stall(solver, problem)
        lines.append(
            f"event loop, {stops}-stop solve in a {name}: longest stall {gap * 1000:.0f} ms, solve {took:.2f} s"
        )
    pool.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stops", type=int, default=2000)
    parser.add_argument("--vehicles", type=int, default=60)
    parser.add_argument("--budget", type=float, default=25.0)
    parser.add_argument("--exploration", type=int, default=1)
    parser.add_argument("--running", type=int, default=1000)
    parser.add_argument("--inserts", type=int, default=20)
    parser.add_argument("--stall-stops", type=int, default=300)
    args = parser.parse_args()

    plan, seconds, engines = wave(args.stops, args.vehicles, args.budget, args.exploration)
    served = sum(len(r.stops) for r in plan.routes)
    print(
        f"wave: {args.stops} stops, {args.vehicles} vehicles: {seconds:.1f} s, {served} served, "
        f"{len(plan.routes)} routes, unassigned {len(plan.unassigned)}; engines {engines}",
        flush=True,
    )

    base, _, _ = wave(
        args.running, max(1, args.running * args.vehicles // args.stops), args.budget / 2, args.exploration
    )
    now = at(11)
    states, promised = running_day(base, now)
    jobs_by_id = {j.order_id: j for j in city(args.running)}
    open_jobs = [jobs_by_id[o] for s in states for o in s.route]
    rng = random.Random(3)
    times, placed, moved = [], 0, []
    for k in range(args.inserts):
        new = domain.JobSpec(
            order_id=f"new{k}",
            kind="return",
            lat=52.52 + rng.uniform(-0.06, 0.06),
            lon=13.40 + rng.uniform(-0.1, 0.1),
            windows=((at(12), at(18)),),
            service_s=180,
            parcels=1,
            weight_kg=2.0,
        )
        took, ok, n_moved = insert_one(states, open_jobs, promised, new, now)
        times.append(took)
        placed += ok
        moved.append(n_moved)
    times.sort()
    p95 = times[max(0, round(0.95 * len(times)) - 1)]
    print(
        f"insert one order into a running day of {len(open_jobs)} open stops ({sum(s.done for s in states)} done): "
        f"p50 {statistics.median(times):.2f} s, p95 {p95:.2f} s, max {times[-1]:.2f} s; inserted without re-plan {placed}/{args.inserts}; "
        f"stops moved per insert: median {statistics.median(moved)}, max {max(moved)}",
        flush=True,
    )
    for line in asyncio.run(stalls(args.stall_stops)):
        print(line, flush=True)


if __name__ == "__main__":
    main()
