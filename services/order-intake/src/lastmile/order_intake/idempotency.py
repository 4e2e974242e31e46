"""Idempotent writes: a write's answer is stored with its effects in one transaction, under the merchant's
`Idempotency-Key`; the same key and request get those bytes again (and cause nothing), the same key with
another request is refused with 422."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common.db import Database
from lastmile.common.errors import FieldProblem, Unprocessable
from lastmile.order_intake.caches import Merchant
from lastmile.order_intake.store import IntakeStore, StoredResponse


@dataclass(frozen=True)
class Reply:
    status_code: int
    body: bytes
    replayed: bool = False


@dataclass(frozen=True)
class Idempotency:
    key: str
    request_hash: str

    @classmethod
    def of(cls, key: str | None, method: str, path: str, body: bytes) -> Idempotency | None:
        """The same key and the same request (method, path, body byte for byte) replay the first answer."""
        if key is None:
            return None
        if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
            raise Unprocessable(
                "Idempotency-Key must be 1 to 255 printable ASCII characters",
                code="validation-error",
                errors=[FieldProblem(pointer="#/header/idempotency-key", detail="1 to 255 printable ASCII")],
            )
        digest = hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()
        return cls(key, digest)

    def replay(self, stored: StoredResponse) -> Reply:
        """The stored answer, if it answered this same request."""
        if stored.request_hash != self.request_hash:
            raise IdempotencyMismatch(
                f"Idempotency-Key {self.key!r} was first used with another request (method, path or body); "
                "use a new key for a new request"
            )
        return Reply(stored.status_code, stored.body, replayed=True)


class IdempotencyMismatch(Unprocessable):
    code, title = "idempotency-key-reused", "Idempotency-Key reused with another request"


Write = Callable[[AsyncSession], Awaitable[Reply]]


async def commit(
    db: Database, idem: Idempotency | None, merchant: Merchant, now: datetime, write: Write
) -> Reply:
    """In one transaction: replay the stored answer, or run `write` and store its answer with its effects.

    A concurrent twin that committed first makes ours fail on the key's primary key: we replay its answer.
    """
    try:
        async with db.transaction() as session:
            store = IntakeStore(session)
            if idem is not None:
                stored = await store.stored_response(merchant.id, idem.key)
                if stored is not None:
                    return idem.replay(stored)
            reply = await write(session)
            if idem is not None:
                await store.store_response(
                    merchant.id, idem.key, idem.request_hash, reply.status_code, reply.body, now
                )
            return reply
    except IntegrityError:
        if idem is not None:
            async with db.read() as session:
                stored = await IntakeStore(session).stored_response(merchant.id, idem.key)
            if stored is not None:
                return idem.replay(stored)
        raise
