"""Customers' consent and providers' reports: SMS keywords (STOP, START), one-click email unsubscribe, and
Twilio's status callbacks."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.db import Database
from lastmile.common.errors import NotFound
from lastmile.notifier import consent, sms
from lastmile.notifier.metrics import OPT_OUTS, PROVIDER_STATUS
from lastmile.notifier.sender import SOURCE
from lastmile.notifier.store import NotificationRow, NotifierStore

if TYPE_CHECKING:
    from lastmile.notifier.handlers import Deps

log = logging.getLogger(__name__)


async def opt_out(channel: str, hashed: str, source: str, deps: Deps) -> None:
    """Never message this address on this channel again; its unsent messages are suppressed now."""
    async with deps.db.transaction() as session:
        if await NotifierStore(session).opt_out(channel, hashed, source, deps.clock.now()):
            Database.after_commit(session, OPT_OUTS.labels(channel, source).inc)


async def unsubscribe(token: str, deps: Deps) -> str:
    """The one-click link of an email (RFC 8058); returns the channel unsubscribed."""
    found = consent.read_unsubscribe_token(deps.settings.unsubscribe_key(), token)
    if found is None:
        raise NotFound("This unsubscribe link is not valid")
    channel, hashed = found
    await opt_out(channel, hashed, "link", deps)
    return channel


def valid_unsubscribe_token(token: str, deps: Deps) -> bool:
    return consent.read_unsubscribe_token(deps.settings.unsubscribe_key(), token) is not None


async def inbound_sms(sender: str, body: str, opt_out_type: str | None, deps: Deps) -> str | None:
    """A text a customer sent to our number: STOP (and its synonyms) opts out, START opts back in."""
    word = consent.keyword(body, opt_out_type)
    hashed = consent.address_hash("sms", sender)
    if word == "stop":
        await opt_out("sms", hashed, "sms-keyword", deps)
    elif word == "start":
        async with deps.db.transaction() as session:
            await NotifierStore(session).opt_in("sms", hashed)
    return word


async def provider_status(
    notification_id: str, message_sid: str, status: str, error_code: str | None, deps: Deps
) -> None:
    """Twilio's report on one message: its delivery state moves forward only; a final failure is announced."""
    PROVIDER_STATUS.labels(status if status in sms.STATUS_RANK else "other").inc()
    now = deps.clock.now()
    async with deps.db.transaction() as session:
        row = await session.get(NotificationRow, notification_id)
        if row is None or row.channel != "sms" or (row.provider_id and row.provider_id != message_sid):
            log.warning("status callback for an unknown message %s", notification_id)
            return
        if not sms.later(row.delivery_status, status):
            return
        first_failure = status in sms.FAILED_STATUSES and row.delivery_status not in sms.FAILED_STATUSES
        row.delivery_status = status
        row.provider_id = row.provider_id or message_sid
        if not first_failure:
            return
        row.error = f"twilio {status}" + (f" (error {error_code})" if error_code else "")
        outbox.add(
            session,
            ev.NotificationFailed(
                notification_id=row.id,
                order_id=row.order_id,
                channel=row.channel,
                kind=row.kind,
                error=row.error,
                at=now,
            ),
            source=SOURCE,
        )
        unsubscribed = error_code == str(sms.UNSUBSCRIBED)
        if unsubscribed and await NotifierStore(session).opt_out("sms", row.to_hash, "provider", now):
            Database.after_commit(session, OPT_OUTS.labels("sms", "provider").inc)
