"""Notifier's HTTP routes (ops): the notification log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from lastmile.common.auth import OpsAuth
from lastmile.common.errors import problem_responses
from lastmile.notifier.handlers import Deps
from lastmile.notifier.store import NotifierStore


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]
router = APIRouter(tags=["ops"])


class NotificationOut(BaseModel):
    id: str
    order_id: str
    kind: str
    channel: str
    status: str
    created_at: datetime
    sent_at: datetime | None


@router.get("/v1/notifications", responses=problem_responses(401))
async def list_notifications(order_id: str, deps: DepsDep, _: OpsAuth) -> list[NotificationOut]:
    """Every message for an order, with its state (addresses are not shown)."""
    async with deps.db.read() as session:
        rows = await NotifierStore(session).for_order(order_id)
    return [NotificationOut.model_validate(r, from_attributes=True) for r in rows]
