"""Opt-outs: addresses kept as hashes, the signed one-click unsubscribe token, and SMS keywords. No I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

# Twilio's default opt-out and opt-in keywords (matched on the whole message, any case).
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})


def normalize(channel: str, address: str) -> str:
    if channel == "sms":
        return (
            "+" + re.sub(r"\D", "", address)
            if address.strip().startswith("+")
            else re.sub(r"\D", "", address)
        )
    return address.strip().lower()


def address_hash(channel: str, address: str) -> str:
    """What an opt-out keeps of an address: enough to recognise it, nothing to read it back."""
    return hashlib.sha256(f"{channel}:{normalize(channel, address)}".encode()).hexdigest()


def keyword(body: str, opt_out_type: str | None = None) -> str | None:
    """'stop', 'start' or None for an inbound SMS (Twilio's OptOutType wins when it is there)."""
    if opt_out_type:
        kind = opt_out_type.strip().upper()
        return {"STOP": "stop", "START": "start"}.get(kind)
    word = re.sub(r"[^\w]", "", body.strip()).upper()
    if word in OPT_OUT_KEYWORDS:
        return "stop"
    if word in OPT_IN_KEYWORDS:
        return "start"
    return None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unsubscribe_token(key: bytes, channel: str, hashed_address: str) -> str:
    """`<channel.hash>.<HMAC-SHA256>`, URL-safe: the link says whom to unsubscribe and cannot be forged."""
    payload = f"{channel}.{hashed_address}".encode()
    return f"{_b64(payload)}.{_b64(hmac.new(key, payload, hashlib.sha256).digest())}"


def read_unsubscribe_token(key: bytes, token: str) -> tuple[str, str] | None:
    """(channel, address hash) of a genuine token; None for anything else."""
    try:
        encoded, signature = token.split(".", 1)
        payload = _unb64(encoded)
        given = _unb64(signature)
    except ValueError:
        return None
    if not hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).digest(), given):
        return None
    channel, _, hashed = payload.decode(errors="replace").partition(".")
    if channel not in ("sms", "email") or not re.fullmatch(r"[0-9a-f]{64}", hashed):
        return None
    return channel, hashed
