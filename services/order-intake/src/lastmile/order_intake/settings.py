"""Order intake's settings (`LASTMILE_*`)."""

from lastmile.common.settings import CommonSettings


class IntakeSettings(CommonSettings):
    service: str = "order-intake"
    port: int = 8001
    database_url: str = "sqlite+aiosqlite:///var/order-intake.db"
    tracking_base_url: str = "http://127.0.0.1:8003/track/"
