"""Notifier's HTTP routes for ops (the notification log), customers (unsubscribe links) and Twilio (status
callbacks and inbound messages, checked by their signature). Merchants' routes are in `api_merchants.py`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from lastmile.common.auth import OpsAuth
from lastmile.common.errors import LastmileError, Unauthorized, Unprocessable, problem_responses
from lastmile.notifier import handlers_consent, sms
from lastmile.notifier.handlers import Deps
from lastmile.notifier.store import NotifierStore


async def get_deps(request: Request) -> Deps:  # async: FastAPI runs plain functions in a thread pool
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]
router = APIRouter()


class NotificationOut(BaseModel):
    id: str
    order_id: str
    kind: str
    channel: str
    status: str
    delivery_status: str | None
    language: str
    attempts: int
    error: str | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None


@router.get("/v1/notifications", tags=["ops"], responses=problem_responses(401, 422))
async def list_notifications(
    deps: DepsDep,
    _: OpsAuth,
    order_id: str | None = None,
    status: str | None = Query(None, description="e.g. `failed`, `pending`, `suppressed`"),
    limit: int = Query(200, ge=1, le=1000),
) -> list[NotificationOut]:
    """Messages for an order, or every message in a state (addresses are not shown)."""
    if order_id is None and status is None:
        raise Unprocessable("Give order_id, status, or both")
    async with deps.db.read() as session:
        rows = await NotifierStore(session).notifications(order_id=order_id, status=status, limit=limit)
    return [NotificationOut.model_validate(r, from_attributes=True) for r in rows]


# ---------------------------------------------------------------------------------------------------------
# Customers: the one-click unsubscribe link of every email (RFC 8058)

_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family:Arial,Helvetica,sans-serif;max-width:480px;margin:40px auto">{body}</body></html>"""


@router.get("/v1/unsubscribe/{token}", tags=["customers"], response_class=HTMLResponse)
async def unsubscribe_page(token: str, deps: DepsDep) -> HTMLResponse:
    """A page with one button: a GET never unsubscribes (mail scanners follow links)."""
    if not handlers_consent.valid_unsubscribe_token(token, deps):
        return HTMLResponse(_PAGE.format(title="Link not valid", body="<p>This link is not valid.</p>"), 404)
    form = (
        '<p>Stop receiving delivery emails at this address?</p><form method="post">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return HTMLResponse(_PAGE.format(title="Unsubscribe", body=form))


@router.post("/v1/unsubscribe/{token}", tags=["customers"], response_class=HTMLResponse)
async def unsubscribe(token: str, deps: DepsDep) -> HTMLResponse:
    """One-click unsubscribe (`List-Unsubscribe=One-Click`, RFC 8058), also the page's button."""
    try:
        await handlers_consent.unsubscribe(token, deps)
    except LastmileError:
        return HTMLResponse(_PAGE.format(title="Link not valid", body="<p>This link is not valid.</p>"), 404)
    body = "<p>You are unsubscribed: no more delivery emails will be sent to this address.</p>"
    return HTMLResponse(_PAGE.format(title="Unsubscribed", body=body))


# ---------------------------------------------------------------------------------------------------------
# Twilio: status callbacks and inbound messages (form-encoded, signed with X-Twilio-Signature)

TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def twilio_form(request: Request, deps: DepsDep) -> dict[str, str]:
    """The request's form fields, once its X-Twilio-Signature is checked against the URL Twilio called."""
    params = parse_qsl((await request.body()).decode(), keep_blank_values=True)
    settings = deps.settings
    if settings.twilio_validate_signatures:
        url = settings.base_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        token = settings.twilio_auth_token.get_secret_value()
        if not sms.valid_signature(token, url, params, request.headers.get("x-twilio-signature")):
            raise Unauthorized("X-Twilio-Signature does not match")
    return dict(params)


TwilioForm = Annotated[dict[str, str], Depends(twilio_form)]


@router.post(
    "/v1/providers/twilio/status", tags=["providers"], status_code=204, responses=problem_responses(401)
)
async def twilio_status(form: TwilioForm, deps: DepsDep, notification: str = Query(...)) -> Response:
    """Twilio's StatusCallback for one message: queued, sent, delivered, undelivered, failed."""
    await handlers_consent.provider_status(
        notification,
        form.get("MessageSid", ""),
        form.get("MessageStatus", form.get("SmsStatus", "")),
        form.get("ErrorCode") or None,
        deps,
    )
    return Response(status_code=204)


@router.post("/v1/providers/twilio/inbound", tags=["providers"], responses=problem_responses(401))
async def twilio_inbound(form: TwilioForm, deps: DepsDep) -> Response:
    """A customer's text to our number; STOP ends SMS to that number, START resumes them."""
    await handlers_consent.inbound_sms(
        form.get("From", ""), form.get("Body", ""), form.get("OptOutType"), deps
    )
    return Response(TWIML_EMPTY, media_type="text/xml")
