"""The solver's process: a plan's work runs there, below the services' priority when asked."""

from __future__ import annotations

import os

from lastmile.planner.solver import SolverPool
from lastmile.planner.travel import CachedTravelTimes, CoordinateTravelTimes, OsrmTravelTimes, portable


async def test_a_worker_runs_at_the_niceness_asked_for() -> None:
    pool = SolverPool(workers=1, nice=7)
    try:
        worker = await pool.run(os.nice, 0)  # os.nice(0) answers the calling process's niceness
    finally:
        pool.close()
    assert worker == os.nice(0) + 7


def test_only_travel_times_without_io_are_computed_in_the_solver_process() -> None:
    coordinates = CoordinateTravelTimes(detour=1.5)
    assert portable(CachedTravelTimes(coordinates)) is coordinates
    assert portable(coordinates) is coordinates
    assert portable(CachedTravelTimes(OsrmTravelTimes("http://127.0.0.1:9", {"van": "driving"}))) is None
