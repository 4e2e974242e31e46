"""Notifier's use cases from events: contacts from orders.v1, messages (and webhooks) from deliveries.v1,
merchants' key hashes from merchants.v1; merchant authentication and templates from HTTP."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common.auth import hash_secret
from lastmile.common.bus import HandlerWithDeps
from lastmile.common.clock import Clock
from lastmile.common.db import Database
from lastmile.common.errors import NotFound, Unauthorized, Unprocessable
from lastmile.common.ids import new_id
from lastmile.notifier import consent, domain, templates
from lastmile.notifier.cache import TtlCache
from lastmile.notifier.channels import Channel
from lastmile.notifier.handlers_webhooks import WebhookDispatcher, enqueue_webhooks
from lastmile.notifier.metrics import DROPPED, MESSAGES
from lastmile.notifier.sender import Sender, unsubscribe_url
from lastmile.notifier.settings import NotifierSettings
from lastmile.notifier.store import ContactRow, NotifierStore, TemplateRow


@dataclass
class Deps:
    db: Database
    clock: Clock
    settings: NotifierSettings
    channels: dict[str, Channel]
    sender: Sender = field(init=False)
    webhooks: WebhookDispatcher = field(init=False)
    template_cache: TtlCache[str, dict[tuple[str, str], templates.Override]] = field(
        default_factory=lambda: TtlCache(10.0)
    )

    @functools.cached_property
    def policy(self) -> domain.Policy:
        """Built once (settings do not change): read for every event."""
        s = self.settings
        return domain.Policy(
            quiet_start=time.fromisoformat(s.quiet_hours_start),
            quiet_end=time.fromisoformat(s.quiet_hours_end),
            default_timezone=s.default_timezone,
            eta_threshold=timedelta(minutes=s.eta_threshold_minutes),
            eta_cap=s.eta_messages_cap,
            stale_after=timedelta(minutes=s.stale_after_minutes),
        )


@dataclass(frozen=True)
class Merchant:
    id: str
    name: str


# ---------------------------------------------------------------------------------------------------------
# Events


async def on_order(session: AsyncSession, envelope: ev.Envelope, event: ev.OrderSnapshot, deps: Deps) -> None:
    """Keep the recipient's contact and preferences (the newest version wins); replay what waited for it."""
    store = NotifierStore(session)
    if not session.info.get("orders_locked"):  # every order of the batch at once (one statement, sorted)
        batch = session.info.get("batch") or [event]
        await store.lock_orders([p.order_id for p in batch if isinstance(p, ev.OrderSnapshot)])
        session.info["orders_locked"] = True
    row = await store.contact(event.order_id)
    if row is not None and row.version >= event.version:
        return
    if row is None:
        row = ContactRow(order_id=event.order_id, status="received", eta_messages=0)
        session.add(row)
    row.merchant_id, row.merchant_name, row.version = event.merchant_id, event.merchant_name, event.version
    row.recipient, row.tracking_url = event.recipient.model_dump(mode="json"), event.tracking_url
    await session.flush()
    for raw in await store.take_deferred(event.order_id):
        deferred = ev.Envelope.model_validate(raw)
        await on_delivery_event(session, deferred, deferred.payload(), deps)


async def on_order_cancelled(
    session: AsyncSession, envelope: ev.Envelope, event: ev.OrderCancelled, deps: Deps
) -> None:
    row = await NotifierStore(session).contact(event.order_id)
    if row is not None:
        await notify(session, row, event, deps)


async def on_delivery_event(session: AsyncSession, envelope: ev.Envelope, event: Any, deps: Deps) -> None:
    """Record the messages the policy asks for (the sender delivers them after commit), and the webhooks."""
    store = NotifierStore(session)
    # Contact changes are written once for the whole batch of events, at commit.
    with session.no_autoflush:
        await _load_contacts(session)
        row = await store.contact(event.order_id)
        if row is None:  # wait for a transaction handling the order's own event, if one runs, then look again
            await store.lock_orders([event.order_id])
            row = await store.contact(event.order_id)
        if row is None:  # the order's own event has not arrived yet: keep this one until it does
            await store.defer(event.order_id, envelope.model_dump(mode="json"), deps.clock.now())
            return
        await notify(session, row, event, deps)
        await enqueue_webhooks(session, row.merchant_id, envelope, deps.webhooks)


async def _load_contacts(session: AsyncSession) -> None:
    """The contacts of every event in the batch, in one query (later lookups find them in the session)."""
    if "contacts" in session.info:
        return
    order_ids = {getattr(p, "order_id", None) for p in session.info.get("batch", ())} - {None}
    found = await NotifierStore(session).contacts([str(o) for o in order_ids]) if len(order_ids) > 1 else []
    session.info["contacts"] = found  # held here: the session's identity map keeps only weak references


async def on_merchant_keys(
    session: AsyncSession, envelope: ev.Envelope, event: ev.MerchantKeysChanged, deps: Deps
) -> None:
    """Merchants call /v1/webhooks with the API keys order intake issued: keep their hashes."""
    await NotifierStore(session).replace_keys(event.merchant_id, event.name, event.version, event.key_hashes)


async def notify(session: AsyncSession, row: ContactRow, event: ev.Payload, deps: Deps) -> None:
    policy = deps.policy
    recipient = ev.Recipient.model_validate(row.recipient)
    tz = domain.zone(recipient.timezone, policy)
    now = deps.clock.now()
    state = domain.OrderState(row.status, row.window_start, row.window_end, row.last_eta, row.eta_messages)
    decision = domain.decide(event, state, tz, now, policy)
    s = decision.state
    row.status, row.window_start, row.window_end = s.status, s.window_start, s.window_end
    row.last_eta, row.eta_messages = s.last_eta, s.eta_messages
    staged = _staged(session, deps)
    for d in decision.dropped:
        staged.counts.append(("none", d.kind, "dropped"))
        Database.after_commit(session, DROPPED.labels(d.kind, d.reason).inc)
    if decision.supersedes:
        staged.supersede(row.order_id, decision.supersedes)
    if decision.messages:
        staged.rows += await _messages(NotifierStore(session), row, recipient, tz, decision.messages, deps)


@dataclass
class Staged:
    """What a transaction's events ask to write to the log: written at commit, in a few statements for the
    whole batch of events rather than a few per event."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    moot: dict[str, set[str]] = field(default_factory=dict)  # order → kinds whose unsent messages are moot
    counts: list[tuple[str, str, str]] = field(default_factory=list)

    def supersede(self, order_id: str, kinds: tuple[str, ...]) -> None:
        self.moot.setdefault(order_id, set()).update(kinds)
        for r in self.rows:  # messages staged by earlier events of this batch
            if r["order_id"] == order_id and r["kind"] in kinds and r["status"] == "pending":
                r["status"], r["error"] = "dropped", "superseded by a later event"


def _staged(session: AsyncSession, deps: Deps) -> Staged:
    staged = session.info.get("notifier_staged")
    if staged is None:
        staged = session.info["notifier_staged"] = Staged()

        async def write(session: AsyncSession) -> None:
            await _write(session, session.info.pop("notifier_staged"), deps)

        session.info.setdefault("before_commit", []).append(write)
    assert isinstance(staged, Staged)
    return staged


async def _write(session: AsyncSession, staged: Staged, deps: Deps) -> None:
    store = NotifierStore(session)
    counts = staged.counts
    by_kinds: dict[tuple[str, ...], list[str]] = {}
    for order_id, moot in staged.moot.items():
        by_kinds.setdefault(tuple(sorted(moot)), []).append(order_id)
    for kinds, order_ids in by_kinds.items():
        counts += [(channel, kind, "dropped") for channel, kind in await store.supersede(order_ids, kinds)]
    seen: set[tuple[str, str, str]] = set()
    rows = []
    for r in staged.rows:  # the same message asked twice in one batch is one message
        if (identity := (r["order_id"], r["channel"], r["dedupe"])) not in seen:
            seen.add(identity)
            rows.append(r)
    new = await store.record([{k: v for k, v in r.items() if k != "held"} for r in rows])
    if any(r["id"] in new and r["status"] == "pending" for r in rows):
        Database.after_commit(session, deps.sender.wake)
    counts += [(r["channel"], r["kind"], _recorded(r)) for r in rows if r["id"] in new]
    tally = Counter(counts)
    if tally:

        def count() -> None:
            for labels, n in tally.items():
                MESSAGES.labels(*labels).inc(n)

        Database.after_commit(session, count)


def _recorded(row: dict[str, Any]) -> str:
    if row["status"] == "dropped":
        return "dropped"
    return "held" if row["held"] else "recorded"


async def _overrides(
    store: NotifierStore, merchant_id: str, deps: Deps
) -> dict[tuple[str, str], templates.Override]:
    """The merchant's own wordings by (language, kind), cached for a few seconds (read for every message)."""

    async def load() -> dict[tuple[str, str], templates.Override]:
        rows = await store.templates(merchant_id)
        return {(r.language, r.kind): templates.Override(r.sms, r.subject, r.text) for r in rows}

    return await deps.template_cache.get(merchant_id, load)


async def _messages(
    store: NotifierStore,
    contact: ContactRow,
    recipient: ev.Recipient,
    tz: Any,
    planned: tuple[domain.Planned, ...],
    deps: Deps,
) -> list[dict[str, Any]]:
    addresses = [
        (channel, address, consent.address_hash(channel, address))
        for channel in dict.fromkeys(recipient.channels)
        if (address := recipient.phone if channel == "sms" else recipient.email)
    ]
    language = templates.language_of(recipient.language)
    now = deps.clock.now()
    rows = []
    # Only emails carry an unsubscribe link (SMS opt out by STOP): one rendering serves both channels.
    email_hash = next((hashed for channel, _, hashed in addresses if channel == "email"), None)
    unsubscribe = unsubscribe_url(deps.settings, "email", email_hash) if email_hash else ""
    for p in planned:
        override = (await _overrides(store, contact.merchant_id, deps)).get((language, p.kind))
        rendered = templates.render(
            p.kind,
            language,
            merchant=contact.merchant_name,
            name=recipient.name,
            link=contact.tracking_url,
            unsubscribe_link=unsubscribe,
            facts=p.facts,
            tz=tz,
            override=override,
        )
        for channel, address, hashed in addresses:
            rows.append(
                {
                    "id": new_id("ntf"),
                    "order_id": contact.order_id,
                    "kind": p.kind,
                    "channel": channel,
                    "dedupe": p.identity,
                    # Opt-outs are checked when the sender claims the message, right before the call.
                    "status": "pending",
                    "error": None,
                    "to": address,
                    "to_hash": hashed,
                    "language": language,
                    "subject": rendered.subject if channel == "email" else None,
                    "body": rendered.text if channel == "email" else rendered.sms,
                    "html": rendered.html if channel == "email" else None,
                    "attempts": 0,
                    "ambiguous": 0,
                    "next_attempt_at": p.send_after or now,
                    "created_at": now,
                    "held": p.send_after is not None,
                }
            )
    return rows


SUBSCRIPTIONS: dict[type[ev.Payload], HandlerWithDeps[Deps]] = {
    ev.OrderCreated: on_order,
    ev.OrderUpdated: on_order,
    ev.OrderCancelled: on_order_cancelled,
    ev.MerchantKeysChanged: on_merchant_keys,
    ev.DeliveryScheduled: on_delivery_event,
    ev.DeliveryUnassigned: on_delivery_event,
    ev.OutForDelivery: on_delivery_event,
    ev.EtaChanged: on_delivery_event,
    ev.DeliveryDelayed: on_delivery_event,
    ev.Arrived: on_delivery_event,
    ev.Delivered: on_delivery_event,
    ev.DeliveryFailed: on_delivery_event,
}

# ---------------------------------------------------------------------------------------------------------
# From HTTP: merchants and their templates


async def authenticate_merchant(key: str | None, deps: Deps) -> Merchant:
    """API keys are order intake's; merchants.v1 gives us their SHA-256 hashes."""
    if not key:
        raise Unauthorized("A merchant API key is required: Authorization: Bearer <key>")
    async with deps.db.read() as session:
        row = await NotifierStore(session).merchant_for_key(hash_secret(key))
    if row is None:
        raise Unauthorized("Unknown or revoked API key")
    return Merchant(row.merchant_id, row.name)


async def set_template(
    merchant: Merchant, language: str, kind: str, values: dict[str, str | None], deps: Deps
) -> TemplateRow:
    if language not in templates.LANGUAGES:
        raise NotFound(f"Language {language!r} not offered; one of {', '.join(templates.LANGUAGES)}")
    if kind not in domain.KINDS:
        raise NotFound(f"Kind {kind!r} unknown; one of {', '.join(domain.KINDS)}")
    for name, text in values.items():
        if text is not None:
            try:
                templates.validate(text)
            except ValueError as exc:
                raise Unprocessable(f"{name}: {exc}") from exc
    async with deps.db.transaction() as session:
        store = NotifierStore(session)
        row = await store.template(merchant.id, language, kind)
        if row is None:
            row = TemplateRow(merchant_id=merchant.id, language=language, kind=kind)
            session.add(row)
        row.sms, row.subject, row.text = values.get("sms"), values.get("subject"), values.get("text")
        row.updated_at = deps.clock.now()
        await session.flush()
    deps.template_cache.forget(merchant.id)
    return row


async def delete_template(merchant: Merchant, language: str, kind: str, deps: Deps) -> None:
    async with deps.db.transaction() as session:
        row = await NotifierStore(session).template(merchant.id, language, kind)
        if row is None:
            raise NotFound(f"No template of yours for {language}/{kind}")
        await session.delete(row)
    deps.template_cache.forget(merchant.id)


async def list_templates(merchant: Merchant, deps: Deps) -> list[TemplateRow]:
    async with deps.db.read() as session:
        return await NotifierStore(session).templates(merchant.id)
