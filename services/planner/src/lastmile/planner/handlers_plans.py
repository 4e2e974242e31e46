"""Planning a depot-day: load the day, solve it (waves: VROOM and PyVRP; re-plans: VROOM from the current
routes), keep promises and small churn, then save routes and plan records and emit routes.v1 and deliveries.v1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import Counter, Histogram

from lastmile.common.ids import new_id
from lastmile.planner import domain, planning
from lastmile.planner import handlers_routes as routes_mod
from lastmile.planner.compute import PlanJob, Steps, compute
from lastmile.planner.handlers import DONE, OPEN, Deps
from lastmile.planner.planning import Plan, Problem, VehicleState
from lastmile.planner.problem import Matrix
from lastmile.planner.solver import Solved, SolveOptions
from lastmile.planner.store import JobRow, PlannerStore, PlanRow, PositionRow, RouteRow
from lastmile.planner.travel import portable

SOLVE_SECONDS = Histogram(
    "lastmile_planner_solve_duration_seconds",
    "Time the engines took for one depot-day",
    ["depot", "mode"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
REPLANS = Counter(
    "lastmile_planner_replans_total", "Plans and re-plans run, by what started them", ["depot", "trigger"]
)
STOPS_MOVED = Counter(
    "lastmile_planner_stops_moved_total", "Planned stops a re-plan moved, by why", ["depot", "trigger"]
)
ENGINE_WINS = Counter(
    "lastmile_planner_engine_wins_total", "Plans kept, by the engine that found them", ["engine"]
)


@dataclass(frozen=True)
class Day:
    """A depot-day as stored: what a plan starts from."""

    depot: domain.DepotSpec
    day: date
    vehicles: list[domain.VehicleSpec]
    jobs: dict[str, JobRow]
    routes: dict[str, RouteRow]
    positions: dict[str, PositionRow]


@dataclass
class Outcome:
    plan: Plan
    solved: Solved
    problem: Problem
    moved: set[str] = field(default_factory=set)
    # wall seconds of each step of the run (load, problem, matrices, engines, promises, save): where a slow
    # re-plan spends its time, on the plan record for ops
    steps: Steps = field(default_factory=Steps)

    def result(self) -> dict[str, Any]:
        return {
            "engine": self.solved.engine,
            "solve_s": round(self.solved.seconds, 3),
            "steps_s": {k: round(v, 3) for k, v in self.steps.items()},
            "candidates": self.solved.candidates,
            "stops_moved": len(self.moved),
            "jobs": len(self.problem.jobs) + len(self.problem.skipped),
            "fleet": [_as_seen(s) for s in self.problem.states],
        }


def _as_seen(state: VehicleState) -> dict[str, Any]:
    """What the plan knew of a vehicle: whether it had left, stood loading at the depot (and could take more
    parcels), where it was, what it carried. Why a van waiting at the depot took none of the orders a plan left
    unassigned is read here, not guessed from the routes afterwards."""
    return {
        "vehicle_id": state.vehicle.id,
        "started": state.started,
        "at_depot": state.at_depot,
        "located": state.position is not None,
        "on_board": len(state.loaded),
        "open_stops": len(state.route),
        "done": state.done,
    }


async def load_day(deps: Deps, depot_id: str, day: date) -> Day | None:
    async with deps.db.read() as session:
        store = PlannerStore(session)
        depot = await store.depot(depot_id)
        if depot is None:
            return None
        vehicles = [v.to_spec() for v in await store.vehicles(depot_id)]
        jobs = {j.order_id: j for j in await store.jobs(depot_id, day)}
        routes = {r.vehicle_id: r for r in await store.routes(depot_id, day) if r.status != "cancelled"}
        positions = await store.positions([v.id for v in vehicles])
    return Day(depot.to_spec(), day, vehicles, jobs, routes, positions)


def problem_of(day: Day, now: datetime, max_age_s: int) -> Problem:
    """The day as the engines' problem: open jobs, each vehicle from where it is, promises as constraints."""
    during = day.day <= now.astimezone(ZoneInfo(day.depot.timezone)).date()
    states = [vehicle_state(day, v, now, max_age_s) for v in day.vehicles]
    open_jobs = [j for j in day.jobs.values() if j.status in OPEN]
    promised = {j.order_id: p for j in open_jobs if j.status in ("planned", "out") and (p := j.promised)}
    return planning.build_problem(
        day.depot,
        states,
        [j.to_spec() for j in open_jobs],
        day.day,
        now=now if during else None,
        promised=promised,
    )


# a vehicle reported this close to its depot, before its first stop, is still loading: it can take more parcels
AT_DEPOT_M = 150.0


def vehicle_state(day: Day, vehicle: domain.VehicleSpec, now: datetime, max_age_s: int) -> VehicleState:
    route = day.routes.get(vehicle.id)
    mine = [j for j in day.jobs.values() if j.vehicle_id == vehicle.id]
    loaded = tuple(sorted(j.order_id for j in mine if j.status == "out"))
    started = bool(loaded) or (route is not None and route.status == "started")
    order = route.order_ids() if route is not None else []
    open_route = tuple(o for o in order if o in day.jobs and day.jobs[o].status in OPEN)
    done = [j for j in mine if j.status in DONE]
    position = None
    if started:
        seen = day.positions.get(vehicle.id)
        if seen is not None and (now - seen.recorded_at).total_seconds() <= max_age_s:
            position = (seen.lat, seen.lon)
        elif done:  # no fresh position: the last stop it finished
            last = max(done, key=lambda j: j.done_at or now).to_spec()
            position = (last.lat, last.lon)
    at_depot = (
        started
        and position is not None
        and not done
        and domain.great_circle_m(position, (day.depot.lat, day.depot.lon)) <= AT_DEPOT_M
    )
    if started and not at_depot:
        # A delivery on a vehicle that has set out is on board, announced out for delivery or not yet (the
        # tracker's word may still be on its way): moving it would send a second van for a parcel the first
        # one carries, and the first driver's result would be refused.
        riding = (o for o in open_route if day.jobs[o].order.get("kind", "delivery") == "delivery")
        loaded = tuple(sorted({*loaded, *riding}))
    return VehicleState(vehicle, started, position, loaded, open_route, len(done), at_depot)


# what a quick insertion answers: new orders, cancellations, and a re-plan asked for with nothing else new
INSERTABLE = {"order_created", "order_cancelled", "restart", "on_demand"}


async def solve_day(
    deps: Deps,
    problem: Problem,
    mode: str,
    triggers: frozenset[str] = frozenset(),
    left_out: frozenset[str] = frozenset(),
    steps: Steps | None = None,
) -> Outcome:
    """`left_out`: orders a plan already could not place; the quick insertion may leave them out again
    without calling for a full re-plan (which would then run on every new order of a day with one).

    The work itself runs in the solver's process (`compute`); only a road server's matrices are fetched here."""
    s = deps.settings
    steps = Steps() if steps is None else steps
    travel = portable(deps.travel)
    sent = problem
    if travel is None:
        depart = problem.departure()
        matrices: dict[str, Matrix] = {}
        for profile in problem.input.profiles:
            matrices[profile] = await deps.travel.matrix(problem.locations, profile, depart)
        sent = problem.with_matrices(matrices)
        steps.lap("matrices")
    options = SolveOptions(
        mode="wave" if mode == "wave" else "replan",
        exploration=s.solver_exploration if mode == "wave" else s.replan_exploration,
        threads=s.solver_threads,
        seconds=min(s.solver_timeout_s, 1.0 + 0.01 * len(problem.jobs)),
        hgs=s.wave_hgs,
    )
    job = PlanJob(
        problem=sent,
        options=options,
        insert_first=mode == "replan" and triggers <= INSERTABLE,
        left_out=left_out,
        keep_churn=mode != "wave",
        min_saving=s.replan_min_saving,
        promise_margin_s=s.promise_margin_s,
        travel=travel,
    )
    computed = await deps.solver.run(compute, job)
    steps.merge(computed.steps, "handoff")
    laps = computed.steps
    SOLVE_SECONDS.labels(problem.depot.id, mode).observe(
        laps.get("engines", 0.0) + laps.get("promises", 0.0) + laps.get("keep", 0.0)
    )
    ENGINE_WINS.labels(computed.solved.engine).inc()
    return Outcome(computed.plan, computed.solved, problem, steps=steps)


# below this many waiting orders a re-plan always starts from the routes (few new orders: small churn)
REPLAN_WAITING = 50


def mode_for(kind: str, day: Day) -> str:
    """A wave (or an on-demand plan) searches afresh; a re-plan starts from the routes as they are, unless more
    new orders wait than the routes hold (a morning batch after the first hundred were planned): VROOM's re-plan
    from routes has no bound on building around them (1,200 new stops onto 100 planned took 101 s under load),
    while a wave is split into parts and bounded by its budget. Promises stay hard windows either way."""
    if kind in ("wave", "on_demand"):
        return "wave"
    if not any(r.snapshot.get("stops") for r in day.routes.values()):
        return "wave"
    placed = sum(1 for j in day.jobs.values() if j.status in ("planned", "out"))
    waiting = sum(1 for j in day.jobs.values() if j.status == "pending")  # never planned yet
    return "wave" if waiting > max(placed, REPLAN_WAITING) else "replan"


# ---------------------------------------------------------------------------------------------------------
# Saving a plan: routes (new versions only where something changed), promises, reasons, the plan record


@dataclass(frozen=True)
class Run:
    """One run of the planner for a depot-day, and the plan records it answers."""

    depot_id: str
    day: date
    kind: str  # wave | on_demand | replan
    triggers: dict[str, int]
    plan_ids: tuple[str, ...]
    wave: str | None = None


async def save_plan(deps: Deps, run: Run, outcome: Outcome) -> None:
    now = deps.clock.now()
    plan, depot = outcome.plan, outcome.problem.depot
    steps = outcome.steps
    async with deps.db.transaction() as session:
        steps.lap("save_lock")
        store = PlannerStore(session)
        # the day's jobs locked before any route: the order the event handlers take them in
        jobs = {j.order_id: j for j in await store.jobs(run.depot_id, run.day, lock=True)}
        routes = {r.vehicle_id: r for r in await store.routes(run.depot_id, run.day, lock=True)}
        steps.lap("save_load")
        before = {
            v: [o for o in r.order_ids() if _open(jobs, o)]
            for v, r in routes.items()
            if r.status != "cancelled"
        }
        after = {r.vehicle_id: [s.order_id for s in r.stops if _open(jobs, s.order_id)] for r in plan.routes}
        outcome.moved = domain.stops_moved(before, after)
        rows = await _plan_rows(store, run, now)
        reason = ", ".join(sorted(run.triggers)) or run.kind
        for planned in plan.routes:
            stops = [s for s in planned.stops if _open(jobs, s.order_id)]
            if not stops:
                continue
            route = routes.get(planned.vehicle_id)
            moved_here = len(outcome.moved & {s.order_id for s in stops})
            route = routes_mod.save_route(
                session, route, planned, stops, jobs, depot, run.day, rows[0].id, reason, moved_here, now
            )
            routes[planned.vehicle_id] = route
            for stop in stops:
                routes_mod.schedule(session, jobs[stop.order_id], stop, route, run.day, run.depot_id)
        routes_mod.cancel_emptied(session, routes, set(after), jobs, now)
        for order_id, (why, detail) in plan.unassigned.items():
            job = jobs.get(order_id)
            if job is not None and _open(jobs, order_id):
                routes_mod.unassign(session, job, why, detail)
        _record(rows, outcome, plan, now)
        steps.lap("save_build")
    for trigger, count in run.triggers.items() or {run.kind: 1}.items():
        REPLANS.labels(run.depot_id, trigger).inc(count)
    if outcome.moved:
        STOPS_MOVED.labels(run.depot_id, reason).inc(len(outcome.moved))


def _open(jobs: dict[str, JobRow], order_id: str) -> bool:
    job = jobs.get(order_id)
    return job is not None and job.status in OPEN


async def _plan_rows(store: PlannerStore, run: Run, now: datetime) -> list[PlanRow]:
    rows = [row for plan_id in run.plan_ids if (row := await store.plan(plan_id)) is not None]
    if not rows:
        row = PlanRow.queued(new_id("pln"), run.depot_id, run.day, run.kind, run.triggers, now, run.wave)
        row.status = "running"
        store.session.add(row)
        rows = [row]
    return rows


def _record(rows: list[PlanRow], outcome: Outcome, plan: Plan, now: datetime) -> None:
    vehicles = {s.vehicle.id: s.vehicle for s in outcome.problem.states}
    per_route = [
        (
            vehicles[r.vehicle_id],
            r.distance_m,
            r.duration_s,
            int((r.end_at - r.start_at).total_seconds()),
            len(r.stops),
            sum(1 for s in r.stops if s.lateness_s > 0),
        )
        for r in plan.routes
    ]
    for r in per_route:
        routes_mod.ROUTE_DISTANCE.labels(outcome.problem.depot.id).observe(r[1])
        routes_mod.ROUTE_DURATION.labels(outcome.problem.depot.id).observe(r[3])
    kpis = domain.kpis(per_route, plan.unassigned)
    for row in rows:
        row.status, row.finished_at = "done", now
        row.result = {**outcome.result(), "kpis": kpis.to_dict(), "moved": sorted(outcome.moved)[:500]}
