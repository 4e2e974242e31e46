"""Read routes: the customer's tracking page (HTML, JSON, live events; the token in the URL is the credential)
and ops' views of the fleet (ops token)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from lastmile.common.auth import OpsAuth
from lastmile.common.errors import NotFound, Unprocessable, problem_responses
from lastmile.tracker import handlers_views, page
from lastmile.tracker.api import DepsDep
from lastmile.tracker.domain_views import TrackingView

router = APIRouter()
TOKEN_CHARS = 200


def _not_found() -> HTMLResponse:
    return HTMLResponse(page.render_not_found(), status_code=404, headers=page.headers(None, None))


@router.get("/track/{token}", tags=["customers"], response_class=HTMLResponse, include_in_schema=False)
async def tracking_page(token: str, deps: DepsDep) -> HTMLResponse:
    """The customer's page: status, promised window, live ETA, and the vehicle when it is near."""
    found = await handlers_views.tracked(token, deps) if len(token) <= TOKEN_CHARS else None
    if found is None:
        return _not_found()
    nonce = page.new_nonce()
    body = page.render_tracking(found.view, nonce)
    return HTMLResponse(body, headers=page.headers(nonce, deps.settings.tracking_tiles_url))


@router.get("/track/{token}/events", tags=["customers"], response_class=EventSourceResponse)
async def tracking_events(token: str, deps: DepsDep) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events for the tracking page: `update` (the view) when it changes, `gone` when the link stops
    working."""
    yield ServerSentEvent(retry=3000, comment="lastmile")
    async for view in handlers_views.tracking_updates(token[:TOKEN_CHARS], deps):
        if view is None:
            yield ServerSentEvent(event="gone", raw_data="{}")
            return
        yield ServerSentEvent(event="update", raw_data=view.model_dump_json())


@router.get("/v1/track/{token}", tags=["customers"], responses=problem_responses(404))
async def tracking_json(token: str, deps: DepsDep) -> TrackingView:
    """The tracking page's content as JSON."""
    found = await handlers_views.tracked(token, deps) if len(token) <= TOKEN_CHARS else None
    if found is None:
        raise NotFound("Unknown or expired tracking link")
    return found.view


@router.get("/v1/vehicles", tags=["ops"], responses=problem_responses(401))
async def fleet(deps: DepsDep, _: OpsAuth) -> list[dict[str, Any]]:
    """Every vehicle's live position now, with the route it is on."""
    return await handlers_views.fleet(deps)


@router.get("/v1/vehicles/stream", tags=["ops"], response_class=EventSourceResponse)
async def fleet_stream(deps: DepsDep, _: OpsAuth) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: `position` each time a vehicle's live position moves."""
    yield ServerSentEvent(retry=3000, comment="lastmile")
    async for position in handlers_views.positions_updates(deps):
        yield ServerSentEvent(event="position", data=position)


@router.get("/v1/vehicles/{vehicle_id}/position", tags=["ops"], responses=problem_responses(401, 404))
async def vehicle_position(vehicle_id: str, deps: DepsDep, _: OpsAuth) -> dict[str, Any]:
    """One vehicle's live position (its latest plausible fix)."""
    return await handlers_views.position(vehicle_id, deps)


@router.get("/v1/vehicles/{vehicle_id}/track", tags=["ops"], responses=problem_responses(401, 422))
async def vehicle_track(
    vehicle_id: str,
    deps: DepsDep,
    _: OpsAuth,
    since: Annotated[datetime | None, Query(description="Default: an hour ago")] = None,
    until: Annotated[datetime | None, Query(description="Default: now")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 2000,
) -> list[dict[str, Any]]:
    """One vehicle's stored positions in a time range, oldest first (suspect ones flagged)."""
    until = until or deps.clock.now()
    since = since or until - timedelta(hours=1)
    if since.tzinfo is None or until.tzinfo is None:
        raise Unprocessable("since and until need a time zone", code="naive-time")
    return await handlers_views.track(vehicle_id, since, until, limit, deps)
