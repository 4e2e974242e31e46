"""Merchants' routes on the notifier (their order-intake API key): webhook subscriptions with their delivery
log, and their own message templates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, HttpUrl

from lastmile.common.auth import bearer_token
from lastmile.common.errors import problem_responses
from lastmile.notifier import handlers, handlers_webhooks
from lastmile.notifier.api import DepsDep
from lastmile.notifier.handlers import Merchant
from lastmile.notifier.store_webhooks import SubscriptionRow


async def merchant_auth(request: Request, deps: DepsDep) -> Merchant:
    return await handlers.authenticate_merchant(bearer_token(request), deps)


MerchantAuth = Annotated[Merchant, Depends(merchant_auth)]
router = APIRouter(tags=["merchants"])


class CreateSubscription(BaseModel):
    url: HttpUrl = Field(examples=["https://shop.example/hooks/lastmile"])
    event_types: list[str] = Field(
        min_length=1, examples=[["delivery.delivered", "delivery.failed"]], description='Or `["*"]` for all'
    )
    description: str = Field(default="", max_length=200)


class UpdateSubscription(BaseModel):
    url: HttpUrl | None = None
    event_types: list[str] | None = None
    description: str | None = Field(default=None, max_length=200)
    enabled: bool | None = Field(default=None, description="true re-enables a disabled subscription")


class SubscriptionOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str
    status: str
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    failures: int
    created_at: datetime


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="whsec_…: verifies our signatures (Standard Webhooks); shown once")


def _out(row: SubscriptionRow) -> SubscriptionOut:
    return SubscriptionOut.model_validate(row, from_attributes=True)


@router.post("/v1/webhooks", status_code=201, responses=problem_responses(401, 422))
async def create_webhook(
    body: CreateSubscription, merchant: MerchantAuth, deps: DepsDep
) -> SubscriptionCreated:
    """Subscribe a URL to events about your orders; deliveries are signed per Standard Webhooks."""
    row = await handlers_webhooks.create_subscription(
        merchant, str(body.url), body.event_types, body.description, deps
    )
    return SubscriptionCreated(**_out(row).model_dump(), secret=row.secret)


@router.get("/v1/webhooks", responses=problem_responses(401))
async def list_webhooks(merchant: MerchantAuth, deps: DepsDep) -> list[SubscriptionOut]:
    return [_out(r) for r in await handlers_webhooks.list_subscriptions(merchant, deps)]


@router.get("/v1/webhooks/{subscription_id}", responses=problem_responses(401, 404))
async def get_webhook(subscription_id: str, merchant: MerchantAuth, deps: DepsDep) -> SubscriptionOut:
    """A subscription with its state; a disabled one says why."""
    return _out(await handlers_webhooks.get_subscription(merchant, subscription_id, deps))


@router.patch("/v1/webhooks/{subscription_id}", responses=problem_responses(401, 404, 422))
async def update_webhook(
    subscription_id: str, body: UpdateSubscription, merchant: MerchantAuth, deps: DepsDep
) -> SubscriptionOut:
    changes = body.model_dump(exclude_none=True)
    if "url" in changes:
        changes["url"] = str(body.url)
    return _out(await handlers_webhooks.update_subscription(merchant, subscription_id, changes, deps))


@router.delete("/v1/webhooks/{subscription_id}", status_code=204, responses=problem_responses(401, 404))
async def delete_webhook(subscription_id: str, merchant: MerchantAuth, deps: DepsDep) -> Response:
    await handlers_webhooks.delete_subscription(merchant, subscription_id, deps)
    return Response(status_code=204)


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: str = Field(description="The webhook-id header: the same on every attempt")
    event_id: str
    event_type: str
    order_id: str
    status: str
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


@router.get("/v1/webhooks/{subscription_id}/deliveries", responses=problem_responses(401, 404))
async def webhook_deliveries(
    subscription_id: str, merchant: MerchantAuth, deps: DepsDep, limit: int = Query(50, ge=1, le=500)
) -> list[DeliveryOut]:
    """The delivery log, newest first, with every attempt's answer."""
    found = await handlers_webhooks.deliveries(merchant, subscription_id, limit, deps)
    return [
        DeliveryOut(
            id=d.id,
            event_id=d.event_id,
            event_type=d.event_type,
            order_id=d.order_id,
            status=d.status,
            attempts=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
            next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
        )
        for d, attempts in found
    ]


class TemplateIn(BaseModel):
    sms: str | None = Field(
        default=None, max_length=1000, examples=["$merchant: out for delivery, $arrival. $link"]
    )
    subject: str | None = Field(default=None, max_length=250)
    text: str | None = Field(default=None, max_length=4000, description="The email's paragraph")


class TemplateOut(TemplateIn):
    language: str
    kind: str
    updated_at: datetime


@router.get("/v1/templates", responses=problem_responses(401))
async def list_templates(merchant: MerchantAuth, deps: DepsDep) -> list[TemplateOut]:
    """Your own wordings; every other message uses the default text."""
    rows = await handlers.list_templates(merchant, deps)
    return [TemplateOut.model_validate(r, from_attributes=True) for r in rows]


@router.put("/v1/templates/{language}/{kind}", responses=problem_responses(401, 404, 422))
async def put_template(
    language: str, kind: str, body: TemplateIn, merchant: MerchantAuth, deps: DepsDep
) -> TemplateOut:
    """Your wording for one kind of message in one language. Placeholders: $merchant $name $link $date
    $window $arrival $eta. Unset fields keep the default."""
    row = await handlers.set_template(merchant, language, kind, body.model_dump(), deps)
    return TemplateOut.model_validate(row, from_attributes=True)


@router.delete("/v1/templates/{language}/{kind}", status_code=204, responses=problem_responses(401, 404))
async def delete_template(language: str, kind: str, merchant: MerchantAuth, deps: DepsDep) -> Response:
    await handlers.delete_template(merchant, language, kind, deps)
    return Response(status_code=204)
