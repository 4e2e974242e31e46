"""The engines behind one call: VROOM (pyvroom) always, PyVRP beside it for waves; the better feasible plan wins.

Engines run in a separate process (`SolverPool`): pyvroom holds the GIL while it solves, which would stall the
event loop (HTTP, consumers, relay) for the whole solve if it ran in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Literal, TypeVar

import vroom

from lastmile.planner import hgs
from lastmile.planner.insertion import insert_new
from lastmile.planner.problem import SolverInput, SolverVehicle, merge, score, split

Mode = Literal["wave", "replan", "check", "insert"]
A = TypeVar("A")
R = TypeVar("R")


@dataclass(frozen=True)
class SolveOptions:
    mode: Mode = "wave"
    exploration: int = 3
    threads: int = 1
    seconds: float = 5.0  # a wave's time budget: PyVRP gets what VROOM leaves of it
    hgs: bool = True  # run PyVRP beside VROOM when the input is within what it models
    hgs_max_jobs: int = 400  # beyond this PyVRP needs far more than a wave's budget to catch up with VROOM
    large: int = 500  # from this many jobs VROOM builds one start (level 0) to stay within the budget
    seed_hgs: bool = True  # start PyVRP from VROOM's plan
    vroom_share: float = 0.3  # of a wave's budget when PyVRP runs too
    split_above: int = 800  # a bigger wave is solved as parts of about `split_size` jobs, then joined
    split_size: int = 500


@dataclass(frozen=True)
class Solved:
    solution: dict[str, Any]
    engine: str  # "vroom" | "pyvrp" | "plan" (VROOM's plan mode)
    seconds: float
    candidates: dict[str, float]  # engine → cost of its plan, for the record


def vroom_input(inp: SolverInput, *, with_initial: bool, fixed: bool = False) -> vroom.Input:
    problem = vroom.Input()
    for profile in inp.profiles:
        matrix = inp.matrices[profile]
        problem.set_durations_matrix(profile=profile, matrix_input=matrix.durations)
        problem.set_distances_matrix(profile=profile, matrix_input=matrix.distances)
    problem.add_vehicle([_vehicle(v, with_initial or fixed, fixed) for v in inp.vehicles])
    problem.add_job(
        [
            vroom.Job(
                j.id,
                location=j.location,
                default_service=j.service,
                delivery=list(j.delivery),
                pickup=list(j.pickup),
                skills=set(j.skills),
                priority=j.priority,
                time_windows=[vroom.TimeWindow(*w) for w in j.windows],
            )
            for j in inp.jobs
        ]
    )
    return problem


def _vehicle(v: SolverVehicle, steps: bool, fixed: bool) -> vroom.Vehicle:
    extra: dict[str, Any] = {}
    if v.max_tasks is not None:
        extra["max_tasks"] = v.max_tasks
    if v.max_travel_time is not None:
        extra["max_travel_time"] = v.max_travel_time
    if v.max_distance is not None:
        extra["max_distance"] = v.max_distance
    if steps and v.initial:
        # in plan mode VROOM would rather start before the shift than arrive late: the start is where it is now
        start = vroom.VehicleStep("start", service_at=v.window[0]) if fixed else vroom.VehicleStep("start")
        extra["steps"] = [
            start,
            *(vroom.VehicleStep("single", i) for i in v.initial),
            vroom.VehicleStep("end"),
        ]
    return vroom.Vehicle(
        v.id,
        start=v.start,
        end=v.end,
        profile=v.profile,
        capacity=list(v.capacity),
        skills=set(v.skills),
        time_window=vroom.TimeWindow(*v.window),
        breaks=[
            vroom.Break(b.id, [vroom.TimeWindow(*w) for w in b.windows], service=b.service) for b in v.breaks
        ],
        costs=vroom.VehicleCosts(fixed=v.fixed_cost, per_hour=v.per_hour, per_km=v.per_km),
        **extra,
    )


def solve_vroom(inp: SolverInput, options: SolveOptions) -> dict[str, Any]:
    if not inp.jobs or not inp.vehicles:
        return {"routes": [], "unassigned": [{"id": j.id} for j in inp.jobs]}
    initial = options.mode == "replan" and any(v.initial for v in inp.vehicles)
    level = options.exploration if len(inp.jobs) < options.large else 0
    # VROOM's timeout bounds its local search, not the construction before it (seconds on a big day); a
    # re-plan gets the whole budget (it had none: a large one could search for minutes)
    share = (options.vroom_share if _with_hgs(inp, options) else 0.45) if options.mode == "wave" else 1.0
    timeout = timedelta(seconds=options.seconds * share)
    try:
        problem = vroom_input(inp, with_initial=initial)
        solution = problem.solve(exploration_level=level, nb_threads=options.threads, timeout=timeout)
    except Exception:
        if not initial:
            raise
        # VROOM refuses initial routes it finds infeasible (a promise that can no longer be kept): start afresh
        problem = vroom_input(inp, with_initial=False)
        solution = problem.solve(exploration_level=level, nb_threads=options.threads, timeout=timeout)
    result: dict[str, Any] = solution.to_dict()
    return result


def check(inp: SolverInput) -> dict[str, Any]:
    """VROOM's plan mode: the vehicles' `initial` routes as they are, with arrivals and lateness ('delay')."""
    routed = [v for v in inp.vehicles if v.initial]
    if not routed:
        return {"routes": [], "unassigned": [{"id": j.id} for j in inp.jobs]}
    on_routes = {i for v in routed for i in v.initial}
    narrowed = SolverInput(
        jobs=tuple(j for j in inp.jobs if j.id in on_routes), vehicles=tuple(routed), matrices=inp.matrices
    )
    result: dict[str, Any] = vroom_input(narrowed, with_initial=False, fixed=True).check().to_dict()
    result["unassigned"] = [{"id": j.id} for j in inp.jobs if j.id not in on_routes]
    return result


def solve(inp: SolverInput, options: SolveOptions) -> Solved:
    """Plan with VROOM, and in a wave with PyVRP too when it applies; keep the better feasible plan."""
    began = time.perf_counter()
    if options.mode == "check":
        return Solved(check(inp), "plan", time.perf_counter() - began, {})
    if options.mode == "insert":  # pure Python, seconds on a big day: here, off the services' GIL
        inserted = insert_new(inp, partial=True)
        return Solved(inserted or {}, "insertion", time.perf_counter() - began, {})
    candidates: dict[str, dict[str, Any]] = {"vroom": _vroom_wave(inp, options)}
    if _with_hgs(inp, options):
        left = max(0.2, options.seconds - (time.perf_counter() - began))
        candidates["pyvrp"] = hgs.solve(inp, left, start=candidates["vroom"] if options.seed_hgs else None)
    scored = {name: score(inp, sol) for name, sol in candidates.items() if sol.get("feasible", True)}
    best = min(scored, key=lambda name: scored[name].key())
    costs = {name: round(s.cost, 2) for name, s in scored.items()}
    return Solved(candidates[best], best, time.perf_counter() - began, costs)


def _vroom_wave(inp: SolverInput, options: SolveOptions) -> dict[str, Any]:
    """A wave too big for one VROOM run within its budget: parts solved one by one, their leftovers then
    inserted wherever they fit on the joined routes."""
    pinned = any(v.initial for v in inp.vehicles)
    if options.mode != "wave" or pinned or len(inp.jobs) <= options.split_above:
        return solve_vroom(inp, options)
    parts = split(inp, options.split_size)
    share = replace(options, seconds=options.seconds / len(parts))
    joined = merge([solve_vroom(part, share) for part in parts])
    if not joined["unassigned"]:
        return joined
    routes = {r["vehicle"]: [s["id"] for s in r["steps"] if s["type"] == "job"] for r in joined["routes"]}
    seeded = replace(
        inp, vehicles=tuple(replace(v, initial=tuple(routes.get(v.id, ()))) for v in inp.vehicles)
    )
    return insert_new(seeded, partial=True) or joined


def _with_hgs(inp: SolverInput, options: SolveOptions) -> bool:
    return (
        options.mode == "wave" and options.hgs and len(inp.jobs) <= options.hgs_max_jobs and hgs.eligible(inp)
    )


class SolverStuck(RuntimeError):
    """A solve gave no answer within its deadline; its worker was stopped (the plan is retried)."""


class SolverPool:
    """One worker process per concurrent solve; started lazily, so apps that never plan never fork.

    A solve that outlives `deadline_s` has its workers killed: VROOM (1.15, as pyvroom ships it) can hang for
    good, rarely, with one of its threads waiting on a semaphore nobody releases, holding the GIL of the
    process it runs in. In a worker that costs a plan (the replanner retries with a fresh one); in the
    service's own process it froze everything, timeouts included (seen once in CI)."""

    def __init__(self, workers: int = 1, nice: int = 0, deadline_s: float = 300.0) -> None:
        self.workers, self.nice, self.deadline_s = workers, nice, deadline_s
        self._pool: ProcessPoolExecutor | None = None

    async def solve(self, inp: SolverInput, options: SolveOptions) -> Solved:
        return await self.run(_solve_packed, (inp, options))

    async def run(self, function: Callable[[A], R], argument: A) -> R:
        """`function(argument)` in a worker: both must pickle (a module's function, plain data)."""
        if self._pool is None:
            # spawn, not fork: forking a process that runs an event loop and database connections is unsafe
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(self.nice,),
            )
        pool = self._pool
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(pool, function, argument), self.deadline_s)
        except TimeoutError:
            self._kill(pool)
            raise SolverStuck(
                f"no answer within {self.deadline_s:g} s; the solver's workers were stopped"
            ) from None

    def _kill(self, pool: ProcessPoolExecutor) -> None:
        # the executor has no public way to stop a running task (Python 3.14 adds kill_workers)
        processes = list(getattr(pool, "_processes", {}).values())
        for process in processes:
            with contextlib.suppress(Exception):
                process.kill()
        for process in processes:
            with contextlib.suppress(Exception):
                process.join(1.0)  # SIGKILL lands within milliseconds; reaped, not left a zombie
        pool.shutdown(wait=False, cancel_futures=True)
        if self._pool is pool:
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class SharedSolver:
    """Every app of the process that has no pool of its own (`solver_processes=0`: the tests, which start
    hundreds of planners) shares one worker process, started once: a solve in the test's own thread could
    hang it past every timeout (see `SolverPool`)."""

    _pool: SolverPool | None = None

    def __init__(self, deadline_s: float = 300.0) -> None:
        self.deadline_s = deadline_s

    async def run(self, function: Callable[[A], R], argument: A) -> R:
        if SharedSolver._pool is None:
            SharedSolver._pool = SolverPool(workers=1)
        SharedSolver._pool.deadline_s = self.deadline_s
        return await SharedSolver._pool.run(function, argument)

    def close(self) -> None:
        pass  # shared: it lives as long as the process


class InlineSolver:
    """Solves in the calling thread (via asyncio.to_thread): for the benchmark's comparison only."""

    async def solve(self, inp: SolverInput, options: SolveOptions) -> Solved:
        return await asyncio.to_thread(solve, inp, options)

    async def run(self, function: Callable[[A], R], argument: A) -> R:
        return await asyncio.to_thread(function, argument)

    def close(self) -> None:
        pass


def _solve_packed(args: tuple[SolverInput, SolveOptions]) -> Solved:
    return solve(*args)


def _worker_init(nice: int) -> None:
    """A planning process yields the cores to the services' event loops when both want them (`nice`), and
    ignores Ctrl-C, which reaches the whole process group: the service stops its workers itself (else a worker
    dies with a traceback mid-solve and the pool breaks while the service shuts down)."""
    if nice:
        os.nice(nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
