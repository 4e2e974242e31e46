"""What to tell customers, and when: one policy, tested directly. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from lastmile.common import events as ev


@dataclass(frozen=True)
class Contact:
    order_id: str
    merchant_name: str
    recipient: ev.Recipient
    tracking_url: str


@dataclass(frozen=True)
class Message:
    """One message to one customer on one channel; `dedupe` makes it unique in the log."""

    order_id: str
    kind: str
    channel: str
    to: str
    body: str
    subject: str | None
    dedupe: str


def _local(t: datetime, contact: Contact) -> str:
    tz = ZoneInfo(contact.recipient.timezone or "UTC")
    return t.astimezone(tz).strftime("%H:%M")


def texts(event: ev.Payload, contact: Contact) -> tuple[str, str] | None:
    """(kind, text) for the events customers hear about; None for the rest."""
    shop = contact.merchant_name or "Your order"
    link = contact.tracking_url
    match event:
        case ev.DeliveryScheduled(promised_window=w):
            when = f"{w.start.astimezone(ZoneInfo(contact.recipient.timezone or 'UTC')):%a %d %b}"
            return (
                "scheduled",
                f"{shop}: your delivery comes {when} between {_local(w.start, contact)} and {_local(w.end, contact)}. {link}",
            )
        case ev.OutForDelivery():
            return "out_for_delivery", f"{shop}: your parcel is out for delivery today. Track it: {link}"
        case ev.Delivered():
            return "delivered", f"{shop}: your parcel was delivered. {link}"
        case ev.DeliveryFailed():
            return "failed", f"{shop}: we could not deliver your parcel today. Choose another day: {link}"
    return None


def notifications_for(event: ev.Payload, contact: Contact) -> list[Message]:
    """One message per channel the recipient accepts and has an address for."""
    found = texts(event, contact)
    if found is None:
        return []
    kind, text = found
    messages = []
    for channel in contact.recipient.channels:
        to = contact.recipient.phone if channel == "sms" else contact.recipient.email
        if not to:
            continue
        subject = (
            f"{contact.merchant_name or 'Lastmile'}: {kind.replace('_', ' ')}" if channel == "email" else None
        )
        messages.append(Message(contact.order_id, kind, channel, to, text, subject, dedupe=kind))
    return messages
