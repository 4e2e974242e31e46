"""A plan's CPU-bound steps, run in the solver's process: the travel-time matrices, the engines, promises kept,
small churn kept, and the plan read from the solution.

Each step is Python or numpy and takes up to seconds on a big day. In a thread of the service each one held the
GIL against the event loop, and the loop, each time it let the GIL go for a socket or a SQLite statement, then
waited for it again (Python's switch interval, 5 ms): in the embedded mode every service's answers queued behind
the re-plans, which run back to back through a busy day. Here the service sends the problem (a few hundred
kilobytes, without matrices) and gets the plan back; the operating system shares the cores between the two
processes, and the solver's process may run at a lower priority (`solver_nice`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from lastmile.planner import planning
from lastmile.planner.planning import Plan, Problem
from lastmile.planner.solver import Solved, SolveOptions, solve
from lastmile.planner.travel import CoordinateTravelTimes


class Steps(dict[str, float]):
    """Wall seconds per step of a run, each lap since the one before."""

    def __init__(self) -> None:
        super().__init__()
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self[step] = self.get(step, 0.0) + now - self._last
        self._last = now

    def merge(self, laps: Mapping[str, float], rest: str) -> None:
        """Laps timed elsewhere (in the solver's process) since the last one here; what they do not account for
        (sending the problem and the plan between the processes, waiting for a free worker) goes to `rest`."""
        now = time.perf_counter()
        for step, seconds in laps.items():
            self[step] = self.get(step, 0.0) + seconds
        self[rest] = self.get(rest, 0.0) + max(0.0, now - self._last - sum(laps.values()))
        self._last = now


@dataclass(frozen=True)
class PlanJob:
    problem: Problem  # with its matrices when `travel` is None
    options: SolveOptions  # the engines' (a wave's or a re-plan's)
    insert_first: bool  # try placing new orders between the stops as they are before a re-plan
    left_out: frozenset[str]  # orders a plan already could not place (the insertion may leave them out again)
    keep_churn: bool  # a re-plan keeps a route's sequence unless the new one saves enough
    min_saving: float
    promise_margin_s: int
    travel: CoordinateTravelTimes | None  # computes the matrices here: no I/O, so no need of the service


@dataclass(frozen=True)
class Computed:
    plan: Plan
    solved: Solved
    steps: dict[str, float]


def compute(job: PlanJob) -> Computed:
    steps = Steps()
    problem = job.problem
    if job.travel is not None:
        hour = problem.departure().hour
        travel = job.travel
        problem = problem.with_matrices(
            {p: travel.compute(problem.locations, p, hour) for p in problem.input.profiles}
        )
        steps.lap("matrices")
    began = time.perf_counter()
    solved: Solved | None = None
    if job.insert_first:
        quick = solve(problem.input, replace(job.options, mode="insert")).solution or None
        # a new order that does not fit as the routes stand: VROOM re-plans
        if quick is not None and not any(
            problem.jobs[u["id"] - 1].order_id not in job.left_out for u in quick["unassigned"]
        ):
            solved = Solved(quick, "insertion", time.perf_counter() - began, {})
    if solved is None:
        solved = solve(problem.input, job.options)
    steps.lap("engines")
    solution = solved.solution
    late = planning.broken_promises(problem, solution)
    if late and (inp := planning.with_late_stops(problem, solution, late)) is not None:
        checked = solve(inp, SolveOptions(mode="check"))
        solution = planning.merge_checked(solution, checked.solution)
    steps.lap("promises")
    if job.keep_churn:
        solution = planning.keep_sequences(problem, solution, job.min_saving)
        steps.lap("keep")
    plan = planning.read_solution(problem, solution, job.promise_margin_s)
    steps.lap("read")
    return Computed(plan, solved, dict(steps))
