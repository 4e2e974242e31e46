"""Where messages go, behind one small interface: the file outbox (embedded default)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import anyio

from lastmile.notifier.store import NotificationRow


class Channel(Protocol):
    async def send(self, message: NotificationRow) -> str:
        """Deliver; return the provider's id for the message. Raise to retry later."""


class FileChannel:
    """One JSON file per message under a folder, so `make run` shows what customers would receive."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    async def send(self, message: NotificationRow) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {
            "id": message.id,
            "order_id": message.order_id,
            "channel": message.channel,
            "kind": message.kind,
            "to": message.to,
            "subject": message.subject,
            "body": message.body,
            "created_at": message.created_at.isoformat(),
        }
        path = (
            self.folder / f"{message.id}.json"
        )  # named by notification id: a resend overwrites, never doubles
        tmp = path.with_suffix(".tmp")
        await anyio.Path(tmp).write_text(json.dumps(record, ensure_ascii=False, indent=1))
        await anyio.Path(tmp).rename(path)
        return f"file:{path.name}"
