"""The solver's process: a plan's work runs there, below the services' priority when asked."""

from __future__ import annotations

import os
import time

import pytest

from lastmile.planner.solver import SharedSolver, SolverPool, SolverStuck
from lastmile.planner.travel import CachedTravelTimes, CoordinateTravelTimes, OsrmTravelTimes, portable


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # killed and not yet reaped: a zombie


async def test_a_worker_runs_at_the_niceness_asked_for() -> None:
    pool = SolverPool(workers=1, nice=7)
    try:
        worker = await pool.run(os.nice, 0)  # os.nice(0) answers the calling process's niceness
    finally:
        pool.close()
    assert worker == os.nice(0) + 7


async def test_a_solve_past_its_deadline_has_its_worker_killed_and_the_next_solve_gets_a_fresh_one() -> None:
    pool = SolverPool(workers=1, deadline_s=1.0)
    try:
        stuck = int(await pool.run(os.readlink, "/proc/self"))
        began = time.monotonic()
        with pytest.raises(SolverStuck):
            await pool.run(time.sleep, 60)  # stands for a VROOM solve that never returns
        assert time.monotonic() - began < 10
        assert not running(stuck), "the stuck worker is left spinning beside the service"
        fresh = int(await pool.run(os.readlink, "/proc/self"))
        assert fresh != stuck
    finally:
        pool.close()


async def test_planners_without_a_pool_of_their_own_share_one_worker_process() -> None:
    first, second = SharedSolver(), SharedSolver()
    worker = await first.run(os.readlink, "/proc/self")
    assert worker != str(os.getpid())  # /proc/self: the pid of the process that reads it
    assert await second.run(os.readlink, "/proc/self") == worker
    first.close()
    # closing one planner leaves the others theirs
    assert await second.run(os.readlink, "/proc/self") == worker


def test_only_travel_times_without_io_are_computed_in_the_solver_process() -> None:
    coordinates = CoordinateTravelTimes(detour=1.5)
    assert portable(CachedTravelTimes(coordinates)) is coordinates
    assert portable(coordinates) is coordinates
    assert portable(CachedTravelTimes(OsrmTravelTimes("http://127.0.0.1:9", {"van": "driving"}))) is None
