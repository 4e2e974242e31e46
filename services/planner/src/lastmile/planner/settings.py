"""Planner's settings (`LASTMILE_*`)."""

from typing import Literal

from pydantic import Field

from lastmile.common.settings import CommonSettings


class PlannerSettings(CommonSettings):
    service: str = "planner"
    port: int = 8002
    database_url: str = "sqlite+aiosqlite:///var/planner.db"
    replan_debounce_s: float = 0.5
    # A depot-day re-planned because vans run late waits this long (clock seconds) after its last plan: a late van
    # reports its stops one after another, and each plan of the day is the same answer to the same news.
    replan_delay_interval_s: float = Field(default=900.0, ge=0)
    # A partition's events handled in one transaction: a morning batch of orders and the fleet's positions are
    # a commit per hundred, not per event (one commit per event held the planner to ~20 events/s on SQLite).
    consumer_batch: int = Field(default=100, ge=1)
    # Engines: VROOM's exploration level for waves and for re-plans during the day; PyVRP's time for a wave.
    solver_exploration: int = 3
    replan_exploration: int = 2
    solver_threads: int = 1
    # a wave's budget for its engines, at most: it takes 1 s + 10 ms per stop up to this
    solver_timeout_s: float = Field(default=25.0, ge=0.1)
    wave_hgs: bool = True  # run PyVRP beside VROOM on waves
    # 0: one worker process shared by every planner of the process (tests, which start hundreds)
    solver_processes: int = Field(default=1, ge=0)
    # a solve with no answer after this long has its worker stopped, and the plan is retried (see SolverPool)
    solver_deadline_s: float = Field(default=300.0, gt=0)
    # the solver's processes run at this lower priority (Unix niceness): answers before re-plans
    solver_nice: int = Field(default=0, ge=0, le=19)
    # Re-planning: a route keeps its order unless re-sequencing saves this share of its cost.
    replan_min_saving: float = 0.02
    position_max_age_s: int = 600  # an older reported position is not "where the vehicle is"
    wave_check_s: float = 30.0
    promise_margin_s: int = 30 * 60
    # Travel times: coordinates (built in), or a road network server.
    travel: Literal["coordinates", "osrm", "valhalla"] = "coordinates"
    travel_url: str = ""
    travel_block: int = 100
    travel_cache: int = 32
    detour_factor: float = 1.35
