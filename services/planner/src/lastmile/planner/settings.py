"""Planner's settings (`LASTMILE_*`)."""

from lastmile.common.settings import CommonSettings


class PlannerSettings(CommonSettings):
    service: str = "planner"
    port: int = 8002
    database_url: str = "sqlite+aiosqlite:///var/planner.db"
    replan_debounce_s: float = 0.5
    solver_exploration: int = 3
    solver_threads: int = 1
    solver_timeout_s: float = 10.0
    promise_margin_s: int = 30 * 60
    detour_factor: float = 1.35
