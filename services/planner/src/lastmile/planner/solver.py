"""The VROOM adapter (pyvroom): a solver-neutral Problem in, VROOM's JSON-shaped solution out."""

from __future__ import annotations

from typing import Any, Protocol

import vroom

from lastmile.planner.domain import Problem
from lastmile.planner.travel import TravelTimes


class Solver(Protocol):
    def solve(self, problem: Problem) -> dict[str, Any]: ...


class VroomSolver:
    def __init__(self, travel: TravelTimes, *, exploration: int = 3, threads: int = 1) -> None:
        self.travel = travel
        self.exploration = exploration
        self.threads = threads

    def solve(self, problem: Problem) -> dict[str, Any]:
        if not problem.solver_jobs or not problem.solver_vehicles:
            return {"routes": [], "unassigned": [{"id": j.id} for j in problem.solver_jobs]}
        inp = vroom.Input()
        for profile in sorted({v.profile for v in problem.solver_vehicles}):
            matrix = self.travel.matrix(problem.locations, profile)
            inp.set_durations_matrix(profile=profile, matrix_input=matrix.durations)
            inp.set_distances_matrix(profile=profile, matrix_input=matrix.distances)
        inp.add_vehicle(
            [
                vroom.Vehicle(
                    v.id,
                    start=v.start,
                    end=v.end,
                    profile=v.profile,
                    capacity=list(v.capacity),
                    skills=set(v.skills),
                    time_window=vroom.TimeWindow(*v.window),
                )
                for v in problem.solver_vehicles
            ]
        )
        inp.add_job(
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
                for j in problem.solver_jobs
            ]
        )
        solution = inp.solve(exploration_level=self.exploration, nb_threads=self.threads)
        result: dict[str, Any] = solution.to_dict()
        return result
