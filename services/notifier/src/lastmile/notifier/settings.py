"""Notifier's settings (`LASTMILE_*`)."""

from typing import Literal

from lastmile.common.settings import CommonSettings


class NotifierSettings(CommonSettings):
    service: str = "notifier"
    port: int = 8004
    database_url: str = "sqlite+aiosqlite:///var/notifier.db"
    channel: Literal["file"] = "file"
    file_outbox_dir: str = "var/outbox"
    send_batch: int = 200
