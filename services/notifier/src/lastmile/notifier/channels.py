"""Where messages go, behind one small interface; the file outbox (the embedded default) lives here too."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class OutgoingMessage:
    id: str  # the notification id: the same on every attempt, so a channel can use it as an idempotency key
    order_id: str
    channel: str
    kind: str
    to: str
    body: str
    subject: str | None = None
    html: str | None = None
    language: str = "en"
    headers: dict[str, str] = field(default_factory=dict)


class SendError(Exception):
    """The provider did not take the message.

    `permanent`: retrying cannot help (an invalid number, a refused address). `ambiguous`: the provider may
    have taken it all the same (the request went out and no answer came back)."""

    def __init__(self, reason: str, *, permanent: bool = False, ambiguous: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.permanent, self.ambiguous = reason, permanent, ambiguous


class Channel(Protocol):
    # True when sending the same message id twice has one effect (the provider dedupes on it).
    idempotent: bool

    async def send(self, message: OutgoingMessage) -> str:
        """Deliver; return the provider's id for the message, or raise SendError."""

    async def close(self) -> None: ...


class FileChannel:
    """One JSON file per message under a folder, so `make run` shows what customers would receive.

    Named by notification id: sending again overwrites the same file, so this channel is idempotent."""

    idempotent = True

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    async def send(self, message: OutgoingMessage) -> str:
        record: dict[str, object] = {
            "id": message.id,
            "order_id": message.order_id,
            "channel": message.channel,
            "kind": message.kind,
            "to": message.to,
            "language": message.language,
            "body": message.body,
        }
        if message.channel == "email":
            record |= {"subject": message.subject, "html": message.html, "headers": message.headers}
        path = self.folder / f"{message.id}.json"
        # One hop to a thread per message, not one per file operation through anyio's thread limiter: FastAPI
        # shares that limiter, and a busy day's messages held its tokens while drivers' requests waited for one.
        await asyncio.to_thread(_write_atomically, path, json.dumps(record, ensure_ascii=False, indent=1))
        return f"file:{path.name}"

    async def close(self) -> None:
        return None


def _write_atomically(path: Path, text: str) -> None:
    """Readers never see half a message: written beside, then renamed over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
