"""Where messages go, behind one small interface; the file outbox (the embedded default) lives here too."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio


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
        await anyio.Path(self.folder).mkdir(parents=True, exist_ok=True)
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
        tmp = path.with_suffix(".tmp")
        await anyio.Path(tmp).write_text(json.dumps(record, ensure_ascii=False, indent=1))
        await anyio.Path(tmp).rename(path)
        return f"file:{path.name}"

    async def close(self) -> None:
        return None
