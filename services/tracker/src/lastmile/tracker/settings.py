"""Tracker's settings (`LASTMILE_*`)."""

from lastmile.common.settings import CommonSettings


class TrackerSettings(CommonSettings):
    service: str = "tracker"
    port: int = 8003
    database_url: str = "sqlite+aiosqlite:///var/tracker.db"
    max_future_skew_s: float = 120.0
    max_ping_age_s: float = 24 * 3600.0
    max_batch: int = 1000
